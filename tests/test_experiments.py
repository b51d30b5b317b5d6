"""The paper's experiments as functions: settings, data, models, training runs, run folders, tables."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from ocdl.problems import write_idx

import ocdl
from ocdl.experiments import (
    Run,
    build_network,
    compare,
    examples_kept,
    iteration_cost,
    load_data,
    memory_policy,
    numbers_per_step,
    paper_settings,
    results_table,
    train,
    widen,
    write_run,
)
from ocdl.io import load_params

TINY = dict(max_layers=8, max_iter=2)


# -- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "problem, final_time, alpha, width, max_layers",
    [("ellipses", 20, 1e-3, 2, 1024), ("swiss-roll", 20, 5e-3, 4, 1024), ("peaks", 5, 5e-6, 8, 1024),
     ("mnist", 6, 5e-3, 6, 16)],
)
def test_paper_settings_per_problem(problem, final_time, alpha, width, max_layers):
    s = paper_settings(problem, "resnet")
    assert (s.final_time, s.alpha_theta, s.width, s.max_layers) == (final_time, alpha, width, max_layers)
    # MNIST: the paper's at most 5 Newton-PCG iterations of up to 10 CG iterations, 20 iterations per level
    classifier = (5, 10) if problem == "mnist" else (2, 2)
    assert (s.classifier_newton_steps, s.classifier_cg_maxiter, s.cg_maxiter) == (*classifier, 20)
    assert s.max_iter == 20
    assert paper_settings(problem, "verlet").width == (6 if problem == "mnist" else 2)  # Verlet is not widened
    assert s.levels[0] == 4 and s.levels[-1] == max_layers
    assert paper_settings("mnist", "resnet").hessian_batch_size == 5000
    assert paper_settings(problem, "resnet", width=None).width == width  # None keeps the paper's value


def test_settings_reject_bad_values():
    for bad, match in [
        (dict(max_layers=0), "max_layers must be a positive integer"),
        (dict(max_layers=2), r"max_layers \(2\) must be at least first_layers \(4\)"),
        (dict(final_time=-1.0), "final_time must be a finite number > 0"),
        (dict(alpha_theta=float("nan")), "alpha_theta must be a finite number >= 0"),
        (dict(width=3), "width must be a multiple of 2"),
        (dict(gamma=0.1), "gamma is only used by the antisymmetric stepper"),
        (dict(device="tpu"), "device must be one of cpu, gpu"),
        (dict(dtype="float16"), "dtype must be one of float64, float32"),
        (dict(memory="disk"), "memory must be one of auto, store-all, recompute, reversible"),
        (dict(memory="reversible"), "memory 'reversible' needs a reversible stepper"),
        (dict(train_size=100), "train_size, val_size and data_dir are for mnist"),
        (dict(data_dir="data/mnist"), "train_size, val_size and data_dir are for mnist"),
        (dict(colour="red"), "unknown settings: colour"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_data(paper_settings("ellipses", "resnet", **bad))
    with pytest.raises(ValueError, match="problem must be one of"):
        paper_settings("circles", "resnet")
    with pytest.raises(ValueError, match="stepper must be one of"):
        paper_settings("ellipses", "euler")


# -- data and models ------------------------------------------------------------------


def test_memory_policy_stores_what_fits_and_recomputes_or_reverses_the_rest():
    resnet, verlet = paper_settings("mnist", "resnet"), paper_settings("mnist", "verlet")
    n = 6 * 784
    assert numbers_per_step(resnet) == 2 * n  # the state and sigma'
    assert numbers_per_step(verlet) == 4 * n  # (Y, Z) and the two half-steps' sigma' (Z is shared)
    # the finest level's stored sweep: 17 states and caches of s = 1000 examples in float64
    stored = 17 * 1000 * 2 * n * 8
    assert isinstance(memory_policy(resnet, 1000, budget=stored), ocdl.memory.StoreAll)
    recompute = memory_policy(resnet, 1000, budget=stored - 1)
    assert isinstance(recompute, ocdl.memory.Recompute) and recompute.n_checkpoints == 4  # ceil(sqrt(16))
    assert isinstance(memory_policy(verlet, 1000, budget=17 * 1000 * 4 * n * 8 - 1), ocdl.memory.Reversible)
    # float32 halves the estimate
    assert isinstance(memory_policy(resnet.replace(dtype="float32"), 1000, budget=stored // 2), ocdl.memory.StoreAll)
    assert isinstance(memory_policy(resnet.replace(memory="recompute", max_layers=8), 10), ocdl.memory.Recompute)
    assert memory_policy(resnet.replace(memory="recompute", max_layers=8), 10).n_checkpoints == 3  # ceil(sqrt(8))
    assert isinstance(memory_policy(verlet.replace(memory="store-all"), 10**9, budget=0), ocdl.memory.StoreAll)
    # planned for a coarser level: its 9 states fit where the finest level's 17 do not
    assert isinstance(memory_policy(resnet, 1000, budget=9 * 1000 * 2 * n * 8, n_layers=8), ocdl.memory.StoreAll)
    coarse = memory_policy(resnet, 1000, budget=9 * 1000 * 2 * n * 8 - 1, n_layers=8)
    assert isinstance(coarse, ocdl.memory.Recompute) and coarse.n_checkpoints == 3  # ceil(sqrt(8))


def test_chunk_size_setting():
    assert paper_settings("mnist", "resnet").chunk_size == 5000
    assert paper_settings("peaks", "resnet").chunk_size is None
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            paper_settings("mnist", "resnet", chunk_size=bad)


def test_examples_kept_are_the_hessian_sample_and_one_chunk():
    mnist = paper_settings("mnist", "resnet")  # Gauss-Newton on 5,000 examples, chunks of 5,000
    assert examples_kept(mnist, 50000) == 5000 + 5000
    assert examples_kept(mnist.replace(chunk_size=1000), 50000) == 5000 + 1000
    assert examples_kept(mnist, 3000) == 3000  # the Gauss-Newton matrix on all: their states serve the gradient
    assert examples_kept(paper_settings("peaks", "resnet"), 4000) == 4000
    assert examples_kept(mnist.replace(batch_size=2000, hessian_batch_size=None), 50000) == 2000
    # the full-size ResNet run keeps 17 states and caches of 10,000 examples: 6.4 GB in float32
    n = 6 * 784
    stored = 17 * 10000 * 2 * n * 4
    assert isinstance(memory_policy(mnist.replace(dtype="float32"), 50000, budget=stored), ocdl.memory.StoreAll)
    assert isinstance(memory_policy(mnist.replace(dtype="float32"), 50000, budget=stored - 1), ocdl.memory.Recompute)


def test_training_with_recomputed_states_gives_the_same_run():
    settings = paper_settings("ellipses", "resnet", **TINY)
    stored = train(settings.replace(memory="store-all"), progress=False)
    recomputed = train(settings.replace(memory="recompute"), progress=False)
    assert isinstance(recomputed.problem.network.memory, ocdl.memory.Recompute)
    for a, b in zip(recomputed.result.x, stored.result.x):  # the same operations on the same numbers
        np.testing.assert_array_equal(a, b)


def test_auto_memory_decides_at_each_level(monkeypatch):
    settings = paper_settings("ellipses", "resnet", **TINY)  # levels of 4 and 8 layers
    stored = train(settings.replace(memory="store-all"), progress=False)
    n_examples = stored.problem.Y0.shape[0]
    per_state = examples_kept(settings, n_examples) * numbers_per_step(settings) * 8
    # half the machine holds the 5 states of 4 layers, not the 9 of 8 layers
    monkeypatch.setattr(ocdl.experiments.model, "memory_per_rank", lambda reduction, device: 2 * 5 * per_state)
    chosen = []

    def recorded(*args, **kwargs):
        chosen.append((kwargs["n_layers"], memory_policy(*args, **kwargs)))
        return chosen[-1][1]

    monkeypatch.setattr(ocdl.experiments.training, "memory_policy", recorded)
    run = train(settings, progress=False)
    assert [(n, type(policy)) for n, policy in chosen] == [(4, ocdl.memory.StoreAll), (8, ocdl.memory.Recompute)]
    assert run.result.network.memory is chosen[-1][1]
    for a, b in zip(run.result.x, stored.result.x):  # recomputed states: the same operations on the same numbers
        np.testing.assert_array_equal(a, b)


def test_training_with_reversed_states_has_store_all_derivatives():
    # Rounding differences of 1e-15 change the CG iterates of an ill-conditioned Gauss-Newton system, so the
    # runs differ; the derivatives at the trained parameters must agree.
    run = train(paper_settings("ellipses", "verlet", memory="reversible", **TINY), progress=False)
    network = run.problem.network
    assert isinstance(network.memory, ocdl.memory.Reversible)
    stored = ocdl.Network(network.stepper, network.n_steps, network.final_time, ocdl.memory.StoreAll())
    theta, Y0 = run.result.x.theta, run.problem.Y0
    W = np.random.default_rng(0).standard_normal(Y0.shape)
    for reversed_, reference in zip(network.vjp(theta, Y0, W), stored.vjp(theta, Y0, W)):
        np.testing.assert_allclose(reversed_, reference, rtol=1e-10, atol=1e-12 * np.abs(reference).max())


def test_training_in_float32():
    run = train(paper_settings("ellipses", "resnet", dtype="float32", **TINY), progress=False)
    assert all(x.dtype == np.float32 for x in run.result.x)
    assert run.problem.Y0.dtype == np.float32
    run64 = train(paper_settings("ellipses", "resnet", **TINY), progress=False)
    # the same first iterations up to rounding; the paths then part (CG stops on a relative
    # residual, so float32 rounding changes its iteration counts), so only the first level is compared
    first32, first64 = (r.result.history[0]["result"].history for r in (run, run64))
    assert first32[0]["objective"] == pytest.approx(first64[0]["objective"], rel=1e-3)
    assert first32[-1]["objective"] == pytest.approx(first64[-1]["objective"], rel=2e-2)


def test_widen_duplicates_points_and_images():
    Y = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(widen(Y, paper_settings("peaks", "resnet")), np.tile(Y, (1, 4)))
    images = np.random.default_rng(0).random((2, 784))
    lifted = widen(images, paper_settings("mnist", "resnet", width=3)).reshape(2, 3, 784)
    for c in range(3):
        np.testing.assert_array_equal(lifted[:, c], images)
    with pytest.raises(ValueError, match="not a multiple"):
        widen(np.ones((2, 3)), paper_settings("ellipses", "resnet"))


def test_widen_makes_no_float64_copy_for_float32():
    """Full-size MNIST widened to 6 float32 channels is 0.9 GB; a float64 copy of it besides would be 1.9 GB
    more at the run's start. NumPy reports its arrays to tracemalloc: the peak is the result alone."""
    import tracemalloc

    images = np.random.default_rng(0).random((200, 784))  # float64, as the MNIST loader gives them
    settings = paper_settings("mnist", "resnet", dtype="float32")
    tracemalloc.start()
    try:
        lifted = widen(images, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lifted.dtype == np.float32 and lifted.shape == (200, 6 * 784)
    np.testing.assert_array_equal(lifted.reshape(200, 6, 784)[:, 5], images.astype(np.float32))
    assert peak <= 1.25 * lifted.nbytes + images.nbytes // 2, (peak, lifted.nbytes)


@pytest.mark.parametrize("stepper", ocdl.KINDS)
def test_mnist_networks_are_convolutional(stepper):
    net = build_network(paper_settings("mnist", stepper, width=2), 3)
    transform = net.stepper.layer.transform
    assert net.n_steps == 3 and net.final_time == 6.0 and net.stepper.n_features == 2 * 784
    assert type(net.stepper) is ocdl.KINDS[stepper].stepper
    assert isinstance(transform, ocdl.Antisymmetric) == (stepper == "antisymmetric")
    base = transform.base if stepper == "antisymmetric" else transform
    assert isinstance(base, ocdl.Conv2d) and base.param_shape == (2, 2, 3, 3)
    Y = np.random.default_rng(0).random((2, 2 * 784))
    assert net.forward(net.init_params(0), Y).shape == Y.shape


# -- training runs and run folders -----------------------------------------------------------


@pytest.fixture(scope="module")
def ellipses_run() -> Run:
    return train(paper_settings("ellipses", "verlet", **TINY), progress=False)


def test_train_runs_the_levels(ellipses_run):
    summary = ellipses_run.summary()
    assert summary["problem"] == "ellipses" and summary["stepper"] == "verlet"
    assert [rec["n_layers"] for rec in summary["levels"]] == [4, 8]
    for rec in summary["levels"]:
        assert set(rec) >= {"n_layers", "train_accuracy", "best_val_accuracy", "time_s"}
        assert len(rec["val_accuracy"]) == rec["iterations"] == 2
        assert rec["best_val_accuracy"] == max(rec["val_accuracy"])
    assert summary["best_val_accuracy"] == max(rec["best_val_accuracy"] for rec in summary["levels"])
    assert summary["settings"]["final_time"] == 20.0 and summary["time_s"] > 0
    assert ellipses_run.network.n_steps == 8
    json.dumps(summary)  # JSON-ready
    grid = np.zeros((5, 2))
    assert ellipses_run.predict(grid).shape == (5,) and ellipses_run.features(grid).shape == (5, 2)


def test_write_run_folder(ellipses_run, tmp_path):
    paths = write_run(ellipses_run, tmp_path / "run")
    assert json.loads(paths["results"].read_text())["levels"][-1]["n_layers"] == 8
    with h5py.File(paths["params"], "r") as f:
        assert {"theta", "W", "mu"} <= set(f)
        assert f["theta"].shape == (ellipses_run.network.n_params,)
    params = load_params(paths["params"])
    assert params["settings"]["stepper"] == "verlet" and params["settings"]["n_layers"] == 8
    np.testing.assert_array_equal(params["theta"], ellipses_run.params()["theta"])
    for name in ("accuracy", "features"):
        assert paths[name].read_bytes()[:4] == b"\x89PNG"


def test_results_table_rows_per_level(ellipses_run):
    summary = ellipses_run.summary()
    table = results_table([summary, dict(summary, stepper="other")]).splitlines()
    assert table[0].startswith("| layers | verlet train acc (%) | verlet best val acc (%) | other train acc")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["4", "8", "best val", "time (s)"]
    mnist = results_table([dict(summary, problem="mnist")])
    assert "val error (%)" in mnist and f"{100 * (1 - summary['levels'][0]['best_val_accuracy']):.2f}" in mnist


def test_compare_writes_one_table_and_figure(tmp_path):
    summaries, table = compare("swiss-roll", ["resnet", "verlet"], tmp_path, progress=False, max_layers=4,
                               max_iter=1)
    assert [s["stepper"] for s in summaries] == ["resnet", "verlet"]
    assert [s["settings"]["width"] for s in summaries] == [4, 2]
    assert (tmp_path / "table.md").read_text().strip() == table
    assert len(json.loads((tmp_path / "comparison.json").read_text())) == 2
    for name in ("accuracy.png", "features.png", "resnet/results.json", "verlet/params.h5"):
        assert (tmp_path / name).is_file()
    with pytest.raises(ValueError, match="distinct"):
        compare("swiss-roll", ["resnet", "resnet"], tmp_path)


def fake_mnist(folder, n_train=24, n_test=6, seed=0):
    """Random 28 x 28 'digits' in the four IDX files of MNIST."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for split, count in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8))
    return folder


def test_mnist_images_of_another_size_are_refused_before_training(tmp_path):
    """14 x 14 images (196 features) were tiled four times into the 28 x 28 network, trained, and failed only
    when their figure was drawn, after the run's files were written."""
    folder = tmp_path / "small"
    folder.mkdir()
    for split, count in (("train", 24), ("t10k", 6)):
        write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((count, 14, 14), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8))
    settings = paper_settings("mnist", "resnet", width=1, train_size=16, val_size=8, data_dir=str(folder))
    with pytest.raises(ValueError, match=rf"the images in {folder} are 14 x 14 pixels; the MNIST networks take "
                                         "28 x 28"):
        load_data(settings)


