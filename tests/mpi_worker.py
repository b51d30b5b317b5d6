"""Run by ``mpiexec -n P python tests/mpi_worker.py SCENARIO OUT`` from tests/test_distributed.py.

``train``: every configuration of :data:`CONFIGS` trained on the ranks' shares
(:class:`ocdl.distributed.MPIReduction`, also for P = 1; MNIST read in shares by
:func:`ocdl.experiments.load_data`, peaks made whole and shared by
:func:`ocdl.experiments.train`); every rank writes its
objective history and final parameters to ``OUT/CONFIG-P{P}-rank{r}.npz`` (and
``OUT/mnist-float64-whole-P{P}-rank{r}.npz`` trained from the whole data set on every rank).
:func:`train_config` with the local reduction is the one-process reference.

``reductions``: checks of the reduction and of the learning problem on the
ranks against independent computations; every failing check is named in
``OUT/reductions-rank{r}.txt`` ("ok" when none fails).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
from ocdl.problems import mnist, write_idx
from ocdl.problems.mnist import FILES, default_data_dir
from ocdl.solvers import BlockCoordinateDescent

import ocdl
from ocdl.distributed import MPIReduction, share, share_rows
from ocdl.experiments import load_data, paper_settings, train

FLOAT32 = {"peaks": dict(cg_maxiter=2), "mnist": dict(cg_maxiter=1)}
"""Fewer CG iterations per Gauss-Newton step in float32, with which float32 itself is accurate to 2e-6 after three
iterations (parameters and objective against float64), and P = 2, 3 processes agree with one to 4e-6. With more
(peaks: 5; MNIST: 3, then float32 is accurate to 1.4e-5 only) float32 runs on one and on several processes differ
as much as float32 from float64 (MNIST: 2e-4), their roundings being different."""

CONFIGS = {
    "peaks-float64": ("peaks", "float64", {}),
    "peaks-float32": ("peaks", "float32", FLOAT32["peaks"]),
    "mnist-float64": ("mnist", "float64", {}),
    "mnist-float32": ("mnist", "float32", FLOAT32["mnist"]),
}
"""Configurations of the training comparison: problem, dtype, settings beyond :func:`settings_of`'s."""


def settings_of(config: str):
    problem, dtype, overrides = CONFIGS[config]
    if problem == "peaks":  # the batch and the Gauss-Newton sub-sample fall on every rank unevenly
        options = dict(dict(cg_maxiter=5), **overrides)
        return paper_settings("peaks", "resnet", width=4, first_layers=4, max_layers=4, max_iter=3, batch_size=400,
                              hessian_batch_size=100, dtype=dtype, **options)
    # the classifier's Newton-PCG: 2 steps of 2 CG iterations. With the paper's 5 of 10, on 120 examples of 4,704
    # features, the run amplifies rounding so much that one process with every reduced vector scaled by
    # (1 + 2.2e-16) ends its first iteration 4e-4 away (its third 45%): so do one and two processes.
    options = dict(dict(cg_maxiter=3, classifier_newton_steps=2, classifier_cg_maxiter=2), **overrides)
    return paper_settings("mnist", "antisymmetric", width=1, first_layers=2, max_layers=2, max_iter=3, train_size=240,
                          val_size=60, batch_size=120, hessian_batch_size=40, dtype=dtype, **options)


def mnist_available() -> bool:
    try:
        default_data_dir()
    except FileNotFoundError:
        return False
    return True


def train_config(config: str, data=None, reduction=None) -> dict:
    """Three block-coordinate-descent iterations of ``config``: objective history and final parameters."""
    run = train(settings_of(config), data, progress=False, reduction=reduction)
    history = run.result.history[-1]["result"].history
    state = {key: np.asarray(value) for key, value in run.params().items()}
    return {"objective": np.array([rec["objective"] for rec in history]),
            "val_accuracy": np.array([rec["val_accuracy"] for rec in history]), **state}


