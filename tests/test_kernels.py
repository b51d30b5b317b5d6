"""The fused CUDA kernels (:mod:`ocdl.kernels`), run on the CPU through the stand-in's CUDA emulator.

The kernels' CUDA source is compiled by g++ under ``tests/cuda_emulator.py``
(blocks one after another, a block's threads as fibers taking turns at its barriers)
and by nvcc for the H200 (sm_90), so that what runs on the GPU is the source
tested here. Every layer method on stand-in arrays takes the fused path and
is compared with the plain path (the switch off) and with NumPy, for every
kind of explicit form (small and large matrices, antisymmetric and negative
definite ones, stencils, transposed products), every activation with CUDA
source, with and without the optional arrays; the public derivative checks
(Taylor rates, dot tests) pass on the fused path.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import ocdl
from ocdl.kernels import compile as kernel_compile
from ocdl.kernels import fused, fused_enabled

TRANSFORMS = {
    "dense-small": lambda: ocdl.Dense(5, 3),
    "dense-square": lambda: ocdl.Dense(8),
    "dense-large": lambda: ocdl.Dense(40, 36),
    "antisymmetric-dense": lambda: ocdl.Antisymmetric(ocdl.Dense(6), gamma=0.1),
    "negdef-dense": lambda: ocdl.NegativeDefinite(ocdl.Dense(4, 6), gamma=0.2),
    "negdef-large": lambda: ocdl.NegativeDefinite(ocdl.Dense(36, 34), gamma=0.2),
    "conv": lambda: ocdl.Conv2d(2, 3, 5, 4),
    "conv-5x5": lambda: ocdl.Conv2d(3, 2, 4, 6, kernel_size=5),
    "antisymmetric-conv": lambda: ocdl.Antisymmetric(ocdl.Conv2d(3, 3, 5, 4), gamma=0.3),
}
ACTIVATIONS = ["tanh", "relu", ocdl.SmoothReLU(0.3), "identity"]


def _dev(xp, *arrays):
    return tuple(None if a is None else xp.asarray(np.ascontiguousarray(a)) for a in arrays)


def _host(*arrays):
    return tuple(None if a is None else ocdl.asnumpy(a).view(np.ndarray) for a in arrays)


def _layer_calls(layer, rng, transpose, dtype, s=7):
    """Arguments of step, step_jvp and step_vjp at random points."""
    t = layer.transform
    n_from, n_to = (t.n_out, t.n_in) if transpose else (t.n_in, t.n_out)
    theta = np.concatenate([t.init_params(rng), [0.3]]).astype(dtype)
    V, X = rng.standard_normal((s, n_from)).astype(dtype), rng.standard_normal((s, n_to)).astype(dtype)
    dV, dX = rng.standard_normal((s, n_from)).astype(dtype), rng.standard_normal((s, n_to)).astype(dtype)
    dtheta = rng.standard_normal(theta.shape).astype(dtype)
    lam, lam_V = rng.standard_normal((s, n_to)).astype(dtype), rng.standard_normal((s, n_from)).astype(dtype)
    return theta, V, X, dV, dX, dtheta, lam, lam_V


def _run(layer, args, transpose, with_optional):
    theta, V, X, dV, dX, dtheta, lam, lam_V = args
    if not with_optional:
        X = dX = lam_V = None
    out, D = layer.step(theta, V, X, 0.7, transpose=transpose)
    out_nd = layer.step(theta, V, X, 0.7, transpose=transpose, derivative=False)
    jvp = layer.step_jvp(theta, V, D, dV, dtheta, dX, transpose=transpose)
    vjp, g = layer.step_vjp(theta, V, D, lam, lam_V, transpose=transpose)
    assert out_nd[1] is None
    return out, D, out_nd[0], jvp, vjp, g


# every transform with tanh; every activation in each kernel file (dense.cu, elementwise.cu, conv.cu)
LAYERS = [(name, "tanh") for name in TRANSFORMS] + [
    (name, activation) for name in ("dense-small", "dense-large", "conv") for activation in ACTIVATIONS[1:]
]


@pytest.mark.parametrize("name,activation", LAYERS,
                         ids=[f"{n}-{a if isinstance(a, str) else a.name}" for n, a in LAYERS])
def test_fused_layer_agrees_with_plain_path_and_numpy(device, launches, name, activation):
    layer = ocdl.Layer(TRANSFORMS[name](), activation)
    rng = np.random.default_rng(0)
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        for transpose in (False, True):
            args = _layer_calls(layer, rng, transpose, dtype)
            for with_optional in (True, False):
                expected = _run(layer, args, transpose, with_optional)  # NumPy
                del launches[:]
                ours = _run(layer, _dev(device, *args), transpose, with_optional)
                assert launches, "the fused kernels did not run"
                with fused(False):
                    plain = _run(layer, _dev(device, *args), transpose, with_optional)
                for a, b, c in zip(ours, plain, expected):
                    assert ocdl.get_array_module(a) is device and a.dtype == dtype
                    scale = rtol * max(1.0, float(np.abs(c).max()))
                    np.testing.assert_allclose(*_host(a, b), rtol=rtol, atol=scale)
                    np.testing.assert_allclose(_host(a)[0], c, rtol=rtol, atol=scale)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_fused_layer_passes_the_derivative_checks(device, launches, name):
    """Taylor rates >= 1.9 and dot tests <= 1e-10 (float64) of the fused kernels, through ocdl.check_layer."""
    layer = ocdl.Layer(TRANSFORMS[name](), "tanh")
    (V,) = _dev(device, np.random.default_rng(1).standard_normal((4, layer.transform.n_in)))
    report = ocdl.check_layer(layer, V, rng=1)
    assert report.passed, str(report)
    assert {"conv_step", "dense_step", "step_epilogue"} & set(launches)
    assert {"conv_gradient", "dense_gradient"} & set(launches) or name.endswith("large")


@pytest.mark.parametrize("kind", sorted(ocdl.KINDS))
def test_fused_steppers_pass_check_stepper(device, launches, kind):
    stepper = ocdl.KINDS[kind].build(ocdl.Dense(4, 3 if ocdl.KINDS[kind].rectangular else 4), "tanh")
    rng = np.random.default_rng(2)
    (Y0,) = _dev(device, rng.standard_normal((5, stepper.n_features)))
    report = ocdl.check_stepper(stepper, Y0, rng=rng)
    assert report.passed, str(report)
    assert "dense_step" in launches


def test_a_small_matrix_step_is_one_kernel_and_its_adjoint_two(device, launches):
    """A layer step on a small matrix is one kernel, its tangent one, and its transpose two plus the sum of
    the partial gradients, on the per-step path (a leapfrog network that declines to sweep in one piece:
    ``test_sweeps.py``)."""

    class Stepping(ocdl.Leapfrog):
        def sweep(self, theta_steps, h, state0, store=True):
            return None

    net = ocdl.Network(Stepping(ocdl.Layer(ocdl.Dense(8), "tanh")), 16, 1.0)
    rng = np.random.default_rng(3)
    theta, Y0 = _dev(device, net.init_params(rng), rng.standard_normal((40, 8)))
    net.forward(theta, Y0)
    assert launches == ["dense_step"] * 16
    del launches[:]
    net.vjp(theta, Y0, Y0)
    assert launches.count("dense_step") == 16
    assert launches.count("dense_cotangent") == launches.count("dense_gradient") == 16
    assert len(launches) == 48


def test_plain_path_for_what_the_kernels_do_not_cover(device, launches):
    """A user's activation without CUDA source, more than 16 channels, NumPy arrays: no kernel runs."""

    class Cube(ocdl.Activation):
        def value_and_derivative(self, x):
            return x**3, 3 * x**2

    rng = np.random.default_rng(4)
    for layer, on_device in [
        (ocdl.Layer(ocdl.Dense(4), Cube()), True),
        (ocdl.Layer(ocdl.Conv2d(17, 2, 3, 3), "tanh"), True),
        (ocdl.Layer(ocdl.Dense(4), "tanh"), False),
    ]:
        theta = np.concatenate([layer.transform.init_params(rng), [0.1]])
        V = rng.standard_normal((3, layer.transform.n_in))
        if on_device:
            theta, V = _dev(device, theta, V)
        out, _ = layer.step(theta, V, None, 0.5)
        assert type(out) is type(V)
    assert launches == []


