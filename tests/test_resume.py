"""Crash tests: a training process killed (SIGKILL), killed while writing a checkpoint, or
interrupted (SIGINT) resumes to the parameters of an uninterrupted run with the same seed.

Each crash test runs ``resume_worker.py`` (multilevel BCD on a small ellipses problem,
3 levels of 5 iterations) in a subprocess; the reference is the same run,
uninterrupted, in this process. The last tests, in this process: resuming with
another learning problem (objective, weights, regularizers, data) is refused,
naming what changed, while the same problem, rebuilt, and a checkpoint written
before the problem's fingerprint was recorded resume exactly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import resume_worker
from ocdl.solvers import BlockCoordinateDescent, Checkpointing, multilevel
from ocdl.solvers.checkpoint import TrainingInterrupted, load_checkpoint, save_checkpoint

import ocdl
from ocdl.backend import cupy_available, to_device
from ocdl.io import OcdlFileError, load_params
from ocdl.learning_problem import LearningProblem

WORKER = Path(resume_worker.__file__)
TIMEOUT = 60


@pytest.fixture(scope="module")
def reference():
    problem, theta0, validation = resume_worker.build()
    result = multilevel(problem, theta0, validation=validation, progress=False, **resume_worker.OPTIONS)
    return dict(zip(("theta", "W", "mu"), result.x))


def start(tmp_path, *options):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "ckpt.h5"), str(tmp_path / "out.h5"), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background job (``pytest &``) ignores SIGINT, and a Python started
        # with SIGINT ignored raises no KeyboardInterrupt: give the worker the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run(tmp_path, *options):
    proc = start(tmp_path, *options)
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def wait_for(proc, path, condition):
    """Poll the checkpoint ``path`` until ``condition(checkpoint)`` holds; fail if ``proc`` ends first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker ended before the test could interrupt it"
        if path.exists():
            checkpoint = load_checkpoint(path)
            if condition(checkpoint):
                return checkpoint
        time.sleep(0.01)
    raise AssertionError("timed out waiting for the checkpoint")


def assert_same(out_file, reference):
    params = load_params(out_file)
    for key, expected in reference.items():
        np.testing.assert_allclose(params[key], expected, rtol=1e-12, atol=0)


def test_sigkill_in_the_middle_of_a_level_resumes_exactly(tmp_path, reference):
    path = tmp_path / "ckpt.h5"
    proc = start(tmp_path, "--sleep", "0.1")
    seen = wait_for(proc, path, lambda c: c.level == 1 and c.iteration >= 2)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    saved = load_checkpoint(path)
    assert saved.level == 1 and 2 <= saved.iteration <= 5 and not saved.finished
    assert saved.iteration >= seen.iteration
    assert not (tmp_path / "out.h5").exists()
    code, _, err = run(tmp_path, "--resume")
    assert code == 0, err
    assert_same(tmp_path / "out.h5", reference)
    assert load_checkpoint(path).finished


def test_killed_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, reference):
    path = tmp_path / "ckpt.h5"
    # write 1: the start; writes 2..6: iterations 1..5 of level 0; write 7: its end; 8, 9: level 1
    code, _, _ = run(tmp_path, "--die-in-write", "9")
    assert code == -signal.SIGKILL
    saved = load_checkpoint(path)  # the previous checkpoint is intact
    assert (saved.level, saved.iteration) == (1, 1)
    partial = list(tmp_path.glob(".ckpt.h5.*.tmp"))
    assert len(partial) == 1  # the half-written temporary file of write 9
    with pytest.raises(OcdlFileError, match="damaged ocdl checkpoint: missing entry"):
        load_checkpoint(partial[0])
    code, _, err = run(tmp_path, "--resume")
    assert code == 0, err
    assert_same(tmp_path / "out.h5", reference)
    assert not list(tmp_path.glob(".ckpt.h5.*.tmp"))  # removed on resume


def test_ctrl_c_writes_a_final_checkpoint_and_exits_cleanly(tmp_path, reference):
    path = tmp_path / "ckpt.h5"
    proc = start(tmp_path, "--every", "100", "--sleep", "0.1")  # periodic writes: the start and level ends only
    while int(proc.stdout.readline()) < 7:  # 5 iterations of level 0, 2 of level 1
        pass
    proc.send_signal(signal.SIGINT)  # during the wait after iteration 2 of level 1
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and f"interrupted; resume with --resume {path}" in err
    reported = json.loads(out.splitlines()[-1])
    saved = load_checkpoint(path)
    assert (saved.level, saved.iteration) == (reported["level"], reported["iteration"])
    assert saved.level == 1 and saved.iteration >= 2  # written on Ctrl-C: no periodic write holds a state
    code, _, err = run(tmp_path, "--resume", "--every", "100")
    assert code == 0, err
    assert_same(tmp_path / "out.h5", reference)


# -- resuming with another problem ------------------------------------------------------