def test_mnist_run_and_figure(tmp_path):
    settings = paper_settings("mnist", "antisymmetric", width=2, max_layers=4, max_iter=1, train_size=16,
                              val_size=8, data_dir=str(fake_mnist(tmp_path / "mnist")))
    run = train(settings, progress=False)
    assert run.problem.n_features == 2 * 784 and isinstance(run.problem.W_regularizer, ocdl.ChannelSmoothness)
    assert run.summary()["n_train"] == 16
    paths = write_run(run, tmp_path / "run")
    assert paths["images"].read_bytes()[:4] == b"\x89PNG"
    cost = iteration_cost(settings.replace(hessian_batch_size=8), n_layers=2, progress=False)
    assert (cost["n_layers"], cost["n_train"], cost["n_val"], cost["n_hessian"]) == (2, 16, 8, 8)
    assert 0 < cost["gn_product_s"] < cost["iteration_s"] and 0 <= cost["cg_iters"] <= 20
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data(settings.replace(data_dir=str(tmp_path / "nowhere")))


# -- figures a person reads at a glance -----------------------------------------------------------


def test_2d_figure_names_the_classes_marks_the_misclassified_and_says_which_level(ellipses_run):
    from matplotlib.figure import Figure

    from ocdl.experiments.plotting import plot_2d

    fig = plot_2d(Figure(), [ellipses_run], grid=20)
    data, (train_ax, features_ax, prediction_ax) = ellipses_run.data, fig.axes
    assert [t.get_text() for t in train_ax.get_legend().get_texts()] == ["class 0", "class 1"]
    wrong = int((ellipses_run.predict(data.Y_val) != data.C_val).sum())  # the stored parameters' errors
    legend = [t.get_text() for t in prediction_ax.get_legend().get_texts()]
    assert legend == ["class 0", "class 1", f"misclassified ({wrong} of {data.Y_val.shape[0]})"]
    crosses = prediction_ax.collections[-1]  # the misclassified validation points, drawn last
    assert len(crosses.get_offsets()) == wrong
    accuracy = ellipses_run.summary()["final_val_accuracy"]
    assert prediction_ax.get_title() == f"prediction (shaded), 8 layers: validation {100 * accuracy:.1f}%"
    assert features_ax.get_title().startswith("propagated features $Y_N$, 8 layers")
    assert "finest level trained, at its best iteration (params.h5" in fig._suptitle.get_text()