def test_the_switch():
    assert fused_enabled()
    with fused(False):
        assert not fused_enabled()
        with fused(True):
            assert fused_enabled()
        assert not fused_enabled()
    assert fused_enabled()
    with pytest.raises(TypeError, match="enabled must be True or False"):
        fused("no")
    code = "import ocdl; print(ocdl.kernels.fused_enabled())"
    env = dict(os.environ, OCDL_FUSED_KERNELS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# Every configuration the tests above compile, and the MNIST network's, for the H200 (sm_90).
NVCC_CASES = [
    ("elementwise.cu", {}),
    ("dense.cu", {"N_IN": 8, "N_OUT": 8, "TRANSPOSE": 0}),
    ("dense.cu", {"N_IN": 32, "N_OUT": 5, "TRANSPOSE": 1}),
    ("conv.cu", {"KS": 3, "C_FROM": 6, "C_TO": 6, "FLIP": 0}),
    ("conv.cu", {"KS": 3, "C_FROM": 16, "C_TO": 16, "FLIP": 1}),
    ("conv.cu", {"KS": 5, "C_FROM": 3, "C_TO": 2, "FLIP": 0}),
]


@pytest.mark.parametrize("name,sizes", NVCC_CASES, ids=[f"{n}-{'-'.join(map(str, s.values()))}" for n, s in NVCC_CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("compiler", ["nvcc", "nvrtc"])
def test_kernels_compile_for_the_h200_without_spilling(name, sizes, dtype, compiler):
    """nvcc, and NVRTC with CuPy's options (what a GPU's first run compiles), where installed."""
    import cuda_emulator

    code = kernel_compile.source(name, dtype, ocdl.Tanh.cuda, **sizes)
    report = getattr(cuda_emulator, f"{compiler}_compile")(code)
    if report is None:
        pytest.skip(f"needs {compiler}")
    assert "warning" not in report
    assert "registers" in report
    spilled = cuda_emulator.spilled_bytes(report)
    assert spilled and not any(spilled), report


@pytest.mark.parametrize("name", ["dense-small", "dense-large", "conv", "antisymmetric-conv"])
def test_kernels_stride_over_more_rows_than_their_blocks(device, launches, monkeypatch, name):
    """With the grid capped at 2 blocks and 3 partial sums, every thread strides over many rows (and
    pixels), and the partial gradients of several chunks per block add up: still the plain path's
    results."""
    from ocdl.kernels import compile as kc

    monkeypatch.setattr(kc, "MAX_BLOCKS", 2)
    monkeypatch.setattr(kc, "MAX_PARTIAL_BLOCKS", 3)
    layer = ocdl.Layer(TRANSFORMS[name](), "tanh")
    rng = np.random.default_rng(5)
    for transpose in (False, True):
        args = _layer_calls(layer, rng, transpose, np.float64, s=300)
        expected = _run(layer, args, transpose, True)
        ours = _run(layer, _dev(device, *args), transpose, True)
        for a, c in zip(ours, expected):
            np.testing.assert_allclose(_host(a)[0], c, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(c).max())))
    assert launches


@pytest.mark.parametrize("kind", ["verlet", "antisymmetric"])
def test_fused_learning_problem_gradient_and_gauss_newton_product(device, launches, kind):
    """The learning problem's value, gradient and sub-sampled Gauss-Newton product on the fused path,
    against NumPy (float64, 1e-12): the quantities the solvers are built on."""
    rng = np.random.default_rng(6)
    s = 60
    C = np.arange(s) % 3
    Y = rng.standard_normal((s, 4)) * 0.5 + C[:, None]
    net = ocdl.network(kind, 4, 4, 2.0)
    theta = net.init_params(0, scale=0.5)
    W, mu = rng.standard_normal((4, 3)), rng.standard_normal(3)
    v = rng.standard_normal(theta.shape)
    rows = np.arange(0, s, 2)
    results = []
    for xp in (np, device):
        put = (lambda *a: a) if xp is np else (lambda *a: _dev(device, *a))
        Y0, labels, t, W_, mu_, v_, rows_ = put(Y, C, theta, W, mu, v, rows)
        lp = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y0, labels, alpha_theta=1e-3, alpha_W=1e-3)
        value, (g, gW, gmu) = lp.value_and_gradient(t, W_, mu_)
        model = lp.theta_problem(W_, mu_, hessian_indices=rows_).model(t)
        results.append((np.array(value), g, gW, gmu, model.gradient, model.hessian_matvec(v_)))
    assert launches
    for ours, numpys in zip(results[1], results[0]):
        np.testing.assert_allclose(_host(ours)[0], numpys, rtol=1e-12, atol=1e-12 * float(np.abs(numpys).max()))
