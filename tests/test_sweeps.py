"""Whole sweeps in one kernel (:mod:`ocdl.kernels.sweeps`), run on the CPU through the stand-in's CUDA emulator.

A ResNet, leapfrog, Verlet or RK4 network with a small matrix (dense, antisymmetric, negative definite) on CuPy arrays
propagates, differentiates and transposes its whole trajectory in one
kernel each. Compared here with the per-step fused path, the plain path
(the switch off) and NumPy; the public derivative checks pass on it; it
strides over more rows than its grid; everything it does not cover steps
as before. The fixtures ``device`` and ``launches`` are in ``conftest.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import ocdl
from ocdl.kernels import compile as kernel_compile
from ocdl.kernels import fused, sweeps
from ocdl.memory import StoredTrajectory, SweptTrajectory


def _host(a):
    return ocdl.asnumpy(a).view(np.ndarray)


STEPPERS = {"resnet": ocdl.ResNet, "leapfrog": ocdl.Leapfrog, "verlet": ocdl.Verlet, "rk4": ocdl.RK4}
# (stepper, K's shape): square and rectangular, from one row to the largest matrix a sweep takes
SHAPES = [("resnet", (1, 1)), ("resnet", (8, 8)), ("resnet", (32, 32)), ("leapfrog", (1, 1)), ("leapfrog", (8, 8)),
          ("leapfrog", (32, 32)), ("verlet", (1, 1)), ("verlet", (4, 3)), ("verlet", (3, 7)), ("verlet", (32, 32)),
          ("rk4", (1, 1)), ("rk4", (8, 8)), ("rk4", (32, 32))]
# matrices formed from the parameters for all steps at once (explicit_stacks): their gradients pulled back
FORMED = {
    "antisymmetric": lambda: ocdl.Antisymmetric(ocdl.Dense(6), gamma=0.1),
    "negdef": lambda: ocdl.NegativeDefinite(ocdl.Dense(4, 6), gamma=0.2),
}


def _problem(n, s, n_steps, dtype, activation="tanh", seed=0, stepper="resnet", m=None, transform=None):
    rng = np.random.default_rng(seed)
    layer = ocdl.Layer(ocdl.Dense(n, n if m is None else m) if transform is None else transform, activation)
    n = layer.transform.n_in
    net = ocdl.Network(STEPPERS[stepper](layer), n_steps, 1.5)
    theta = (net.init_params(rng, scale=0.8) + 0.2 * rng.standard_normal(net.n_params)).astype(dtype)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in ((s, n), (s, n), net.n_params, (s, n))]
    return net, (theta, *arrays)  # theta, Y0, lam, dtheta, dY0


def _stepping(net):
    """``net`` with a stepper that declines to sweep: the per-step fused kernels on the GPU."""

    class Stepping(type(net.stepper)):
        def sweep(self, theta_steps, h, state0, store=True):
            return None

    return ocdl.Network(Stepping(net.stepper.layer), net.n_steps, net.final_time)


def _everything(net, theta, Y0, lam, dtheta, dY0):
    """Forward, the stored trajectory's states and caches in both orders, the gradient in theta and Y0, the
    sensitivity: what a solver reads off a network."""
    with net.trajectory(theta, Y0) as traj:
        records = [(j, state, cache) for j, state, cache in traj.steps()]
        backward = [(j, state, cache) for j, state, cache in traj.reversed_steps()]
        assert [r[0] for r in records] == [r[0] for r in backward][::-1] == list(range(net.n_steps))
        grad, dY = net.vjp(theta, Y0, lam, trajectory=traj, return_dY0=True)
        tangent = net.jvp(theta, Y0, dtheta, dY0, trajectory=traj)
        final, kind = traj.final_state, type(traj)
    out = [net.forward(theta, Y0), *final, grad, dY, tangent]
    for _, state, cache in records + backward:  # every state and cache (tuples for Verlet)
        out += [*state, *(cache if isinstance(cache, tuple) else (cache,))]
    return kind, [_host(a) for a in out]


ACTIVATIONS = ["tanh", "relu", ocdl.SmoothReLU(0.3), "identity"]
# every shape with tanh, every activation on one shape of each stepper (each case compiles its own modules:
# on a GPU's first run NVRTC takes a fraction of a second for each)
CASES = [(stepper, shape, "tanh") for stepper, shape in SHAPES] + [
    (stepper, shape, activation)
    for stepper, shape in (("resnet", (8, 8)), ("leapfrog", (8, 8)), ("verlet", (4, 3)), ("rk4", (8, 8)))
    for activation in ACTIVATIONS[1:]]


def _case_id(stepper, shape, activation):
    return f"{stepper}-{shape[0]}x{shape[1]}-{activation if isinstance(activation, str) else activation.name}"


@pytest.mark.parametrize("stepper,shape,activation", CASES, ids=[_case_id(*case) for case in CASES])
def test_sweep_agrees_with_the_per_step_paths_and_numpy(device, launches, stepper, shape, activation):
    """Every quantity through the sweep against the per-step fused kernels (the same equations, one launch a
    layer step), the plain path (CuPy's array functions) and NumPy: float64 to 1e-12, float32 to 1e-5 (70 rows:
    a partial block)."""
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        net, args = _problem(shape[0], 70, 5, dtype, activation, stepper=stepper, m=shape[1])
        kind, expected = _everything(net, *args)
        assert kind is StoredTrajectory
        on_device = [device.asarray(a) for a in args]
        kind, swept = _everything(net, *on_device)
        assert kind is SweptTrajectory
        kind, per_step = _everything(_stepping(net), *on_device)
        assert kind is StoredTrajectory
        with fused(False):
            kind, plain = _everything(net, *on_device)
        assert kind is StoredTrajectory
        for ours, *theirs, numpys in zip(swept, per_step, plain, expected):
            assert ours.dtype == numpys.dtype == dtype
            scale = max(1.0, float(np.abs(numpys).max()))
            for reference in (*theirs, numpys):
                np.testing.assert_allclose(ours, reference, rtol=rtol, atol=rtol * scale)
    assert launches.count(f"{stepper}_forward") and launches.count(f"{stepper}_adjoint") == 2
    assert "dense_step" in launches and "dense_gradient" in launches  # the per-step fused kernels ran too


@pytest.mark.parametrize("stepper", STEPPERS)
@pytest.mark.parametrize("name", FORMED)
def test_sweep_of_formed_matrices_agrees_with_the_per_step_paths_and_numpy(device, launches, stepper, name):
    """Antisymmetric and negative definite matrices, formed for all steps at once (and their gradients pulled
    back at once): the same comparisons, float64 to 1e-12 and float32 to 1e-5."""
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        net, args = _problem(0, 70, 5, dtype, stepper=stepper, transform=FORMED[name]())
        kind, expected = _everything(net, *args)
        on_device = [device.asarray(a) for a in args]
        kind, swept = _everything(net, *on_device)
        assert kind is SweptTrajectory
        _, per_step = _everything(_stepping(net), *on_device)
        with fused(False):
            _, plain = _everything(net, *on_device)
        for ours, *theirs, numpys in zip(swept, per_step, plain, expected):
            scale = max(1.0, float(np.abs(numpys).max()))
            for reference in (*theirs, numpys):
                np.testing.assert_allclose(ours, reference, rtol=rtol, atol=rtol * scale)
    assert launches.count(f"{stepper}_adjoint") == 2 and "dense_step" in launches


@pytest.mark.parametrize("stepper", STEPPERS)
def test_w1_sweeps_are_one_kernel_each(device, launches, stepper):
    """The launch count that made W1 slow on the GPU: 16 steps forward are one kernel (not 16 or 32), the
    gradient two (forward and adjoint, not 64 or 128), a Gauss-Newton product over the stored states two."""
    net, (theta, Y0, lam, dtheta, _) = _problem(8, 40, 16, np.float64, stepper=stepper)
    theta, Y0, lam, dtheta = (device.asarray(a) for a in (theta, Y0, lam, dtheta))
    net.forward(theta, Y0)
    assert launches == [f"{stepper}_forward"]
    del launches[:]
    net.vjp(theta, Y0, lam)
    assert launches == [f"{stepper}_forward", f"{stepper}_adjoint"]
    del launches[:]
    with net.trajectory(theta, Y0) as traj:
        net.vjp(theta, Y0, net.jvp(theta, Y0, dtheta, trajectory=traj), trajectory=traj)
    assert launches == [f"{stepper}_{name}" for name in ("forward", "tangent", "adjoint")]


@pytest.mark.parametrize("stepper", STEPPERS)
def test_sweep_passes_the_derivative_checks(device, launches, stepper):
    """Taylor rates >= 1.9 and dot tests <= 1e-10 (float64) through the whole propagation (check_stepper's
    network rows), and the dot test of a longer sweep over a partial block of rows."""
    rng = np.random.default_rng(2)
    Y0 = device.asarray(rng.standard_normal((9, 6)))
    report = ocdl.check_stepper(STEPPERS[stepper](ocdl.Layer(ocdl.Dense(6), "tanh")), Y0, rng=rng, n_steps=4)
    assert report.passed, str(report)
    assert "network: sweep = stepping" in report.results
    assert f"{stepper}_adjoint" in launches and f"{stepper}_tangent" in launches
    net, (theta, Y0, lam, dtheta, dY0) = _problem(6, 70, 6, np.float64, stepper=stepper)
    theta, Y0 = device.asarray(theta), device.asarray(Y0)
    with net.trajectory(theta, Y0) as traj:
        result = ocdl.dot_test(
            lambda v: _host(net.jvp(theta, Y0, device.asarray(v[0]), device.asarray(v[1]), trajectory=traj)),
            lambda w: tuple(map(_host, net.vjp(theta, Y0, device.asarray(w), trajectory=traj, return_dY0=True))),
            (dtheta, dY0), lam)
    assert result.passed, result


def test_check_stepper_finds_a_sweep_that_is_not_the_steps(device, launches):
    """A user's sweep of other equations (here the step size off by 1%) is consistent with its own derivatives:
    only check_stepper's row comparing it with stepping fails. On NumPy there is no sweep and no such row."""

    class Drifting(ocdl.ResNet):
        def sweep(self, theta_steps, h, state0, store=True):
            return sweeps.resnet(self.layer, theta_steps, 1.01 * h, state0[0], store)

    rng = np.random.default_rng(7)
    Y0 = rng.standard_normal((9, 5))
    report = ocdl.check_stepper(Drifting(ocdl.Layer(ocdl.Dense(5), "tanh")), device.asarray(Y0), rng=1)
    assert [name for name, r in report.results.items() if not r.passed] == ["network: sweep = stepping"], str(report)
    report = ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(ocdl.Dense(5), "tanh")), Y0, rng=1)
    assert report.passed and "network: sweep = stepping" not in report.results


