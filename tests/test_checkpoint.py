"""Training checkpoints: round trips, exact resumption of multilevel BCD, SGD and Adam, clear errors, and
checkpoints written before the solvers were objects (``tests/data``) resuming exactly."""

from __future__ import annotations

import json
import re
import shutil
import signal
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from ocdl.solvers import (
    SGD,
    Adam,
    BlockCoordinateDescent,
    Checkpointing,
    Params,
    SolverResult,
    Status,
    TrainingState,
    multilevel,
)
from ocdl.solvers.checkpoint import (
    CHECKPOINT_KIND,
    Checkpoint,
    InterruptLatch,
    ResumeWarning,
    TrainingInterrupted,
    load_checkpoint,
    save_checkpoint,
)
from test_io import flip_data_byte
from test_reduction import Worker

import ocdl
from ocdl.backend import asnumpy, cupy_available, device_of, to_device
from ocdl.io import OcdlFileError, read_tree, save_params, write_tree
from ocdl.learning_problem import LearningProblem


def small_problem(dtype=np.float64):
    rng = np.random.default_rng(0)
    C = np.arange(60) % 2
    Y = (rng.standard_normal((60, 2)) * 0.5 + np.where(C[:, None] == 1, 1.0, -1.0)).astype(dtype)
    net = ocdl.network("verlet", 2, 2, 2.0)
    lp = LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y, C)
    return lp, net.init_params(0, scale=0.5, dtype=dtype), (Y[:20], C[:20])


SOLVERS = {
    "bcd": BlockCoordinateDescent(max_iter=4, batch_size=20, hessian_batch_size=10),
    "sgd": SGD(max_epochs=3, batch_size=16),
    "adam": Adam(max_epochs=3, batch_size=16),
}
DATA = Path(__file__).resolve().parent / "data"


def interrupt_after(n):
    """A callback raising KeyboardInterrupt (as Ctrl-C would) after ``n`` iterations over all levels."""
    calls = [0]

    def callback(k, state):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt

    return callback


def without_time(history):
    return [{k: v for k, v in rec.items() if k != "time"} for rec in history]


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("every", [1, 3])
def test_interrupted_run_resumes_exactly(tmp_path, name, every):
    lp, theta0, validation = small_problem()
    options = dict(solver=SOLVERS[name], validation=validation, max_layers=8, rng=5, progress=False)
    reference = multilevel(lp, theta0, **options)
    path = tmp_path / "run" / "checkpoint.h5"
    settings = {"problem": "blobs", "seed": 5, "data_dir": None}
    with pytest.raises(TrainingInterrupted) as info:
        multilevel(lp, theta0, checkpoint=Checkpointing(path, every=every, settings=settings),
                   callback=interrupt_after(6), **options)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.checkpoint == path
    saved = load_checkpoint(path)
    # iteration 6 of all levels was recorded before the callback raised: the newest complete state is on disk
    expected = (1, 6 - reference.history[0]["iterations"])
    assert (saved.level, saved.iteration) == (info.value.level, info.value.iteration) == expected
    assert saved.settings == settings and not saved.finished and len(saved.levels) == 1
    assert saved.run["solver"] == repr(SOLVERS[name])
    assert saved.checkpointing == f"Checkpointing({str(path)!r}, every={every}, resume=False)"
    resumed = multilevel(lp, None, checkpoint=Checkpointing(path, every=every, resume=True), **options)
    for a, b in zip(resumed.x, reference.x):
        np.testing.assert_array_equal(a, b)
    assert resumed.network.n_steps == 8 and resumed.nit == reference.nit
    assert (resumed.status, resumed.success, resumed.message) == (reference.status, reference.success,
                                                                  reference.message)
    for a, b in zip(reference.history, resumed.history):
        assert without_time(a["result"].history) == without_time(b["result"].history)
        assert a["best_val_accuracy"] == b["best_val_accuracy"] and a["iterations"] == b["iterations"]
        assert a["result"].status == b["result"].status
    final = load_checkpoint(path)
    assert final.finished and final.state is None and final.settings == settings
    # a finished checkpoint returns its result without training
    again = multilevel(lp, None, checkpoint=Checkpointing(path, resume=True), callback=interrupt_after(1), **options)
    np.testing.assert_array_equal(again.x.theta, reference.x.theta)
    assert again.network.n_steps == 8 and again.message == reference.message
    assert [rec["result"].status for rec in again.history] == [rec["result"].status for rec in reference.history]