SMALL = dict(max_layers=4, solver=BlockCoordinateDescent(max_iter=3, batch_size=30, hessian_batch_size=15), rng=2,
             progress=False)


def small_problem(**changes):
    """``(problem, theta0, validation)``: two noisy blobs, Verlet with 2 layers; ``changes`` replace
    arguments of the problem (``Y0``, ``C``, ``objective``, ...) or the validation data."""
    rng = np.random.default_rng(0)
    C = np.arange(60) % 2
    Y = rng.standard_normal((60, 2)) * 0.5 + np.where(C[:, None] == 1, 1.0, -1.0)
    net = ocdl.network("verlet", 2, 2, 2.0)
    args = dict(objective=ocdl.SoftmaxCrossEntropy(), Y0=Y, C=C)
    validation = changes.pop("validation", (Y[:20], C[:20]))
    args.update(changes)
    return LearningProblem(net, **args), net.init_params(0, scale=0.5), validation


def interrupted_checkpoint(path):
    """A checkpoint of :func:`small_problem`'s run, interrupted after 4 iterations (in level 1)."""
    problem, theta0, validation = small_problem()
    calls = []

    def interrupt(k, state):
        calls.append(k)
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path), callback=interrupt,
                   **SMALL)
    assert load_checkpoint(path).level == 1
    return path


@pytest.fixture(scope="module")
def small_reference():
    problem, theta0, validation = small_problem()
    return multilevel(problem, theta0, validation=validation, **SMALL)


def resume_small(path, **changes):
    problem, theta0, validation = small_problem(**changes)
    return multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path, resume=True), **SMALL)


Y, C = small_problem()[0].Y0, np.arange(60) % 2
CHANGES = {
    "alpha_theta": (dict(alpha_theta=1.0), r"alpha_theta: checkpoint 0\.001, now 1\.0"),
    "alpha_W": (dict(alpha_W=0.0), r"alpha_W: checkpoint 0\.001, now 0\.0"),
    # same number of outputs (2): not caught by the sizes
    "objective": (dict(objective=ocdl.LeastSquares()),
                  r"objective: checkpoint SoftmaxCrossEntropy\(\), now LeastSquares\(\)"),
    "theta_regularizer": (dict(theta_regularizer=ocdl.WeightDecay()),
                          r"theta_regularizer: checkpoint TimeSmoothness\(n_params_per_step=5, n_steps=2, "
                          r"step_size=1\.0\), now WeightDecay\(\)"),
    "W_regularizer": (dict(W_regularizer=ocdl.SpatialSmoothness((2,))),
                      r"W_regularizer: checkpoint WeightDecay\(\), now SpatialSmoothness\(grid_shape=\(2,\), "
                      r"n=2, operator='laplacian'\)"),
    "Y0": (dict(Y0=Y[::-1].copy()), "training data Y0 differs"),
    "one entry of Y0": (dict(Y0=np.where(np.arange(120).reshape(60, 2) == 77, 0.0, Y)), "training data Y0 differs"),
    "C": (dict(C=1 - C), "training labels C differs"),
    "validation": (dict(validation=(Y[20:40], C[20:40])), "validation data differs"),
    "no validation": (dict(validation=None), "validation data: checkpoint given, now none"),
}


@pytest.mark.parametrize("name", CHANGES)
def test_resuming_with_another_problem_names_the_change(tmp_path, name):
    path = interrupted_checkpoint(tmp_path / "c.h5")
    before = path.read_bytes()
    changes, message = CHANGES[name]
    with pytest.raises(ValueError, match=r"c\.h5 was written for a different learning problem \(" + message):
        resume_small(path, **changes)
    assert path.read_bytes() == before  # the refused run wrote nothing


def test_several_changes_are_all_named(tmp_path):
    path = interrupted_checkpoint(tmp_path / "c.h5")
    with pytest.raises(ValueError, match=r"\(alpha_theta: checkpoint 0\.001, now 0\.5; training labels C differs\)"):
        resume_small(path, alpha_theta=0.5, C=1 - C)


def test_the_same_problem_rebuilt_resumes_exactly(tmp_path, small_reference):
    path = interrupted_checkpoint(tmp_path / "c.h5")
    # new arrays of the same content, labels as a one-hot matrix: the same problem
    resumed = resume_small(path, Y0=Y.copy(), C=np.eye(2)[C], validation=(Y[:20].copy(), C[:20].copy()))
    for a, b in zip(resumed.x, small_reference.x):
        np.testing.assert_array_equal(a, b)
    assert resumed.nit == small_reference.nit