@pytest.mark.parametrize("stepper", STEPPERS)
def test_the_adjoint_strides_over_more_row_groups_than_its_blocks(device, launches, monkeypatch, stepper):
    """With the partial sums capped to one block and the grid to two, one block takes every group of rows
    (the last one partial) and adds their sums, and the other kernels stride over the rows: still NumPy's
    results."""
    monkeypatch.setattr(sweeps, "MAX_BLOCKS", 2)
    monkeypatch.setattr(sweeps, "MAX_PARTIAL_BLOCKS", 1)
    net, args = _problem(4, 3 * sweeps.ROWS + 5, 3, np.float64, stepper=stepper, m=3 if stepper == "verlet" else 4)
    _, expected = _everything(net, *args)
    _, ours = _everything(net, *(device.asarray(a) for a in args))
    for a, c in zip(ours, expected):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(c).max())))
    assert launches.count(f"{stepper}_adjoint") == 1


def test_what_the_sweep_does_not_cover_steps(device, launches):
    """Other transforms (antisymmetric, wider than 32), other steppers, subclasses that change a step,
    NumPy arrays and the switch off: no sweep, the generic solvers step."""
    rng = np.random.default_rng(4)

    class Damped(ocdl.ResNet):
        def step(self, state, theta, h):
            (Y_next,), D = super().step(state, theta, h)
            return (0.5 * Y_next,), D

    class Observed(ocdl.ResNet):  # changes no equation: keeps the sweep
        pass

    class Started(ocdl.Verlet):  # another Z_0
        def init(self, Y0):
            return (Y0, Y0[:, :1] + 1.0)

    dense = ocdl.Layer(ocdl.Dense(4), "tanh")
    cases = [
        (ocdl.ResNet(ocdl.Layer(ocdl.Antisymmetric(ocdl.Conv2d(1, 1, 2, 2)), "tanh")), True, False),
        (ocdl.ResNet(ocdl.Layer(ocdl.Dense(33), "tanh")), True, False),
        (ocdl.Verlet(ocdl.Layer(ocdl.Dense(4, 33), "tanh")), True, False),
        (ocdl.Leapfrog(ocdl.Layer(ocdl.Dense(33), "tanh")), True, False),
        (ocdl.RK4(ocdl.Layer(ocdl.Dense(33), "tanh")), True, False),
        (Damped(dense), True, False),
        (Started(ocdl.Layer(ocdl.Dense(4, 1), "tanh")), True, False),
        (ocdl.ResNet(dense), False, False),
        (ocdl.Verlet(dense), False, False),
        (ocdl.RK4(dense), False, False),
        (Observed(dense), True, True),
    ]
    for stepper, on_device, swept in cases:
        net = ocdl.Network(stepper, 3, 1.0)
        theta, Y0 = net.init_params(rng), rng.standard_normal((5, stepper.n_features))
        if on_device:
            theta, Y0 = device.asarray(theta), device.asarray(Y0)
        with net.trajectory(theta, Y0) as traj:
            assert (type(traj) is SweptTrajectory) is swept, stepper
        assert (stepper.sweep(net.theta_steps(theta), net.h, stepper.init(Y0)) is not None) is swept
    with fused(False):
        stepper = ocdl.ResNet(ocdl.Layer(ocdl.Dense(4), "tanh"))
        assert stepper.sweep(device.asarray(np.zeros((2, 17))), 0.5, (device.asarray(np.zeros((3, 4))),)) is None
    assert [name for name in launches if name.startswith(tuple(f"{k}_" for k in STEPPERS))] == ["resnet_forward"] * 2
    assert "dense_step" in launches  # the others took the per-step kernels