def scenario_train(reduction: MPIReduction, out: Path) -> None:
    data = {}
    for config in CONFIGS:
        problem = CONFIGS[config][0]
        if problem == "mnist" and not mnist_available():
            continue
        if problem not in data:  # MNIST: this rank's share, read from the files; peaks: all of it, shared by train
            data[problem] = load_data(settings_of(config), reduction)
        result = train_config(config, data[problem], reduction)
        np.savez(out / f"{config}-P{reduction.size}-rank{reduction.rank}.npz", **result)
        if config == "mnist-float64":  # as before the shares were read: all of the data, shared by train
            result = train_config(config, load_data(settings_of(config)), reduction)
            np.savez(out / f"{config}-whole-P{reduction.size}-rank{reduction.rank}.npz", **result)


# -- checks of the reduction and of the learning problem -------------------------------------------


def check_numbers(red: MPIReduction) -> None:
    r, P = red.rank, red.size
    assert red.sum(r + 1) == P * (P + 1) // 2
    counts = [k + 1 for k in range(P)]
    values = [0.1 * (k + 1) ** 2 for k in range(P)]
    expected = 0.0
    for count, value in zip(counts, values):
        expected += count * value
    assert red.mean(values[r], counts[r]) == expected / sum(counts)
    assert isinstance(red.mean(np.float32(values[r]), counts[r]), np.float32)
    if P > 1:  # a rank without examples (count 0) is left out, whatever its value
        last = r == P - 1
        mean = red.mean(np.nan if last else values[r], 0 if last else counts[r])
        assert mean == sum(counts[k] * values[k] for k in range(P - 1)) / sum(counts[: P - 1])
    assert red.gather(r * 10) == [10 * k for k in range(P)]
    assert red.partition(r + 2) == (sum(k + 2 for k in range(r)), sum(k + 2 for k in range(P)))


def check_arrays(red: MPIReduction) -> None:
    r, P = red.rank, red.size
    parts = [np.random.default_rng(k).standard_normal((7, 3)) for k in range(P)]
    for dtype in (np.float64, np.float32):
        x = parts[r].astype(dtype)
        mean = red.mean(x, r + 1)
        expected = sum((k + 1) * parts[k].astype(dtype).astype(np.float64) for k in range(P)) / sum(range(1, P + 1))
        assert mean.dtype == dtype and mean.shape == (7, 3)
        np.testing.assert_array_equal(mean, expected.astype(dtype))
        total = red.sum(x)
        np.testing.assert_allclose(total, sum(p.astype(dtype) for p in parts), rtol=1e-6)
        assert len(set(red.gather(total.tobytes()))) == 1  # identical on every rank


def check_cupy_paths(red: MPIReduction) -> None:
    """CuPy arrays (the stand-in) go through host buffers, or stay on the device with CUDA-aware MPI."""
    import standin_cupy

    xp = standin_cupy.install()
    try:
        for cuda_aware, host_copies in ((False, 1), (True, 0)):
            device = MPIReduction(red.comm, cuda_aware=cuda_aware)
            x = xp.asarray(np.full(5, red.rank + 1.0))
            standin_cupy.TRANSFERS.clear()
            mean = device.mean(x, red.rank + 1)
            assert type(mean) is standin_cupy.StandInArray, type(mean)
            assert standin_cupy.TRANSFERS == [5] * host_copies, standin_cupy.TRANSFERS
            expected = sum((k + 1) ** 2 for k in range(red.size)) / sum(range(1, red.size + 1))
            np.testing.assert_allclose(np.asarray(mean.view(np.ndarray)), expected, rtol=1e-15)
    finally:
        sys.modules.pop("cupy", None)
        ocdl.backend._cupy = None


def check_errors_are_raised_on_every_rank(red: MPIReduction) -> None:
    if red.size == 1:
        return
    try:
        with red.errors():
            if red.rank == 1:
                raise FloatingPointError("blew up on rank 1's examples")
            red.sum(1.0)  # the other ranks meet rank 1's failure here
    except FloatingPointError as error:
        assert str(error) == "blew up on rank 1's examples"
    else:
        raise AssertionError("no error")
    assert red.sum(1) == red.size  # and the ranks are in step afterwards