@pytest.mark.parametrize("dropped", ["all", "alpha_theta"])
def test_a_checkpoint_without_the_fingerprint_resumes(tmp_path, small_reference, dropped):
    """Checkpoints written before the problem's fingerprint was recorded (or with fewer entries)
    resume; what they lack is not checked, and the checkpoints written on resume record it all."""
    path = interrupted_checkpoint(tmp_path / "c.h5")
    saved = load_checkpoint(path)
    fingerprint = saved.run["problem"]
    assert fingerprint == small_problem()[0].fingerprint(small_problem()[2])
    if dropped == "all":
        del saved.run["problem"]
    else:
        del fingerprint[dropped]
    save_checkpoint(path, saved)
    resumed = resume_small(path)
    for a, b in zip(resumed.x, small_reference.x):
        np.testing.assert_array_equal(a, b)
    assert load_checkpoint(path).run["problem"] == small_problem()[0].fingerprint(small_problem()[2])
    with pytest.raises(ValueError, match="training labels C differs"):  # recorded now
        resume_small(path, C=1 - C)


def test_an_old_checkpoint_is_still_checked_for_the_rest(tmp_path):
    path = interrupted_checkpoint(tmp_path / "c.h5")
    saved = load_checkpoint(path)
    del saved.run["problem"]
    save_checkpoint(path, saved)
    problem, theta0, validation = small_problem()
    with pytest.raises(ValueError, match=r"written by a different run \(layers: \[2, 4\] there, \[2\] now"):
        multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path, resume=True),
                   **dict(SMALL, max_layers=2))


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_the_fingerprint_does_not_depend_on_the_device():
    problem, _, (Y_val, C_val) = small_problem()
    on_gpu = LearningProblem(problem.network, ocdl.SoftmaxCrossEntropy(), to_device(problem.Y0, "gpu"),
                             to_device(C, "gpu"))
    assert on_gpu.fingerprint(to_device((Y_val, C_val), "gpu")) == problem.fingerprint((Y_val, C_val))


# -- resuming with more levels: a deeper run continues a shorter one ---------------------

DEEPER = dict(SMALL, max_layers=8)


def assert_same_run(resumed, straight):
    """``resumed`` equals ``straight`` bit for bit: parameters, iterations, every level's record and traces."""
    for a, b in zip(resumed.x, straight.x):
        np.testing.assert_array_equal(a, b)
    assert resumed.nit == straight.nit and resumed.message == straight.message
    assert resumed.network.n_steps == straight.network.n_steps
    assert len(resumed.history) == len(straight.history)
    for got, expected in zip(resumed.history, straight.history):
        for key in ("level", "n_layers", "iterations", "objective", "train_accuracy", "best_val_accuracy"):
            assert got[key] == expected[key], key
        for key in ("objective", "val_accuracy", "train_accuracy"):
            np.testing.assert_array_equal(got["result"].trace(key), expected["result"].trace(key), err_msg=key)
        for a, b in zip(got["result"].x, expected["result"].x):
            np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def deeper_reference():
    problem, theta0, validation = small_problem()
    return multilevel(problem, theta0, validation=validation, **DEEPER)


def deeper(path, **options):
    problem, theta0, validation = small_problem()
    return multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path, resume=True),
                      **(DEEPER | options))


def test_a_finished_run_continues_deeper_exactly(tmp_path, deeper_reference):
    path = tmp_path / "c.h5"
    problem, theta0, validation = small_problem()
    short = multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path), **SMALL)
    assert load_checkpoint(path).finished and short.network.n_steps == 4
    levels_trained = []
    resumed = deeper(path, callback=lambda k, state: levels_trained.append(state.params.theta.size // 5))
    assert set(levels_trained) == {8}  # the 2- and 4-layer levels are not trained again
    assert_same_run(resumed, deeper_reference)
    saved = load_checkpoint(path)
    assert saved.finished and saved.run["layers"] == [2, 4, 8]
    assert deeper(path).nit == deeper_reference.nit  # finished now at 8 layers: returned as it is


def test_an_unfinished_run_continues_deeper_exactly(tmp_path, deeper_reference):
    path = interrupted_checkpoint(tmp_path / "c.h5")  # planned 2, 4 layers; stopped in the 4-layer level
    assert_same_run(deeper(path), deeper_reference)


def test_a_deeper_run_interrupted_in_its_new_level_resumes_exactly(tmp_path, deeper_reference):
    path = tmp_path / "c.h5"
    problem, theta0, validation = small_problem()
    multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path), **SMALL)

    def interrupt(k, state):
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="continues with the 8-layer level after 2 iterations"):
        deeper(path, callback=interrupt)
    saved = load_checkpoint(path)
    assert (saved.level, saved.iteration, saved.run["layers"]) == (2, 2, [2, 4, 8])
    assert_same_run(deeper(path), deeper_reference)


def test_fewer_levels_than_the_checkpoint_are_refused(tmp_path):
    path = tmp_path / "c.h5"
    problem, theta0, validation = small_problem()
    multilevel(problem, theta0, validation=validation, checkpoint=Checkpointing(path), **DEEPER)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"different run \(layers: \[2, 4, 8\] there, \[2, 4\] now\)"):
        deeper(path, max_layers=4)
    assert path.read_bytes() == before