def test_other_memory_policies_step_and_agree(device, launches, tmp_path):
    """Recomputation and HDF5 keep their own states (no sweep to store): the same gradient as the sweep's."""
    net, (theta, Y0, lam, _, _) = _problem(5, 20, 6, np.float64)
    theta, Y0, lam = (device.asarray(a) for a in (theta, Y0, lam))
    reference = _host(net.vjp(theta, Y0, lam))
    assert launches == ["resnet_forward", "resnet_adjoint"]
    for memory in (ocdl.Recompute(2), ocdl.HDF5(tmp_path / "states.h5")):
        grad = _host(net.with_steps(6, memory).vjp(theta, Y0, lam))
        np.testing.assert_allclose(grad, reference, rtol=1e-12, atol=1e-12 * float(np.abs(reference).max()))


NVCC_TRANSFORMS = {"8x8": lambda: ocdl.Dense(8), "4x3": lambda: ocdl.Dense(4, 3), "32x32": lambda: ocdl.Dense(32),
                   "antisymmetric-8x8": lambda: ocdl.Antisymmetric(ocdl.Dense(8))}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NVCC_TRANSFORMS)
@pytest.mark.parametrize("compiler", ["nvcc", "nvrtc"])
def test_sweep_compiles_for_the_h200_without_spilling(dtype, name, compiler):
    """Each stepper's module with the sizes that run (its static shared memory within CUDA's 48 KiB, as the
    emulator checks too), by nvcc and by NVRTC with CuPy's options, where installed: its three kernels and
    no other, no warning, no register spilled."""
    import cuda_emulator

    transform = NVCC_TRANSFORMS[name]()
    for cls in (sweeps.ResNetSweep, sweeps.LeapfrogSweep, sweeps.VerletSweep, sweeps.RK4Sweep):
        if cls.square and transform.n_in != transform.n_out:
            continue
        code = kernel_compile.source("sweep.cu", dtype, ocdl.Tanh.cuda, **cls.sizes(transform, dtype))
        report = getattr(cuda_emulator, f"{compiler}_compile")(code)
        if report is None:
            pytest.skip(f"needs {compiler}")
        assert "warning" not in report, report
        kernels = re.findall(r"Compiling entry function '(\w+)'", report)
        assert sorted(kernels) == [f"{cls.kind}_{name}" for name in ("adjoint", "forward", "tangent")], report
        spilled = cuda_emulator.spilled_bytes(report)
        assert spilled and not any(spilled), report


