"""Training checkpoints: round trips, exact resumption of multilevel BCD, SGD and Adam, clear errors."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from ocdl.solvers import TrainingState, adam, multilevel, sgd
from ocdl.solvers.checkpoint import (
    CHECKPOINT_KIND,
    Checkpoint,
    TrainingInterrupted,
    load_checkpoint,
    save_checkpoint,
)
from ocdl.solvers.result import SolverResult
from test_io import flip_data_byte

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
    "bcd": dict(max_iter=4, batch_size=20, hessian_batch_size=10),
    "sgd": dict(solver=sgd, max_epochs=3, batch_size=16),
    "adam": dict(solver=adam, max_epochs=3, batch_size=16),
}


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
    options = dict(SOLVERS[name], validation=validation, max_layers=8, rng=5, progress=False)
    reference = multilevel(lp, theta0, **options)
    path = tmp_path / "run" / "checkpoint.h5"
    settings = {"problem": "blobs", "seed": 5, "data_dir": None}
    with pytest.raises(TrainingInterrupted) as info:
        multilevel(lp, theta0, checkpoint=path, checkpoint_every=every, settings=settings,
                   callback=interrupt_after(6), **options)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.checkpoint == path
    saved = load_checkpoint(path)
    # iteration 6 of all levels was recorded before the callback raised: the newest complete state is on disk
    expected = (1, 6 - reference.history[0]["iterations"])
    assert (saved.level, saved.iteration) == (info.value.level, info.value.iteration) == expected
    assert saved.settings == settings and not saved.finished and len(saved.levels) == 1
    resumed = multilevel(lp, None, checkpoint=path, checkpoint_every=every, resume=True, **options)
    for key in ("theta", "W", "mu"):
        np.testing.assert_array_equal(resumed.x[key], reference.x[key])
    assert resumed.x["network"].n_steps == 8 and resumed.nit == reference.nit
    for a, b in zip(reference.history, resumed.history):
        assert without_time(a["result"].history) == without_time(b["result"].history)
        assert a["best_val_accuracy"] == b["best_val_accuracy"] and a["iterations"] == b["iterations"]
    final = load_checkpoint(path)
    assert final.finished and final.state is None and final.settings == settings
    # a finished checkpoint returns its result without training
    again = multilevel(lp, None, checkpoint=path, resume=True, callback=interrupt_after(1), **options)
    np.testing.assert_array_equal(again.x["theta"], reference.x["theta"])
    assert again.x["network"].n_steps == 8 and again.message == reference.message


def test_resume_without_a_file_starts_afresh_and_float32_stays_exact(tmp_path):
    lp, theta0, validation = small_problem(np.float32)
    options = dict(SOLVERS["adam"], validation=validation, max_layers=4, progress=False)
    reference = multilevel(lp, theta0, **options)
    path = tmp_path / "c.h5"
    fresh = multilevel(lp, theta0, checkpoint=path, resume=True, **options)
    np.testing.assert_array_equal(fresh.x["theta"], reference.x["theta"])
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, theta0, checkpoint=path, callback=interrupt_after(4), **options)
    saved = load_checkpoint(path)
    assert saved.state.theta.dtype == np.float32 and saved.state.buffers["m"][1].dtype == np.float32
    resumed = multilevel(lp, theta0, checkpoint=path, resume=True, **options)
    np.testing.assert_array_equal(resumed.x["theta"], reference.x["theta"])


def test_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    rng.standard_normal(5)
    theta, W, mu = np.arange(10.0), np.ones((2, 2)), np.zeros(2)
    state = TrainingState(
        iteration=2, theta=theta, W=W, mu=mu, rng=rng, best=dict(theta=theta + 1, W=W, mu=mu),
        best_accuracy=0.75, best_iteration=1, elapsed=1.5,
        history=[{"iteration": 0, "objective": np.float64(0.5), "grad_norm": np.nan, "gradient_fallback": np.True_}],
        buffers={"k": 7, "m": (theta, W, mu), "v": [mu], "scale": np.float32(2.0)},
    )
    level = {"level": 0, "n_layers": 1, "iterations": 3, "objective": 0.25, "train_accuracy": 1.0,
             "best_val_accuracy": np.nan, "time_s": 0.1,
             "result": SolverResult(dict(theta=theta[:5], W=W, mu=mu), 0.25, 3, True, "done", [{"a": 1}])}
    run = {"layers": [1, 2], "params_per_layer": 5, "n_features": 2, "n_outputs": 2, "options": {"x": (1, 2)}}
    save_checkpoint(tmp_path / "c.h5", Checkpoint(1, state, [level], rng, run, {"seed": 3}))
    back = load_checkpoint(tmp_path / "c.h5")
    assert back.level == 1 and back.iteration == 2 and back.settings == {"seed": 3}
    assert back.run["options"] == {"x": [1, 2]}
    s = back.state
    np.testing.assert_array_equal(s.theta, theta)
    np.testing.assert_array_equal(s.best["theta"], theta + 1)
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
    multilevel(lp, theta0, max_layers=4, max_iter=1, progress=False, checkpoint=tmp_path / "good.h5")
    raw = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(OcdlFileError, match="truncated|damaged"):
        load_checkpoint(tmp_path / "cut.h5")


def test_resume_checks_that_the_run_is_the_same(tmp_path):
    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    multilevel(lp, theta0, max_layers=4, max_iter=2, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match=r"written by a different run \(options: .*'max_iter': 2.*'max_iter': 3"):
        multilevel(lp, theta0, max_layers=4, max_iter=3, progress=False, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="layers: \\[2, 4\\] there, \\[2, 4, 8\\] now"):
        multilevel(lp, theta0, max_layers=8, max_iter=2, progress=False, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="solver: 'block_coordinate_descent' there, 'sgd' now"):
        multilevel(lp, theta0, max_layers=4, max_iter=2, solver=sgd, progress=False, checkpoint=path, resume=True)


def test_bad_arguments(tmp_path):
    lp, theta0, _ = small_problem()
    with pytest.raises(ValueError, match="resume=True needs the checkpoint file"):
        multilevel(lp, theta0, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        multilevel(lp, theta0, checkpoint=tmp_path / "c.h5", checkpoint_every=0)
    with pytest.raises(TypeError, match="settings must be a dict"):
        multilevel(lp, theta0, checkpoint=tmp_path / "c.h5", settings=["a"])
    with pytest.raises(TypeError, match="a checkpoint cannot hold a"):
        multilevel(lp, theta0, checkpoint=tmp_path / "c.h5", settings={"f": len})
    with pytest.raises(ValueError, match="not from state="):
        multilevel(lp, theta0, state=None)


def test_ctrl_c_without_checkpoints_is_a_plain_keyboard_interrupt():
    lp, theta0, _ = small_problem()
    with pytest.raises(KeyboardInterrupt) as info:
        multilevel(lp, theta0, max_layers=4, max_iter=2, progress=False, callback=interrupt_after(1))
    assert not isinstance(info.value, TrainingInterrupted)


def test_ctrl_c_saves_the_newest_iteration_between_periodic_writes(tmp_path):
    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    with pytest.raises(TrainingInterrupted) as info:
        multilevel(lp, theta0, max_layers=4, max_iter=2, progress=False, checkpoint=path, callback=interrupt_after(1),
                   checkpoint_every=5)
    # periodic writes: the start only; the first iteration is written on Ctrl-C
    assert (info.value.level, info.value.iteration) == (0, 1)
    saved = load_checkpoint(path)
    assert saved.iteration == 1 and saved.state.history[0]["iteration"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_resume_on_the_gpu(tmp_path):
    lp_cpu, theta0, validation = small_problem()
    lp = LearningProblem(lp_cpu.network, ocdl.SoftmaxCrossEntropy(), to_device(lp_cpu.Y0, "gpu"),
                         to_device(lp_cpu.classes, "gpu"))
    options = dict(SOLVERS["adam"], validation=to_device(validation, "gpu"), max_layers=4, progress=False)
    reference = multilevel(lp, to_device(theta0, "gpu"), **options)
    path = tmp_path / "c.h5"
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, to_device(theta0, "gpu"), checkpoint=path, callback=interrupt_after(4), **options)
    resumed = multilevel(lp, None, checkpoint=path, resume=True, **options)
    assert device_of(resumed.x["theta"]) == "gpu"
    for key in ("theta", "W", "mu"):
        np.testing.assert_allclose(asnumpy(resumed.x[key]), asnumpy(reference.x[key]), rtol=1e-12, atol=0)


def test_a_corrupt_checkpoint_is_not_resumed_from(tmp_path):
    lp, theta0, _ = small_problem()
    path = tmp_path / "c.h5"
    with pytest.raises(TrainingInterrupted):
        multilevel(lp, theta0, max_layers=4, max_iter=3, progress=False, checkpoint=path,
                   callback=interrupt_after(2))
    flip_data_byte(path, "state/params/theta")
    with pytest.raises(OcdlFileError, match=f"^{re.escape(str(path))}: corrupt ocdl file"):
        load_checkpoint(path)
    with pytest.raises(OcdlFileError, match="corrupt ocdl file"):
        multilevel(lp, theta0, max_layers=4, max_iter=3, progress=False, checkpoint=path, resume=True)


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
        multilevel(lp, theta0, max_layers=4, max_iter=3, progress=False, checkpoint=tmp_path / "new.h5",
                   callback=interrupt_after(4))
    write_as_version_1(tmp_path / "old.h5", read_tree(tmp_path / "new.h5", CHECKPOINT_KIND))
    new, old = load_checkpoint(tmp_path / "new.h5"), load_checkpoint(tmp_path / "old.h5")
    assert (old.level, old.iteration, old.run, old.settings) == (new.level, new.iteration, new.run, new.settings)
    np.testing.assert_array_equal(old.state.theta, new.state.theta)
    np.testing.assert_array_equal(old.levels[0]["result"].x["W"], new.levels[0]["result"].x["W"])