def test_resume_without_a_file_starts_afresh_and_float32_stays_exact(tmp_path):
    lp, theta0, validation = small_problem(np.float32)
    options = dict(solver=SOLVERS["adam"], validation=validation, max_layers=4, progress=False)
    reference = multilevel(lp, theta0, **options)
    path = tmp_path / "c.h5"
    fresh = multilevel(lp, theta0, checkpoint=Checkpointing(path, resume=True), **options)
    np.testing.assert_array_equal(fresh.x.theta, reference.x.theta)
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, theta0, checkpoint=Checkpointing(path), callback=interrupt_after(4), **options)
    saved = load_checkpoint(path)
    assert saved.state.params.theta.dtype == np.float32 and saved.state.buffers["m"][1].dtype == np.float32
    resumed = multilevel(lp, theta0, checkpoint=Checkpointing(path, resume=True), **options)
    np.testing.assert_array_equal(resumed.x.theta, reference.x.theta)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    rng.standard_normal(5)
    theta, W, mu = np.arange(10.0), np.ones((2, 2)), np.zeros(2)
    state = TrainingState(
        iteration=2, params=Params(theta, W, mu), rng=rng, best=Params(theta + 1, W, mu),
        best_accuracy=0.75, best_iteration=1, elapsed=1.5,
        history=[{"iteration": 0, "objective": np.float64(0.5), "grad_norm": np.nan, "gradient_fallback": np.True_}],
        buffers={"k": 7, "m": (theta, W, mu), "v": [mu], "scale": np.float32(2.0)},
    )
    level = {"level": 0, "n_layers": 1, "iterations": 3, "objective": 0.25, "train_accuracy": 1.0,
             "best_val_accuracy": np.nan, "time_s": 0.1,
             "result": SolverResult(x=Params(theta[:5], W, mu), fun=0.25, nit=3, status=Status.CALLBACK, success=True,
                                    message="done", history=[{"a": 1}])}
    run = {"layers": [1, 2], "params_per_layer": 5, "n_features": 2, "n_outputs": 2, "solver": "S()",
           "options": {"x": (1, 2)}}
    save_checkpoint(tmp_path / "c.h5", Checkpoint(1, state, [level], rng, run, {"seed": 3}, "Checkpointing(...)"))
    back = load_checkpoint(tmp_path / "c.h5")
    assert back.level == 1 and back.iteration == 2 and back.settings == {"seed": 3}
    assert back.run["options"] == {"x": [1, 2]} and back.run["solver"] == "S()"
    assert back.checkpointing == "Checkpointing(...)" and back.shares is None
    s = back.state
    assert isinstance(s.params, Params) and isinstance(s.best, Params)
    np.testing.assert_array_equal(s.params.theta, theta)
    np.testing.assert_array_equal(s.best.theta, theta + 1)
    assert (s.best_accuracy, s.best_iteration, s.elapsed) == (0.75, 1, 1.5)
    assert s.history[0]["objective"] == 0.5 and np.isnan(s.history[0]["grad_norm"])
    assert s.history[0]["gradient_fallback"] is True
    assert s.buffers["k"] == 7 and s.buffers["scale"] == 2.0
    assert isinstance(s.buffers["m"], tuple) and isinstance(s.buffers["v"], list)
    np.testing.assert_array_equal(s.buffers["m"][1], W)
    assert s.rng is back.rng and back.rng.standard_normal() == rng.standard_normal()
    record = back.levels[0]
    assert record["iterations"] == 3 and np.isnan(record["best_val_accuracy"])
    assert record["result"].message == "done" and record["result"].history == [{"a": 1}]
    assert record["result"].status is Status.CALLBACK and isinstance(record["result"].x, Params)
    with h5py.File(tmp_path / "c.h5") as f:  # a person can read it with h5py
        assert f.attrs["format"] == CHECKPOINT_KIND and f["state/params/theta"].shape == (10,)