def raises_on_every_rank(red: MPIReduction, error: type, message: str, call) -> None:
    """``call()`` raises ``error`` with ``message`` on this rank, and the ranks are in step afterwards (a rank
    left waiting in a reduction would hang the test until its timeout)."""
    try:
        call()
    except error as err:
        assert message in str(err), str(err)
    else:
        raise AssertionError(f"no {error.__name__} ({message})")
    assert red.sum(1) == red.size


def check_out_of_step_and_mismatch(red: MPIReduction) -> None:
    if red.size == 1:
        return
    for wrong, error, message in (
        (lambda: red.gather(0) if red.rank else red.sum(0), RuntimeError, "out of step"),
        (lambda: red.sum(np.zeros(2 + (red.rank == 1))), ValueError, "arrays of different shapes"),
        (lambda: red.check_same("settings", {"seed": red.rank == 1}), ValueError, "seed: True on rank 1"),
        (lambda: share(red, np.arange(9.0) + (red.rank == 1)), ValueError, "different data"),
    ):
        raises_on_every_rank(red, error, message, wrong)


def check_share(red: MPIReduction) -> None:
    Y, C = share(red, np.arange(20.0).reshape(10, 2), np.arange(10))
    sizes = red.gather(len(C))
    assert sum(sizes) == 10 and max(sizes) - min(sizes) <= 1
    assert np.concatenate(red.gather(C)).tolist() == list(range(10))
    np.testing.assert_array_equal(Y[:, 0], 2 * C)


def problem_on(reduction, seed=3, s=23):
    """A small learning problem; with a reduction, on this rank's share of the examples."""
    rng = np.random.default_rng(seed)
    net = ocdl.network("resnet", 3, 3, 1.0)
    Y0, C = rng.standard_normal((s, 3)), rng.integers(0, 3, s)
    theta = net.init_params(rng) + 0.3 * rng.standard_normal(net.n_params)
    W, mu = rng.standard_normal((3, 3)), rng.standard_normal(3)
    if reduction is not None:
        rows = share_rows(s, reduction)
        Y0, C = Y0[rows], C[rows]
    lp = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y0, C, n_classes=3, reduction=reduction)
    return lp, theta, W, mu, rng


