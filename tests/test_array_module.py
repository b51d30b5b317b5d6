"""The array-module switch without a GPU: the same code on a stand-in for CuPy (``standin_cupy.py``).

CI has no CuPy, so the branches taken for non-NumPy arrays would run only on
a GPU machine: one block instead of threaded row blocks
(``ocdl._threads.row_blocks``), fresh arrays instead of NumPy's
reused buffers (:mod:`ocdl._workspace`), and ``Conv2d``'s single block
of images with zeroed buffers. With the stand-in as ocdl's CuPy,
:func:`ocdl.get_array_module` picks it and every one of those branches runs
on the CPU. The results must equal NumPy's (which take the threaded, cached
paths for the same data), stay stand-in arrays throughout (no silent
fall-back to NumPy; the stand-in refuses to mix with NumPy arrays, as CuPy
does). The suite's own GPU tests (derivative checks of the steppers,
objectives, regularizers, PCG, the learning problem, a resumed checkpoint)
run on the stand-in too, in a subprocess, and are not repeated here. The
stand-in also records every copy to the host: the sweeps
synchronise as often at 32 layers as at 4, and training iterations copy
nothing but scalars.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from standin_cupy import TRANSFERS, StandInArray, install

import ocdl
from ocdl._threads import _THREADED_ELEMENTS


@pytest.fixture
def standin(monkeypatch):
    """The stand-in as ``ocdl.backend``'s CuPy for one test (:func:`standin_cupy.install`)."""
    return install(monkeypatch)


def _on(module, *arrays):
    return tuple(a.view(StandInArray) for a in arrays) if module is not None else arrays


# Batches large enough that NumPy shares the work among threads in blocks
# (at least _THREADED_ELEMENTS entries): the stand-in runs one block.
CASES = [
    ("resnet", lambda: ocdl.ResNet(ocdl.Layer(ocdl.Dense(64), "tanh")), 64),
    ("antisymmetric", lambda: ocdl.ResNet(ocdl.Layer(ocdl.Antisymmetric(ocdl.Dense(64)), "tanh")), 64),
    ("leapfrog", lambda: ocdl.Leapfrog(ocdl.Layer(ocdl.Dense(64), "tanh")), 64),
    ("verlet", lambda: ocdl.Verlet(ocdl.Layer(ocdl.Dense(64, 48), "tanh")), 64),
    ("rk4", lambda: ocdl.RK4(ocdl.Layer(ocdl.Dense(64), "smoothrelu")), 64),
    ("conv-resnet", lambda: ocdl.ResNet(ocdl.Layer(ocdl.Conv2d(2, 2, 16, 12), "tanh")), 384),
    ("conv-verlet", lambda: ocdl.Verlet(ocdl.Layer(ocdl.Conv2d(2, 3, 8, 8, 5), "tanh")), 128),
]