def test_load_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(OcdlFileError, match="no such file"):
        load_checkpoint(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(OcdlFileError, match="not a readable HDF5 file"):
        load_checkpoint(tmp_path / "text.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1.0
    with pytest.raises(OcdlFileError, match="not written by ocdl"):
        load_checkpoint(tmp_path / "foreign.h5")
    save_params(tmp_path / "params.h5", np.zeros(3), np.zeros((2, 1)), np.zeros(1))
    with pytest.raises(OcdlFileError, match="kind 'ocdl-params', expected 'ocdl-checkpoint'"):
        load_checkpoint(tmp_path / "params.h5")
    write_tree(tmp_path / "empty.h5", {"level": 0}, CHECKPOINT_KIND)
    with pytest.raises(OcdlFileError, match="damaged ocdl checkpoint: missing entry 'rng'"):
        load_checkpoint(tmp_path / "empty.h5")
    lp, theta0, _ = small_problem()
    multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=1), progress=False,
               checkpoint=Checkpointing(tmp_path / "good.h5"))
    raw = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(OcdlFileError, match="truncated|damaged"):
        load_checkpoint(tmp_path / "cut.h5")
    tree = read_tree(tmp_path / "good.h5", CHECKPOINT_KIND)
    tree["shares"] = [30, -1]
    write_tree(tmp_path / "shares.h5", tree, CHECKPOINT_KIND)
    with pytest.raises(OcdlFileError, match="damaged ocdl checkpoint: shares must be an integer >= 0, got -1"):
        load_checkpoint(tmp_path / "shares.h5")


class Damped(ocdl.ResNet):
    """Y_{j+1} = (1 - h gamma) Y_j + h sigma(Y_j K_j + b_j): a user's stepper with a setting of its own."""

    def __init__(self, layer, gamma):
        super().__init__(layer)
        self.gamma = gamma

    def step(self, state, theta, h):
        (Y,) = state
        Y_next, D = self.layer.step(theta, Y, (1 - h * self.gamma) * Y, h)
        return (Y_next,), D

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y,), (dY,) = state, dstate
        return (self.layer.step_jvp(theta, Y, cache, dY, dtheta, (1 - h * self.gamma) * dY),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,) = state, lam
        lam_Y, gtheta = self.layer.step_vjp(theta, Y, cache, L, (1 - h * self.gamma) * L)
        return (lam_Y,), gtheta


def test_resume_refuses_a_users_stepper_with_other_settings(tmp_path):
    """A stepper's repr named its layer only: a run of Damped(gamma=0.5) resumed with gamma=0.05 continued
    without a word, its levels trained with two dynamics."""
    lp, theta0, _ = small_problem()

    def run(gamma, **options):
        net = ocdl.Network(Damped(ocdl.Layer(ocdl.Dense(2)), gamma), 2, 2.0)
        problem = LearningProblem(net, ocdl.SoftmaxCrossEntropy(), lp.Y0, lp.C)
        return multilevel(problem, net.init_params(0, scale=0.5), max_layers=4, solver=BlockCoordinateDescent(
            max_iter=1), progress=False, checkpoint=Checkpointing(tmp_path / "c.h5", **options))

    run(0.5)
    with pytest.raises(ValueError, match=r"stepper: 'Damped\(Layer\(.*\), gamma=0.5\)' there, "
                                         r"'Damped\(Layer\(.*\), gamma=0.05\)' now"):
        run(0.05, resume=True)
    assert run(0.5, resume=True).success


def test_a_checkpoint_of_a_users_stepper_from_before_reprs_named_settings_resumes(tmp_path):
    """Checkpoints written before today recorded a user's stepper as 'Damped(Layer(...))': they resume (with a
    warning that the settings could not be compared), and are then rewritten with today's form."""
    lp, _, _ = small_problem()
    net = ocdl.Network(Damped(ocdl.Layer(ocdl.Dense(2)), 0.5), 2, 2.0)
    problem = LearningProblem(net, ocdl.SoftmaxCrossEntropy(), lp.Y0, lp.C)
    path = tmp_path / "c.h5"

    def run(**options):
        return multilevel(problem, net.init_params(0, scale=0.5), max_layers=4,
                          solver=BlockCoordinateDescent(max_iter=2), progress=False,
                          checkpoint=Checkpointing(path, **options))

    reference = run()
    tree = read_tree(path, CHECKPOINT_KIND)
    assert tree["run"]["stepper"] == repr(net.stepper)
    tree["run"]["stepper"] = "Damped(Layer(Dense(n_in=2, n_out=2), Tanh()))"  # as the code before wrote it
    write_tree(path, tree, CHECKPOINT_KIND)
    with pytest.warns(ResumeWarning, match=re.escape("written by an earlier ocdl, whose stepper was "
                                                     "'Damped(Layer(Dense(n_in=2, n_out=2), Tanh()))'")):
        resumed = run(resume=True)
    np.testing.assert_array_equal(resumed.x.theta, reference.x.theta)
    tree["run"]["stepper"] = "Other(Layer(Dense(n_in=2, n_out=2), Tanh()))"  # another stepper: still refused
    write_tree(path, tree, CHECKPOINT_KIND)
    with pytest.raises(ValueError, match=r"stepper: 'Other\(Layer"):
        run(resume=True)


