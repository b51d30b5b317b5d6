"""Regularizers: derivatives, symmetry, and DCT preconditioners against dense solves."""

from __future__ import annotations

import numpy as np
import pytest

import ocdl
from ocdl.backend import cupy_available
from ocdl.regularizers import ChannelSmoothness, SpatialSmoothness, TimeSmoothness, WeightDecay


def diff_matrix(n):
    """Forward differences, (n - 1) x n."""
    return np.diff(np.eye(n), axis=0)


def along_axis(A, axis, shape):
    """Dense matrix applying A along `axis` of a row-major array of `shape`."""
    factors = [A if a == axis else np.eye(k) for a, k in enumerate(shape)]
    out = factors[0]
    for f in factors[1:]:
        out = np.kron(out, f)
    return out


def dense_time_hessian(N, p, h):
    D = diff_matrix(N)
    return np.kron(D.T @ D, np.eye(p)) / h


def dense_spatial_L(grid, operator):
    if operator == "gradient":
        return np.vstack([along_axis(diff_matrix(k), a, grid) for a, k in enumerate(grid)])
    return sum(along_axis(diff_matrix(k).T @ diff_matrix(k), a, grid) for a, k in enumerate(grid))


# (regularizer, example argument shape, dense Hessian acting on the columns)
CASES = {
    "weight_decay": (WeightDecay(), (6, 3), np.eye(6)),
    "time": (TimeSmoothness(5, 3, 0.3), (15,), dense_time_hessian(5, 3, 0.3)),
    "spatial_gradient_2d": (
        SpatialSmoothness((4, 5), "gradient"),
        (20, 3),
        dense_spatial_L((4, 5), "gradient").T @ dense_spatial_L((4, 5), "gradient"),
    ),
    "spatial_laplacian_3d": (
        SpatialSmoothness((2, 3, 4), "laplacian"),
        (24, 2),
        dense_spatial_L((2, 3, 4), "laplacian") @ dense_spatial_L((2, 3, 4), "laplacian"),
    ),
    "spatial_laplacian_channel1": (
        SpatialSmoothness((1, 4, 3)),
        (12,),
        dense_spatial_L((4, 3), "laplacian") @ dense_spatial_L((4, 3), "laplacian"),
    ),
    # one image per channel, channel-major: H is block diagonal with one image Hessian per channel
    "channel_gradient": (
        ChannelSmoothness(2, (3, 4), "gradient"),
        (24, 3),
        np.kron(np.eye(2), dense_spatial_L((3, 4), "gradient").T @ dense_spatial_L((3, 4), "gradient")),
    ),
    "channel_laplacian_vector": (
        ChannelSmoothness(3, (2, 3)),
        (18,),
        np.kron(np.eye(3), dense_spatial_L((2, 3), "laplacian") @ dense_spatial_L((2, 3), "laplacian")),
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    return CASES[request.param]


def test_check_regularizer(case):
    """Gradient, Hessian, symmetry and the shifted solve (ocdl.check_regularizer)."""
    reg, shape, _ = case
    report = ocdl.check_regularizer(reg, np.random.default_rng(0).standard_normal(shape))
    assert report.passed, str(report)
    assert " object at 0x" not in str(report) and f"check_regularizer({type(reg).__name__}(" in str(report)


def test_matches_dense(case):
    """Value and Hessian agree with the independently assembled dense matrix."""
    reg, shape, H = case
    x = np.random.default_rng(3).standard_normal(shape)
    X = x.reshape(H.shape[0], -1)
    assert reg.value(x) == pytest.approx(0.5 * np.sum(X * (H @ X)), rel=1e-12)
    np.testing.assert_allclose(reg.hessian_matvec(x), (H @ X).reshape(shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shift", [1e-3, 0.7, 50.0])
def test_precondition_inverts_shifted_hessian(case, shift):
    reg, shape, H = case
    r = np.random.default_rng(4).standard_normal(shape)
    R = r.reshape(H.shape[0], -1)
    z = reg.precondition(r, shift)
    expected = np.linalg.solve(H + shift * np.eye(H.shape[0]), R).reshape(shape)
    assert np.linalg.norm(z - expected) <= 1e-12 * np.linalg.norm(expected)
    residual = reg.hessian_matvec(z) + shift * z - r
    assert np.linalg.norm(residual) <= 1e-12 * np.linalg.norm(r)


def test_time_smoothness_by_hand():
    reg = TimeSmoothness(3, 2, step_size=0.5)
    theta = np.array([0.0, 1.0, 1.0, 1.0, 3.0, 1.0])  # rows (0, 1), (1, 1), (3, 1)
    assert reg.value(theta) == pytest.approx((1 + 4) / (2 * 0.5))


def test_channel_smoothness_is_spatial_smoothness_per_channel():
    rng = np.random.default_rng(6)
    reg = ChannelSmoothness(3, (5, 4))
    image = ocdl.SpatialSmoothness((5, 4))
    W = rng.standard_normal((3 * 20, 2))
    per_image = W.reshape(3, 20, 2)
    assert reg.value(W) == pytest.approx(sum(image.value(per_image[c]) for c in range(3)))
    HW = reg.hessian_matvec(W).reshape(3, 20, 2)
    for c in range(3):
        np.testing.assert_allclose(HW[c], image.hessian_matvec(per_image[c]))
    z = reg.precondition(W, 0.5)
    np.testing.assert_allclose(reg.hessian_matvec(z) + 0.5 * z, W, atol=1e-10)
    assert reg.value(W[:, 0]) == pytest.approx(image.value(per_image[:, :, 0].T))
    with pytest.raises(ValueError, match="n = channels \\* pixels = 60"):
        reg.value(np.ones((59, 2)))
    assert ocdl.ChannelSmoothness is ChannelSmoothness


def test_eigenvalues_of_spatial_operator():
    reg = SpatialSmoothness((3, 4), "gradient")
    H = dense_spatial_L((3, 4), "gradient").T @ dense_spatial_L((3, 4), "gradient")
    lam = [2 - 2 * np.cos(np.pi * k / n) for n in (3, 4) for k in range(n)]
    expected = np.sort(np.add.outer(lam[:3], lam[3:]).ravel())
    np.testing.assert_allclose(np.linalg.eigvalsh(H), expected, atol=1e-12)
    assert reg.precondition(np.ones(12), 2.0) == pytest.approx(np.full(12, 0.5))


def test_float32_keeps_dtype(case):
    reg, shape, _ = case
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    for out in (reg.gradient(x), reg.hessian_matvec(x), reg.precondition(x, 0.5)):
        assert out.dtype == np.float32 and out.shape == shape
    assert np.isfinite(reg.value(x))


def test_validation():
    with pytest.raises(ValueError, match=r"x must have n_steps \* n_params_per_step = 3 \* 2 = 6"):
        TimeSmoothness(3, 2, 1.0).value(np.ones(5))
    with pytest.raises(ValueError, match=r"step_size must be a finite number > 0"):
        TimeSmoothness(3, 2, 0.0)
    with pytest.raises(ValueError, match=r"W must have shape \(n, m\) or \(n,\) with n = .* = 12"):
        SpatialSmoothness((3, 4)).value(np.ones((11, 2)))
    with pytest.raises(ValueError, match=r"operator must be one of"):
        SpatialSmoothness((3, 4), "curl")
    with pytest.raises(ValueError, match=r"shift must be (a finite number > 0|positive)"):
        SpatialSmoothness((3, 4)).precondition(np.ones(12), 0.0)
    with pytest.raises(ValueError, match=r"shift must be > -1"):
        WeightDecay().precondition(np.ones(3), -1.0)
    # integers overflowed in x^T x (0.0 for [2^32, 2^32]), float16 reached inf at 256, a list failed inside
    with pytest.raises(TypeError, match="x must be a floating-point array .*, got dtype int64"):
        WeightDecay().value(np.array([2**32, 2**32]))
    with pytest.raises(TypeError, match="x must be a floating-point array .*, got dtype float16"):
        WeightDecay().value(np.array([300.0, 300.0], dtype=np.float16))
    with pytest.raises(TypeError, match="x must be a NumPy or CuPy array, got list"):
        WeightDecay().gradient([1.0, 2.0])
    with pytest.raises(TypeError, match="shift must be a number > -1, got None"):
        WeightDecay().precondition(np.ones(3), None)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((2.5, 3, 0.1), r"n_steps must be an integer >= 1, got 2.5"),
        (("4", 3, 0.1), r"n_steps must be an integer >= 1, got '4'"),
        ((4, 0, 0.1), r"n_params_per_step must be an integer >= 1, got 0"),
        ((4, True, 0.1), r"n_params_per_step must be an integer >= 1, got True"),
        ((4, 3, np.inf), r"step_size must be a finite number > 0, got inf"),
        ((4, 3, np.nan), r"step_size must be a finite number > 0, got nan"),
        ((4, 3, -0.1), r"step_size must be a finite number > 0, got -0.1"),
    ],
)
def test_time_smoothness_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        TimeSmoothness(*args)


def test_time_smoothness_accepts_numpy_integers():
    reg = TimeSmoothness(np.int64(4), np.int32(3), np.float32(0.5))
    assert (reg.n_steps, reg.n_params_per_step, reg.step_size) == (4, 3, 0.5)
    assert type(reg.n_steps) is int


@pytest.mark.parametrize(
    ("grid_shape", "error", "match"),
    [
        ((2.5, 2), ValueError, r"grid_shape must be a non-empty tuple of positive ints .*got \(2.5, 2\)"),
        ((0, 3), ValueError, r"grid_shape must be a non-empty tuple of positive ints"),
        ((), ValueError, r"grid_shape must be a non-empty tuple of positive ints"),
        (("4", 2), ValueError, r"grid_shape must be a non-empty tuple of positive ints"),
        (4, TypeError, r"grid_shape must be a non-empty tuple of positive ints, e.g. \(28, 28\), got 4"),
        ("44", TypeError, r"grid_shape must be a non-empty tuple"),
    ],
)
def test_spatial_smoothness_grid_shape(grid_shape, error, match):
    with pytest.raises(error, match=match):
        SpatialSmoothness(grid_shape)


def test_spatial_smoothness_accepts_numpy_integers():
    assert SpatialSmoothness(np.array([3, 4])).grid_shape == (3, 4)
    assert SpatialSmoothness([np.int64(3), 4]).grid_shape == (3, 4)


@pytest.mark.parametrize(
    ("reg", "good"),
    [(TimeSmoothness(4, 3, 0.1), np.ones(12)), (SpatialSmoothness((3, 4)), np.ones(12)),
     (ChannelSmoothness(2, (3, 2)), np.ones(12))],  # channels: an AttributeError ('list' ... 'ndim') before
    ids=["time", "spatial", "channel"],
)
def test_arguments_must_be_float_arrays(reg, good):
    name = "x" if isinstance(reg, TimeSmoothness) else "W"
    with pytest.raises(TypeError, match=rf"{name} must be a NumPy or CuPy array, got list"):
        reg.value(good.tolist())
    with pytest.raises(TypeError, match=r"v must be a floating-point array \(float32 or float64\), got dtype int64"):
        reg.hessian_matvec(good.astype(np.int64))
    with pytest.raises(TypeError, match=r"r must be a floating-point array .*got dtype complex128"):
        reg.precondition(good.astype(complex), 1.0)
    with pytest.raises(TypeError, match=r"v must be a floating-point array .*got dtype float16"):
        reg.gradient(good.astype(np.float16))


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_cupy_matches_numpy(case):
    import cupy

    reg, shape, _ = case
    x = np.random.default_rng(6).standard_normal(shape)
    xg = cupy.asarray(x)
    assert reg.value(xg) == pytest.approx(reg.value(x), rel=1e-12)
    for method in (reg.gradient, reg.hessian_matvec, lambda a: reg.precondition(a, 0.3)):
        out = method(xg)
        assert isinstance(out, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(out), method(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reg", [WeightDecay(), TimeSmoothness(4, 3, 0.1), SpatialSmoothness((3, 4)),
                                 ChannelSmoothness(1, (3, 4))], ids=repr)
def test_a_numpy_shift_keeps_float32(reg):
    """A NumPy float64 shift promoted the float32 solve to float64 (a Python float did not)."""
    r = np.random.default_rng(0).standard_normal(12).astype(np.float32)
    z = reg.precondition(r, np.float64(0.5))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, reg.precondition(r.astype(np.float64), 0.5), rtol=1e-5)