@pytest.mark.parametrize("name,make,width", CASES, ids=[c[0] for c in CASES])
def test_standin_arrays_agree_with_numpy(standin, name, make, width):
    stepper = make()
    net = ocdl.Network(stepper, 3, 1.0)
    rng = np.random.default_rng(0)
    s = -(-_THREADED_ELEMENTS // width) + 7  # the NumPy path threads its row blocks
    theta = net.init_params(rng)
    Y0 = rng.standard_normal((s, stepper.n_features))
    v = rng.standard_normal(theta.shape)
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        t, Y, d = (a.astype(dtype) for a in (theta, Y0, v))
        YN = net.forward(t, Y)
        with net.trajectory(t, Y) as traj:
            JtY = net.vjp(t, Y, YN, trajectory=traj)
            Jv = net.jvp(t, Y, d, trajectory=traj)
        ts, Ys, ds = _on(standin, t, Y, d)
        assert ocdl.get_array_module(Ys) is standin
        YNs = net.forward(ts, Ys)
        with net.trajectory(ts, Ys) as traj:
            JtYs = net.vjp(ts, Ys, YNs, trajectory=traj)
            Jvs = net.jvp(ts, Ys, ds, trajectory=traj)
        for ours, numpys in ((YNs, YN), (JtYs, JtY), (Jvs, Jv)):
            assert type(ours) is StandInArray and ours.dtype == dtype  # the switch held throughout
            np.testing.assert_allclose(np.asarray(ours), numpys, rtol=rtol, atol=rtol * np.abs(numpys).max())


@pytest.mark.parametrize(
    "kind,memory", [("verlet", None), ("resnet", "recompute"), ("verlet", "reversible"), ("leapfrog", "hdf5")]
)
def test_training_on_standin_arrays_follows_numpy(standin, tmp_path, kind, memory):
    """Two iterations of block coordinate descent (Newton-PCG in the classifier, Gauss-Newton-PCG with a
    line search in theta, time-smoothness and weight-decay regularizers, sub-sampled Hessians), on the
    stand-in module's plain path and on NumPy, under several memory policies: the same iterates.

    The plain path performs NumPy's operations one for one. The fused kernels (``ocdl.kernels``) round
    differently, and these inexact Newton iterations amplify a one-ulp change (a relative change of 1e-15
    in ``theta0`` moves the second objective by 1e-3 here): ``test_kernels.py`` compares the fused path's
    gradients and Gauss-Newton products, where rounding is not amplified."""
    from ocdl.solvers import BlockCoordinateDescent

    memories = {None: None, "recompute": ocdl.Recompute(2), "reversible": ocdl.Reversible(),
                "hdf5": ocdl.HDF5(tmp_path / "states.h5")}
    rng = np.random.default_rng(2)
    s = 120
    C = np.arange(s) % 3
    Y = rng.standard_normal((s, 4)) * 0.5 + C[:, None]
    results = []
    for module in (None, standin):
        net = ocdl.network(kind, 4, 4, 2.0)
        if memories[memory] is not None:
            net = ocdl.Network(net.stepper, net.n_steps, net.final_time, memory=memories[memory])
        Y0, theta0 = _on(module, Y, net.init_params(0, scale=0.5))
        labels = C.view(StandInArray) if module is not None else C
        lp = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y0, labels, alpha_theta=1e-3, alpha_W=1e-3)
        with ocdl.kernels.fused(False):
            results.append(BlockCoordinateDescent(max_iter=2, hessian_batch_size=60).minimize(
                lp, theta0, rng=0, progress=False,
            ))
    numpys, ours = results
    assert ours.nit == numpys.nit == 2
    np.testing.assert_allclose(ours.trace("objective"), numpys.trace("objective"), rtol=1e-10)
    for key, a, b in zip(("theta", "W", "mu"), ours.x, numpys.x):
        assert type(a) is StandInArray, key
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("problem", ["ellipses", "mnist"])
def test_experiment_on_the_standin_device(standin, tmp_path, problem):
    """``paper_settings(..., device="gpu")``: a short training run of the paper's experiments (the MNIST one
    convolutional, with channel smoothness) on the stand-in device: on the plain path equal to the CPU run;
    with the fused kernels its run folder written. (The fused kernels round differently, and with 16
    examples the truncated Newton-CG steps turn that into an objective 10% off after one iteration: the
    fused path is compared with NumPy at the learning problem's level, in ``test_kernels.py``.)"""
    from ocdl.experiments import paper_settings, train, write_run

    options = dict(max_layers=4, max_iter=1)
    if problem == "mnist":
        from test_experiments import fake_mnist

        data_dir = fake_mnist(tmp_path / "mnist")
        options.update(width=2, train_size=16, val_size=8, data_dir=str(data_dir))
    settings = paper_settings(problem, "antisymmetric" if problem == "mnist" else "verlet", **options)
    cpu = train(settings, progress=False)
    fused = train(settings.replace(device="gpu"), progress=False)
    with ocdl.kernels.fused(False):
        gpu = train(settings.replace(device="gpu"), progress=False)
    assert type(gpu.problem.Y0) is StandInArray
    for a, b in zip(gpu.result.x, cpu.result.x):
        assert type(a) is StandInArray
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-12)
    assert all(type(a) is StandInArray for a in fused.result.x)
    paths = write_run(fused, tmp_path / "run")
    assert all(p.exists() for p in paths.values())
    assert fused.summary()["device_name"] == "stand-in"
    assert cpu.summary()["device_name"] == ocdl.backend.device_name("cpu")