# Modules beyond the benchmarked ones (tanh; 8 x 8, 4 x 3, 32 x 32) that spilled registers with NVRTC for sm_90
# while the compiler unrolled the outer loops of times_K and times_KT (sweep.cu's PRODUCT_LOOP): lopsided Verlet
# matrices, the other activations, the sizes between 8 and 24 (the bytes of spill stores a thread then).
SPILLED = {
    "verlet-32x7-tanh-float64": (sweeps.VerletSweep, (32, 7), "tanh", np.float64),  # forward 3,396, adjoint 1,416
    "verlet-7x32-relu-float32": (sweeps.VerletSweep, (7, 32), "relu", np.float32),  # forward 972
    "verlet-16x16-identity-float64": (sweeps.VerletSweep, (16, 16), "identity", np.float64),  # 3,412 and 1,400
    "rk4-12x12-smoothrelu-float64": (sweeps.RK4Sweep, (12, 12), "smoothrelu", np.float64),  # forward 824
}


@pytest.mark.parametrize("case", SPILLED)
@pytest.mark.parametrize("compiler", ["nvcc", "nvrtc"])
def test_sweep_of_other_shapes_and_activations_compiles_without_spilling(case, compiler):
    """Lopsided and middle-sized matrices and the other activations compile without a register spilled too."""
    import cuda_emulator

    cls, (n_in, n_out), activation, dtype = SPILLED[case]
    code = kernel_compile.source("sweep.cu", dtype, ocdl.activations.get_activation(activation).cuda,
                                 **cls.sizes(ocdl.Dense(n_in, n_out), dtype))
    report = getattr(cuda_emulator, f"{compiler}_compile")(code)
    if report is None:
        pytest.skip(f"needs {compiler}")
    assert "warning" not in report, report
    spilled = cuda_emulator.spilled_bytes(report)
    assert len(spilled) == 6 and not any(spilled), report