def test_a_steppers_repr_is_the_same_in_every_process():
    """A setting that is a function (or holds an address in its repr) made the repr differ between processes:
    no checkpoint could resume and no data-parallel run start."""
    def forcing(t):
        return t

    stepper = Damped(ocdl.Layer(ocdl.Dense(2)), 0.5)
    stepper.forcing, stepper.rng = forcing, np.random.default_rng(0)
    text = repr(stepper)
    assert " at 0x" not in text and "forcing=test_checkpoint.test_a_steppers_repr_is_the_same_in_every_process" \
        ".<locals>.forcing" in text and "rng=<Generator>" in text, text


def test_resuming_on_another_number_of_processes_warns(tmp_path):
    """A checkpoint records its processes' shares of the examples (here two stand-in workers, each holding the 60
    examples: one process holding them twice is the same problem). Resumed on one process it continues with a
    ResumeWarning naming the two (it resumed without a word); on two, and from a checkpoint written before the
    shares were recorded, without one; a finished checkpoint, which trains no more, without one, unless it
    continues deeper."""
    lp, theta0, _ = small_problem()
    two = LearningProblem(lp.network, ocdl.SoftmaxCrossEntropy(), lp.Y0, lp.C, n_classes=2, reduction=Worker(0, 2))
    one = LearningProblem(lp.network, ocdl.SoftmaxCrossEntropy(), np.vstack([lp.Y0] * 2), np.concatenate([lp.C] * 2))
    options = dict(max_layers=4, solver=BlockCoordinateDescent(max_iter=2), progress=False)
    path = tmp_path / "c.h5"
    with pytest.raises(TrainingInterrupted):
        multilevel(two, theta0, checkpoint=Checkpointing(path), callback=interrupt_after(3), **options)
    assert load_checkpoint(path).shares == [60, 60]
    for name in ("legacy.h5", "same.h5"):
        shutil.copy(path, tmp_path / name)
    tree = read_tree(tmp_path / "legacy.h5", CHECKPOINT_KIND)
    del tree["shares"]
    write_tree(tmp_path / "legacy.h5", tree, CHECKPOINT_KIND)
    with pytest.warns(ResumeWarning, match=re.escape(
            f"{path} was written by 2 processes and continues on 1: a valid run, but not the one 2 processes would "
            "have computed (the sums over the examples round differently); resume with mpiexec -n 2 for a "
            "bit-identical continuation")) as caught:
        assert multilevel(one, None, checkpoint=Checkpointing(path, resume=True), **options).success
    assert len(caught) == 1 and issubclass(ResumeWarning, UserWarning)
    assert load_checkpoint(path).shares == [120]  # written by this run from then on
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        assert multilevel(two, None, checkpoint=Checkpointing(tmp_path / "same.h5", resume=True), **options).success
        assert multilevel(one, None, checkpoint=Checkpointing(tmp_path / "legacy.h5", resume=True), **options).success
        assert load_checkpoint(tmp_path / "legacy.h5").shares == [120]
        assert multilevel(two, None, checkpoint=Checkpointing(path, resume=True), **options).success  # finished
    with pytest.warns(ResumeWarning, match="written by 1 process and continues on 2: .*; resume without mpiexec for"):
        multilevel(two, None, checkpoint=Checkpointing(path, resume=True), **dict(options, max_layers=8))
    assert load_checkpoint(path).resplit([50, 70], "c.h5") == (
        "c.h5 was written by 2 processes holding [60, 60] training examples and continues on 2 holding [50, 70]: a "
        "valid run, but not the one those shares would have computed (the sums over the examples round "
        "differently); give the processes the writer's shares for a bit-identical continuation")