def test_the_standin_refuses_what_cupy_lacks(standin):
    """NumPy's functions that CuPy 14.2 lacks are refused, from the module and through NumPy's dispatch, as
    CuPy refuses them; those it has run (the list, ``tests/data/cupy_names.txt``, came from CuPy itself)."""
    import cupyx.scipy.fft

    x = np.linspace(1.0, 2.0, 6).view(StandInArray)
    assert type(standin.sum(x)) is StandInArray and type(np.linalg.norm(x)) is StandInArray
    assert type(cupyx.scipy.fft.dctn(x, type=2)) is StandInArray
    with pytest.raises(AttributeError, match="module 'cupy' has no attribute 'geomspace'"):
        standin.geomspace(1.0, 2.0, 3)
    with pytest.raises(AttributeError, match="module 'cupyx.scipy.fft' has no attribute 'set_workers'"):
        getattr(cupyx.scipy.fft, "set_workers")  # noqa: B009 (the attribute access is the test)
    with pytest.raises(TypeError, match="no implementation found for 'numpy.insert'.*CuPy has no cupy.insert"):
        np.insert(x, 0, 1.0)
    with pytest.raises(TypeError, match="CuPy has no cupy.linalg.vector_norm"):
        np.linalg.vector_norm(x)


def test_standin_empty_arrays_hold_what_an_earlier_array_left(standin):
    """``empty`` and ``empty_like`` give 0xFF bytes (NaN, -1), not NumPy's zeroed fresh pages: a result that reads
    an entry before writing it shows, as it would on a GPU."""
    assert np.isnan(np.asarray(standin.empty((1000, 100)))).all()
    ints = standin.empty_like(standin.zeros(7, dtype=np.int32))
    assert type(ints) is StandInArray and (np.asarray(ints) == -1).all()
    assert not np.asarray(standin.zeros((1000, 100))).any()


def test_device_name_says_which_cpu_or_gpu(standin):
    """``device_name``: the GPU's name from CUDA's device properties; the CPU's model from ``/proc/cpuinfo`` (read
    here line by line, where there is one) with the logical CPUs this process may use; a clear error otherwise."""
    from ocdl.backend import device_name

    assert device_name("gpu") == "stand-in"  # standin_cupy's getDeviceProperties: b"stand-in"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert device_name("cpu").endswith(f", {cpus} logical CPUs")
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            models = [line.partition(":")[2].strip() for line in info if line.startswith("model name")]
        if models:
            assert device_name("cpu") == f"{models[0]}, {cpus} logical CPUs"
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu', got 'tpu'"):
        device_name("tpu")


@pytest.mark.parametrize("call", ["to_device", "memory_bytes", "device_name"])
def test_gpu_without_a_device_says_what_to_install(monkeypatch, call):
    """Without CuPy (as in CI) or without a CUDA device, asking for the GPU raises one error that says what to
    install and what to use instead, from each function that takes ``device``."""
    import ocdl.backend as backend

    no_device = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 0)))
    for cupy in (None, no_device):
        monkeypatch.setattr(backend, "_cupy", cupy)
        args = (np.zeros(3), "gpu") if call == "to_device" else ("gpu",)
        with pytest.raises(RuntimeError, match=re.escape("needs CuPy and a CUDA device; install ocdl[gpu] or use "
                                                         "device='cpu'")):
            getattr(backend, call)(*args)


def test_the_gpu_tests_pass_on_the_standin():
    """The suite's GPU tests (marked ``gpu``, skipped without CuPy), run on the stand-in device."""
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", tests],
        env=dict(os.environ, OCDL_STANDIN_CUPY="1"), capture_output=True, text=True, timeout=300,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20 and "skipped" not in summary, summary