def test_mnist_figures_use_the_error_as_the_table_does_and_show_the_weights_scale(tmp_path):
    from matplotlib.figure import Figure

    from ocdl.experiments.plotting import plot_levels, plot_mnist

    settings = paper_settings("mnist", "resnet", width=2, max_layers=4, max_iter=2, train_size=16, val_size=8,
                              data_dir=str(fake_mnist(tmp_path / "mnist")))
    run = train(settings, progress=False)
    summary = run.summary()
    left, right = plot_levels(Figure(), [summary]).axes
    assert left.get_ylabel() == "best validation error (%)" and right.get_ylabel() == "validation error (%)"
    np.testing.assert_allclose(left.lines[0].get_ydata(), [100 * (1 - summary["levels"][0]["best_val_accuracy"])])
    np.testing.assert_allclose(right.lines[0].get_ydata(), 100 * (1 - np.array(summary["levels"][0]["val_accuracy"])))
    error = f"{100 * (1 - summary['best_val_accuracy']):.2f}"
    assert f"best {error}%" in left.get_legend().get_texts()[0].get_text()
    assert f"{error} (4 layers)" in results_table([summary])

    assert right.get_yscale() == "linear"  # errors within a factor of 10
    transient = dict(summary, levels=[dict(level, val_accuracy=[0.436, 0.97, 0.99]) for level in summary["levels"]])
    assert plot_levels(Figure(), [transient]).axes[1].get_yscale() == "log"  # 56.4% beside 1%: a log axis
    close = dict(summary, levels=[dict(level, val_accuracy=[0.97, 0.99]) for level in summary["levels"]])
    assert plot_levels(Figure(), [close]).axes[1].get_yscale() == "linear"  # 3% beside 1%

    fig = plot_mnist(Figure(figsize=(11, 13), layout="constrained"), run)
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "weight"]
    assert len(colorbars) == 1
    W = run.params()["W"].reshape(2, 28, 28, -1).sum(axis=0)
    low, high = colorbars[0].get_ylim()
    assert low == pytest.approx(-np.abs(W).max()) and high == pytest.approx(np.abs(W).max())
    assert "the finest level (4 layers) at its best iteration (params.h5): validation error" in fig._suptitle.get_text()