def test_resume_checks_that_the_run_is_the_same(tmp_path):
    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    two = BlockCoordinateDescent(max_iter=2)
    multilevel(lp, theta0, max_layers=4, solver=two, progress=False, checkpoint=Checkpointing(path))
    resume = Checkpointing(path, resume=True)
    with pytest.raises(ValueError, match=r"written by a different run \(solver: 'BlockCoordinateDescent\(max_iter=2, "
                                         r".*' there, 'BlockCoordinateDescent\(max_iter=3, .*' now"):
        multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=3), progress=False,
                   checkpoint=resume)
    with pytest.raises(ValueError, match="cg_rtol=0.01\\)' there, .*cg_rtol=0.1\\)' now"):
        multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=2, cg_rtol=0.1),
                   progress=False, checkpoint=resume)
    with pytest.raises(ValueError, match="layers: \\[2, 4\\] there, \\[2\\] now"):  # more levels continue it
        multilevel(lp, theta0, max_layers=2, solver=two, progress=False, checkpoint=resume)
    with pytest.raises(ValueError, match="solver: 'BlockCoordinateDescent.*' there, 'SGD\\(max_epochs=2, .*' now"):
        multilevel(lp, theta0, max_layers=4, solver=SGD(max_epochs=2), progress=False, checkpoint=resume)
    # the checkpointing may change: another every, resume
    result = multilevel(lp, theta0, max_layers=4, solver=two, progress=False,
                        checkpoint=Checkpointing(path, every=7, resume=True))
    assert result.success and load_checkpoint(path).finished


def test_bad_arguments(tmp_path):
    lp, theta0, _ = small_problem()
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        Checkpointing(tmp_path / "c.h5", every=0)
    with pytest.raises(TypeError, match="settings must be a dict"):
        Checkpointing(tmp_path / "c.h5", settings=["a"])
    with pytest.raises(TypeError, match="a checkpoint cannot hold a"):
        Checkpointing(tmp_path / "c.h5", settings={"f": len})
    with pytest.raises(TypeError, match="resume must be True or False"):
        Checkpointing(tmp_path / "c.h5", resume="yes")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        Checkpointing(None)
    with pytest.raises(TypeError, match=r"checkpoint must be a Checkpointing\(path, every=..., resume=...\)"):
        multilevel(lp, theta0, checkpoint=tmp_path / "c.h5")
    with pytest.raises(ValueError, match="checkpoint must be a file"):
        multilevel(lp, theta0, checkpoint=Checkpointing(tmp_path))
    with pytest.raises(TypeError, match="unexpected keyword argument 'state'"):
        multilevel(lp, theta0, state=None)  # multilevel continues from a checkpoint, not from a state


def test_ctrl_c_without_checkpoints_is_a_plain_keyboard_interrupt():
    lp, theta0, _ = small_problem()
    with pytest.raises(KeyboardInterrupt) as info:
        multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=2), progress=False,
                   callback=interrupt_after(1))
    assert not isinstance(info.value, TrainingInterrupted)


def test_ctrl_c_saves_the_newest_iteration_between_periodic_writes(tmp_path):
    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    with pytest.raises(TrainingInterrupted) as info:
        multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=2), progress=False,
                   checkpoint=Checkpointing(path, every=5), callback=interrupt_after(1))
    # periodic writes: the start only; the first iteration is written on Ctrl-C
    assert (info.value.level, info.value.iteration) == (0, 1)
    saved = load_checkpoint(path)
    assert saved.iteration == 1 and saved.state.history[0]["iteration"] == 0