@pytest.mark.parametrize("kind", ["resnet", "verlet", "rk4"])
def test_sweeps_synchronise_the_same_few_times_at_any_depth(standin, kind):
    """A forward sweep, a gradient (trajectory and adjoint) and a Gauss-Newton product copy only scalars
    to the host (input checks, the blow-up test), and as many at 32 layers as at 4: no step synchronises."""
    rng = np.random.default_rng(6)
    counts = {}
    for n_steps in (4, 32):
        net = ocdl.network(kind, 5, n_steps, 1.0)
        theta, Y0, v = _on(standin, net.init_params(rng), rng.standard_normal((40, 5)),
                           rng.standard_normal(net.n_params))
        TRANSFERS.clear()
        YN = net.forward(theta, Y0)
        with net.trajectory(theta, Y0) as traj:
            net.vjp(theta, Y0, net.jvp(theta, Y0, v, trajectory=traj), trajectory=traj)
            net.vjp(theta, Y0, YN, trajectory=traj)
        assert TRANSFERS and set(TRANSFERS) == {1}, TRANSFERS  # scalars only
        counts[n_steps] = len(TRANSFERS)
    assert counts[4] == counts[32], counts


def test_training_iterations_copy_only_scalars_to_the_host(standin):
    """Block coordinate descent on the stand-in device (sub-sampled Gauss-Newton-PCG, Newton-PCG, line
    searches, validation accuracy): from its first iteration on, nothing but scalars goes to the host."""
    from ocdl.solvers import BlockCoordinateDescent

    rng = np.random.default_rng(7)
    C = np.arange(150) % 3
    Y = rng.standard_normal((150, 4)) * 0.5 + C[:, None]
    net = ocdl.network("verlet", 4, 8, 2.0)
    Y0, theta0, Yv = _on(standin, Y, net.init_params(0, scale=0.5), Y[:40])
    lp = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y0, C.view(StandInArray), alpha_theta=1e-3,
                              alpha_W=1e-3)
    marks = []
    BlockCoordinateDescent(max_iter=3, batch_size=75, hessian_batch_size=30).minimize(
        lp, theta0, rng=0, progress=False, validation=(Yv, C[:40].view(StandInArray)),
        callback=lambda k, state: marks.append(len(TRANSFERS)))
    during = TRANSFERS[marks[0]:]
    assert len(marks) == 3 and during and set(during) == {1}, sorted(set(during))


def test_auto_memory_looks_at_the_gpus_free_memory(standin):
    """``memory="auto"`` on the GPU: store-all when the stored sweep fits in half the device's free memory
    (``cupy.cuda.Device().mem_info``, with the unused blocks of CuPy's pool), whatever its total or the host's;
    on the CPU the GPU's memory plays no part."""
    from ocdl.backend import memory_bytes
    from ocdl.experiments import paper_settings
    from ocdl.experiments.model import memory_policy

    gpu = paper_settings("mnist", "resnet", device="gpu")
    stored = 17 * 100 * 2 * (6 * 784) * 8  # 17 states and sigma' of 100 examples, float64
    standin.device_mem_info = (2 * stored, 1 << 40)
    assert memory_bytes("gpu") == 2 * stored
    assert isinstance(memory_policy(gpu, 100), ocdl.memory.StoreAll)
    standin.device_mem_info = (2 * stored - 2, 1 << 40)  # the same device with 2 bytes less free
    assert isinstance(memory_policy(gpu, 100), ocdl.memory.Recompute)
    assert isinstance(memory_policy(gpu.replace(stepper="verlet", width=6), 50), ocdl.memory.Reversible)
    standin.pool_free_bytes = 2  # held by CuPy's pool, free for new arrays
    assert memory_bytes("gpu") == 2 * stored
    assert isinstance(memory_policy(gpu, 100), ocdl.memory.StoreAll)
    standin.device_mem_info = (0, 1 << 40)
    assert isinstance(memory_policy(gpu.replace(device="cpu"), 100), ocdl.memory.StoreAll)  # the host's memory