def check_learning_problem(red: MPIReduction) -> None:
    """Every data term on the ranks' shares equals the one-process value, also where the sub-sample of the
    value or of the Gauss-Newton matrix has no example on some ranks."""
    one, theta, W, mu, rng = problem_on(None)
    lp, *_ = problem_on(red)
    assert lp.n_examples == one.n_examples == 23
    v = rng.standard_normal(theta.shape)
    x = one.pack_classifier(W, mu)
    for indices, hessian in ((None, None), (np.array([0, 1, 2]), np.array([1])), (np.array([2, 9, 22]), None)):
        value, grads = lp.value_and_gradient(theta, W, mu, indices)
        value1, grads1 = one.value_and_gradient(theta, W, mu, indices)
        np.testing.assert_allclose(value, value1, rtol=1e-13)
        for g, g1 in zip(grads, grads1):
            np.testing.assert_allclose(g, g1, rtol=1e-12, atol=1e-15)
        model = lp.theta_problem(W, mu, indices, hessian).model(theta)
        model1 = one.theta_problem(W, mu, indices, hessian).model(theta)
        np.testing.assert_allclose(model.value, model1.value, rtol=1e-13)
        np.testing.assert_allclose(model.gradient, model1.gradient, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(model.hessian_matvec(v), model1.hessian_matvec(v), rtol=1e-12, atol=1e-15)
        assert model.metrics() == model1.metrics()
        YN = lp.features(theta, indices)
        classifier = lp.classifier_problem(YN, indices).model(x)
        classifier1 = one.classifier_problem(one.features(theta, indices), indices).model(x)
        np.testing.assert_allclose(classifier.gradient, classifier1.gradient, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(classifier.hessian_matvec(x), classifier1.hessian_matvec(x), rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose(lp.classifier_problem(YN, indices).value(x),
                                   one.classifier_problem(one.features(theta, indices), indices).value(x), rtol=1e-13)
    assert lp.accuracy(theta, W, mu) == one.accuracy(theta, W, mu)
    split, whole = lp.fingerprint(), one.fingerprint()  # the same for every split of the examples
    assert split == {key: whole[key] for key in split} and "Y0_rows" in split
    assert red.size == 1 or "Y0" not in split  # the digest of the whole array: on one worker only


def check_blow_up_on_one_rank(red: MPIReduction) -> None:
    """A propagation that blows up on one rank's examples only raises on every rank (so that the line search,
    which takes it as an infinite objective, shortens the step on every rank alike)."""
    net = ocdl.Network(ocdl.ResNet(ocdl.Layer(ocdl.Dense(3, 3), "relu")), 3, 1.0, blow_up=10.0)
    theta = net.pack([np.zeros((3, 3))] * 3, [20.0] * 3)  # Y_N = Y_0 + 20: above 10 max(1, max|Y_0|) for small Y_0
    small = red.rank == red.size - 1
    Y0 = np.random.default_rng(red.rank).standard_normal((4, 3)) * (1e-3 if small else 10.0)
    lp = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y0, np.arange(4) % 2, n_classes=2, reduction=red)
    W, mu = lp.initial_classifier()
    for evaluate in (lambda: lp.value(theta, W, mu), lambda: lp.theta_problem(W, mu).model(theta).gradient):
        try:
            evaluate()
        except ocdl.PropagationError as error:
            assert "forward propagation blew up: step 1 of 3" in str(error), str(error)
        else:
            raise AssertionError("no PropagationError")
    assert red.sum(1) == red.size


def check_errors_in_one_share_reach_every_rank(red: MPIReduction) -> None:
    """Errors of one rank's data or of arguments used only where a rank has rows stop every rank: a bad label
    in the last share, a mean of arrays over no examples, a wrong classifier with a sub-sample on one rank."""
    last = red.rank == red.size - 1
    rng = np.random.default_rng(0)
    Y0, C = rng.standard_normal((4, 3)), np.array([0, 1, 2, 7 if last else 0])
    raises_on_every_rank(red, ValueError, "class index 7 >= n_classes = 3", lambda: ocdl.LearningProblem(
        ocdl.network("resnet", 3, 2, 1.0), ocdl.SoftmaxCrossEntropy(), Y0, C, n_classes=3, reduction=red))
    raises_on_every_rank(red, ValueError, "a mean over no examples", lambda: red.mean(np.ones(3), 0))
    lp, theta, W, mu, _ = problem_on(red)
    on_last_rank = np.array([21, 22])  # of 23 examples: in the last rank's share only
    raises_on_every_rank(red, ValueError, "W must have shape 3 x 3, got (3, 2)",
                         lambda: lp.value(theta, W[:, :2], mu, on_last_rank))
    raises_on_every_rank(red, TypeError, "W must be a numpy array of the examples' dtype float64, got a numpy "
                         "array of dtype float32", lambda: lp.value(theta, W.astype(np.float32), mu, on_last_rank))
    Y_val, C_val = np.ones((2, 3)), np.array([0, 7 if last else 1])  # other examples, a bad label on one rank
    raises_on_every_rank(red, ValueError, "class index 7 >= n_classes = 3",
                         lambda: lp.accuracy(theta, W, mu, Y_val, C_val))
    raises_on_every_rank(red, ValueError, "class index 7 >= n_classes = 3",
                         lambda: BlockCoordinateDescent(max_iter=1).minimize(lp, theta, validation=(Y_val, C_val),
                                                                            progress=False))


def check_workers_must_agree(red: MPIReduction) -> None:
    if red.size == 1:
        return
    rng = np.random.default_rng(0)
    Y0, C = rng.standard_normal((4, 2)), np.arange(4) % 2
    try:
        ocdl.LearningProblem(ocdl.network("resnet", 2, 2, 1.0), ocdl.SoftmaxCrossEntropy(), Y0, C, n_classes=2,
                             alpha_theta=1e-3 * (1 + red.rank), reduction=red)
    except ValueError as error:
        assert "hold different learning problems (alpha_theta: 0.002 on rank 1, 0.001 on rank 0)" in str(error)
    else:
        raise AssertionError("no ValueError")


def check_memory_per_rank(red: MPIReduction) -> None:
    """The ranks of this test run on one node: each plans with its share of the memory, memory_bytes / P (the
    stand-in GPU's too while they all use it; each its own when each has another device), and memory="auto"
    stores a sweep of 3/4 of half the memory on one rank only; a decision not to store on one rank is every
    rank's."""
    from ocdl.backend import memory_bytes
    from ocdl.distributed import memory_per_rank, ranks_sharing_memory
    from ocdl.experiments.model import memory_policy, numbers_per_step

    P = red.size
    assert red.gather(red.node) == [0] * P
    assert ranks_sharing_memory(red, "cpu") == P
    assert memory_per_rank(red, "cpu") == memory_bytes("cpu") // P
    settings = paper_settings("peaks", "resnet", width=4, first_layers=4, max_layers=4, memory="auto",
                              batch_size=None, hessian_batch_size=None, chunk_size=None)
    per_example = (settings.max_layers + 1) * numbers_per_step(settings) * np.dtype(settings.dtype).itemsize
    n = 3 * (memory_bytes("cpu") // 2) // (4 * per_example)  # every example kept: a sweep of 3/4 of the half
    policy = memory_policy(settings, n, reduction=red)
    assert type(policy) is (ocdl.memory.StoreAll if P == 1 else ocdl.memory.Recompute), (P, policy)
    budget = 0 if red.rank == P - 1 else 1 << 62  # the last rank cannot store: no rank stores
    assert type(memory_policy(settings, 10, budget=budget, reduction=red)) is ocdl.memory.Recompute

    from ocdl.experiments.cost import finest_level_cost

    data = load_data(settings)
    one, mine = (finest_level_cost(settings, data, seconds_per_layer=1e-6, reduction=r) for r in (None, red))
    assert (mine.machine_bytes, mine.sharing) == (memory_bytes("cpu") // P, P)
    n, n_val = data.Y_train.shape[0], data.Y_val.shape[0]
    rows, val_rows = share_rows(n, red), share_rows(n_val, red)  # the estimate is this rank's share of the work
    val_s = settings.max_iter * settings.max_layers * 1e-6 * n_val
    expected = (one.seconds - val_s) * (rows.stop - rows.start) / n + val_s * (val_rows.stop - val_rows.start) / n_val
    assert abs(mine.seconds - expected) <= 1e-12 * one.seconds, (mine.seconds, expected)
    assert (mine.memory_bytes < one.memory_bytes) == (P > 1)
    assert (f"each of the {P} processes on the machine has" in mine.describe()) == (P > 1)

    import standin_cupy

    xp = standin_cupy.install()
    try:
        assert ranks_sharing_memory(red, "gpu") == P
        assert memory_per_rank(red, "gpu") == xp.device_mem_info[0] // P
        xp.pci_bus_id = f"0000:{red.rank + 1:02x}:00.0"  # each rank on a device of its own
        assert ranks_sharing_memory(red, "gpu") == 1
        assert memory_per_rank(red, "gpu") == xp.device_mem_info[0]
    finally:
        sys.modules.pop("cupy", None)
        ocdl.backend._cupy = None


def write_mnist(folder: Path, seed: int = 0, compress: bool = True, n_train: int = 47, n_test: int = 13) -> Path:
    """Random 28 x 28 'digits' in the four MNIST files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for key, count, shape in (("train_images", n_train, (28, 28)), ("train_labels", n_train, ()),
                              ("test_images", n_test, (28, 28)), ("test_labels", n_test, ())):
        values = rng.integers(0, 256 if shape else 10, (count, *shape), dtype=np.uint8)
        write_idx(folder / (FILES[key] + ".gz" * compress), values, compress=compress)
    return folder


def check_loaded_share(red: MPIReduction) -> None:
    """load_data with the ranks' reduction reads on each rank the rows that share gives it of the whole data set,
    from gzipped and plain files (and from the MNIST files where present), and records where they lie; ranks
    whose files differ are refused."""
    with tempfile.TemporaryDirectory() as tmp:
        folders = [write_mnist(Path(tmp) / f"mnist-{compress}", compress=compress) for compress in (True, False)]
        real = [None] if mnist_available() else []
        for data_dir in [*map(str, folders), *real]:
            settings = paper_settings("mnist", "resnet", train_size=31, val_size=11, data_dir=data_dir)
            if data_dir is None:  # the real files: the paper's split
                settings = settings.replace(train_size=None, val_size=None)
            whole, mine = load_data(settings), load_data(settings, red)
            for split in ("train", "val", "test"):
                Y, C = (getattr(whole, f"{name}_{split}") for name in ("Y", "C"))
                shared = share(red, Y, C)
                np.testing.assert_array_equal(getattr(mine, f"Y_{split}"), shared[0])
                np.testing.assert_array_equal(getattr(mine, f"C_{split}"), shared[1])
                assert getattr(mine, f"Y_{split}").dtype == Y.dtype and mine.whole_size(split) == Y.shape[0]
                rows = share_rows(Y.shape[0], red)
                assert mine.part is None if red.size == 1 else mine.part[split] == (rows.start, Y.shape[0])
        settings = paper_settings("mnist", "resnet", width=1, first_layers=1, max_layers=1, max_iter=1, train_size=31,
                                  val_size=11)  # the ranks' folders differ: the data are given
        wrong = mnist(folders[0], n_train=31, n_val=11, rows=lambda n: slice(0, n // (red.size + 1)))
        try:  # every rank holds the first rows: not the shares
            train(settings, wrong, progress=False, reduction=red)
        except ValueError as error:
            assert (f"worker 0 of {red.size} holds train examples 0..{31 // (red.size + 1) - 1} of 31, not its share "
                    f"0..{31 // red.size - 1}") in str(error), str(error)
        else:
            raise AssertionError("no ValueError")
        other = write_mnist(Path(tmp) / "other", seed=red.rank)
        settings = paper_settings("mnist", "resnet", train_size=31, val_size=11, data_dir=str(other))
        if red.size > 1:
            try:
                load_data(settings, red)
            except ValueError as error:
                assert "hold different MNIST files (SHA-256)" in str(error), str(error)
            else:
                raise AssertionError("no ValueError")


CHECKS = [check_numbers, check_arrays, check_cupy_paths, check_errors_are_raised_on_every_rank,
          check_out_of_step_and_mismatch, check_share, check_learning_problem, check_blow_up_on_one_rank,
          check_errors_in_one_share_reach_every_rank, check_workers_must_agree, check_memory_per_rank,
          check_loaded_share]


def scenario_reductions(reduction: MPIReduction, out: Path) -> None:
    failures = []
    for check in CHECKS:
        try:
            with reduction.errors():  # a check failing on one rank fails on all: the ranks stay in step
                check(reduction)
        except Exception:
            failures.append(f"{check.__name__}: {traceback.format_exc()}")
    text = "\n".join(failures) or "ok"
    (out / f"reductions-rank{reduction.rank}.txt").write_text(text)


if __name__ == "__main__":
    scenario, out = sys.argv[1], Path(sys.argv[2])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # standin_cupy
    {"train": scenario_train, "reductions": scenario_reductions}[scenario](MPIReduction(), out)