class _InterruptedFinalizer:
    """An object whose finalizer receives SIGINT: Python raises the KeyboardInterrupt inside ``__del__``,
    prints "Exception ignored" and goes on, as when Ctrl-C falls on an array freed in the middle of a run."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_a_ctrl_c_that_python_loses_still_stops_the_run(tmp_path, with_checkpoint):
    """SIGINT in a finalizer during iteration 2: the run stops after that iteration (with checkpoints: the
    iteration written, TrainingInterrupted) instead of training on until it is killed; the handler is
    Python's again afterwards."""
    lp, theta0, _ = small_problem()

    def callback(k, state):
        if k == 1:
            _InterruptedFinalizer()  # dropped at once: its __del__ runs here

    options = dict(max_layers=4, solver=BlockCoordinateDescent(max_iter=5), progress=False, callback=callback)
    if with_checkpoint:
        with pytest.raises(TrainingInterrupted) as info:
            multilevel(lp, theta0, checkpoint=Checkpointing(tmp_path / "c.h5"), **options)
        assert (info.value.level, info.value.iteration) == (0, 2)
        assert load_checkpoint(tmp_path / "c.h5").iteration == 2
    else:
        with pytest.raises(KeyboardInterrupt):
            multilevel(lp, theta0, **options)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_latch_keeps_quiet_about_the_interrupt_a_finalizer_swallowed(monkeypatch):
    """Python reports a KeyboardInterrupt raised in a finalizer through sys.unraisablehook ("Exception ignored
    in ...", a traceback before ocdl's one-line message, seen once in 15 Ctrl-Cs); inside the latch that one is
    not reported (check() raises it), other unraisable exceptions still are, and the hook is restored."""
    import sys

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: reported.append(unraisable.exc_type))
    hook = sys.unraisablehook
    with InterruptLatch() as latch:
        _InterruptedFinalizer()
        with pytest.raises(KeyboardInterrupt):
            latch.check()
        assert reported == []
        sys.unraisablehook(type("Unraisable", (), {"exc_type": ValueError, "exc_value": ValueError("x")})())
        assert reported == [ValueError]
    assert sys.unraisablehook is hook


def test_with_several_workers_the_latch_stops_them_together():
    """Two workers (a stand-in reduction whose other worker was interrupted or not): the first SIGINT raises
    nothing; check() raises on every worker when any was interrupted (agreed), not before; a second SIGINT
    raises at once."""

    class TwoWorkers:
        size = 2

        def __init__(self, other):
            self.other, self.calls = other, 0

        def sum(self, flag):
            self.calls += 1
            return flag + self.other

    quiet = TwoWorkers(0.0)
    with InterruptLatch(quiet) as latch:
        latch.check()
        assert not latch.agreed and quiet.calls == 1
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt here: only noted
        assert latch.arrived
        with pytest.raises(KeyboardInterrupt):
            latch.check()
        assert latch.agreed
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second one
    with InterruptLatch(TwoWorkers(1.0)) as latch:  # Ctrl-C reached the other worker only
        with pytest.raises(KeyboardInterrupt):
            latch.check()
        assert latch.agreed and not latch.arrived


def test_the_latch_leaves_other_sigint_handlers_alone():
    """Where SIGINT is ignored (a background job) or handled by the program, the latch installs nothing."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with InterruptLatch() as latch:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            latch.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_resume_on_the_gpu(tmp_path):
    lp_cpu, theta0, validation = small_problem()
    lp = LearningProblem(lp_cpu.network, ocdl.SoftmaxCrossEntropy(), to_device(lp_cpu.Y0, "gpu"),
                         to_device(lp_cpu.classes, "gpu"))
    options = dict(solver=SOLVERS["adam"], validation=to_device(validation, "gpu"), max_layers=4, progress=False)
    reference = multilevel(lp, to_device(theta0, "gpu"), **options)
    path = tmp_path / "c.h5"
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, to_device(theta0, "gpu"), checkpoint=Checkpointing(path), callback=interrupt_after(4),
                   **options)
    resumed = multilevel(lp, None, checkpoint=Checkpointing(path, resume=True), **options)
    assert device_of(resumed.x.theta) == "gpu"
    for a, b in zip(resumed.x, reference.x):
        np.testing.assert_allclose(asnumpy(a), asnumpy(b), rtol=1e-12, atol=0)


def test_a_corrupt_checkpoint_is_not_resumed_from(tmp_path):
    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    three = BlockCoordinateDescent(max_iter=3)
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, theta0, max_layers=4, solver=three, progress=False, checkpoint=Checkpointing(path),
                   callback=interrupt_after(2))
    flip_data_byte(path, "state/params/theta")
    with pytest.raises(OcdlFileError, match=f"^{re.escape(str(path))}: corrupt ocdl file"):
        load_checkpoint(path)
    with pytest.raises(OcdlFileError, match="corrupt ocdl file"):
        multilevel(lp, theta0, max_layers=4, solver=three, progress=False, checkpoint=Checkpointing(path, resume=True))


def write_as_version_1(path, tree):
    """``tree`` as a checkpoint of format version 1: no checksums, contiguous datasets, JSON attributes."""

    def put(group, node):
        for key, value in node.items():
            if isinstance(value, dict):
                put(group.create_group(key), value)
            elif isinstance(value, np.ndarray):
                group[key] = value
            else:
                group.attrs[key] = json.dumps(value)

    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = CHECKPOINT_KIND, 1
        put(f, tree)


def test_checkpoints_of_format_version_1_still_load(tmp_path):
    lp, theta0, _ = small_problem()
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=3), progress=False,
                   checkpoint=Checkpointing(tmp_path / "new.h5"), callback=interrupt_after(4))
    write_as_version_1(tmp_path / "old.h5", read_tree(tmp_path / "new.h5", CHECKPOINT_KIND))
    new, old = load_checkpoint(tmp_path / "new.h5"), load_checkpoint(tmp_path / "old.h5")
    assert (old.level, old.iteration, old.run, old.settings) == (new.level, new.iteration, new.run, new.settings)
    np.testing.assert_array_equal(old.state.params.theta, new.state.params.theta)
    np.testing.assert_array_equal(old.levels[0]["result"].x.W, new.levels[0]["result"].x.W)


# -- checkpoints written before the solvers were objects -------------------------------------
# tests/data/legacy_*.h5 were written by the code of commit 0cf207c: multilevel(..., solver=<function>,
# **options) recorded the function's name and its options in ``run``, and no level status. The test's
# small_problem with these options; legacy_reference.npz holds that code's uninterrupted results.

LEGACY = {
    "legacy_bcd": (BlockCoordinateDescent(max_iter=4, batch_size=20, hessian_batch_size=10), np.float64, 8, 5),
    "legacy_adam": (Adam(max_epochs=3, batch_size=16), np.float32, 4, 0),
    "legacy_sgd_finished": (SGD(max_epochs=2, batch_size=16, momentum=0.5), np.float64, 4, 1),
}


def legacy_run(name, tmp_path, **changes):
    """Resume the legacy checkpoint ``name`` (a copy in ``tmp_path``) with today's API; its reference."""
    solver, dtype, max_layers, seed = LEGACY[name]
    path = tmp_path / "checkpoint.h5"
    shutil.copy(DATA / f"{name}.h5", path)
    lp, theta0, validation = small_problem(dtype)
    options = dict(solver=solver, validation=validation, max_layers=max_layers, rng=seed, progress=False) | changes
    with warnings.catch_warnings():  # it recorded no shares of the examples: nothing to warn of
        warnings.simplefilter("error", ResumeWarning)
        resumed = multilevel(lp, theta0, checkpoint=Checkpointing(path, resume=True), **options)
    return resumed, multilevel(lp, theta0, **options), path


@pytest.mark.parametrize("name", LEGACY)
def test_checkpoints_written_before_the_solvers_were_objects_resume_exactly(tmp_path, name):
    solver = LEGACY[name][0]
    saved = load_checkpoint(DATA / f"{name}.h5")
    assert saved.run["solver"] == repr(solver) and "options" not in saved.run and saved.checkpointing == ""
    resumed, uninterrupted, path = legacy_run(name, tmp_path)
    then = np.load(DATA / "legacy_reference.npz")
    prefix = name.split("_")[1]
    for key, now, again in zip(("theta", "W", "mu"), resumed.x, uninterrupted.x):
        for x in (now, again):
            if x.dtype == np.float64:  # bit for bit as the old code trained
                np.testing.assert_array_equal(x, then[f"{prefix}_{key}"])
            else:  # float32: up to its rounding (today's objectives sum the mu-derivatives in float64)
                np.testing.assert_allclose(x, then[f"{prefix}_{key}"], rtol=0, atol=1e-5 * np.abs(x).max())
    assert resumed.success and resumed.status is Status.MAX_ITER and resumed.message == uninterrupted.message
    assert [rec["result"].status for rec in resumed.history] == [Status.MAX_ITER] * len(resumed.history)
    if name == "legacy_sgd_finished":  # finished: its result, without training, and the file as it was
        assert resumed.nit == then["sgd_nit"] and resumed.message == then["sgd_message"]
        assert path.read_bytes() == (DATA / f"{name}.h5").read_bytes()
        return
    if name == "legacy_bcd":
        assert resumed.message == then["bcd_message"]
    rewritten = load_checkpoint(path)  # written on resume in today's form
    assert rewritten.finished and rewritten.run["solver"] == repr(solver)
    assert rewritten.checkpointing == f"Checkpointing({str(path)!r}, every=1, resume=True)"


def test_a_checkpoint_written_before_the_solvers_were_objects_refuses_other_options(tmp_path):
    with pytest.raises(ValueError, match=r"written by a different run \(solver: 'BlockCoordinateDescent\(max_iter=4, "
                                         r".*' there, 'BlockCoordinateDescent\(max_iter=5, "):
        legacy_run("legacy_bcd", tmp_path, solver=BlockCoordinateDescent(max_iter=5, batch_size=20,
                                                                          hessian_batch_size=10))
    with pytest.raises(ValueError, match=r"solver: 'Adam\(.*' there, 'SGD\(.*' now"):
        legacy_run("legacy_adam", tmp_path, solver=SGD(max_epochs=3, batch_size=16))


def test_the_status_of_a_level_written_without_one(tmp_path, monkeypatch):
    """Levels saved before statuses were recorded get them back from success, message and last record."""
    import ocdl.solvers.newton as newton
    from ocdl.solvers.line_search import LineSearchResult

    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    monkeypatch.setattr(newton, "armijo", lambda f, x, p, f0, slope, **_: LineSearchResult(0.0, f0, 20, False))
    stalled = multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=2), progress=False,
                         checkpoint=Checkpointing(path))
    assert [rec["result"].status for rec in stalled.history] == [Status.LINE_SEARCH_FAILED] * 2
    tree = read_tree(path, CHECKPOINT_KIND)
    for level in tree["levels"].values():
        del level["result"]["status"]
    tree["levels"]["1"]["result"]["success"], tree["levels"]["1"]["result"]["message"] = True, "stopped by callback"
    write_tree(path, tree, CHECKPOINT_KIND)
    levels = load_checkpoint(path).levels
    assert [rec["result"].status for rec in levels] == [Status.LINE_SEARCH_FAILED, Status.CALLBACK]
    tree["levels"]["1"]["result"]["success"] = False
    tree["levels"]["1"]["result"]["history"] = np.frombuffer(b'[{"objective": NaN}]', dtype=np.uint8)
    write_tree(path, tree, CHECKPOINT_KIND)
    assert load_checkpoint(path).levels[1]["result"].status is Status.NOT_FINITE
    tree["levels"]["1"]["result"]["status"] = "DONE"
    write_tree(path, tree, CHECKPOINT_KIND)
    with pytest.raises(OcdlFileError, match="levels/result/status must name a Status .*got 'DONE'"):
        load_checkpoint(path)


def test_the_documented_resume_example_runs(tmp_path, monkeypatch, capsys):
    page = Path(__file__).resolve().parents[1] / "docs" / "solvers.md"
    section = page.read_text(encoding="utf-8").split("\n## Checkpoints and resuming\n")[1].split("\n## ")[0]
    code = section.split("```python\n")[1].split("```")[0]  # its first python block
    assert "Checkpointing(" in code
    lp, theta0, (Y_val, C_val) = small_problem()
    monkeypatch.chdir(tmp_path)
    namespace = {"problem": lp, "theta0": theta0, "Y_val": Y_val, "C_val": C_val}
    exec(compile(code, "docs/solvers.md", "exec"), namespace)
    assert namespace["ckpt"].finished and namespace["result"].network.n_steps == 16
    assert "16 MAX_ITER 4 levels" in capsys.readouterr().out
    exec(compile(code, "docs/solvers.md", "exec"), namespace)  # again: resumed from the finished checkpoint
    assert "16 MAX_ITER 4 levels" in capsys.readouterr().out
