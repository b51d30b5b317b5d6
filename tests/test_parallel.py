"""Row blocks shared among threads (ocdl.parallel) and the step kernels that run on them."""

import numpy as np
import pytest

import ocdl
from ocdl import parallel
from ocdl.parallel import blas_threads_settable, row_blocks, single_threaded_blas

# rows of a 16-wide state big enough for threaded blocks, with a ragged last block
LARGE_ROWS = parallel._THREADED_ELEMENTS // 16 + 5


def chain(z, x, o):
    """A chain of passes like a step kernel's; returns a per-block reduction."""
    np.add(z, 0.1, out=o)
    np.tanh(o, out=o)
    np.multiply(o, 0.5, out=o)
    np.add(o, x, out=o)
    return o.sum()


@pytest.mark.parametrize("rows", [7, 2 * LARGE_ROWS])  # whole arrays; threaded blocks, ragged last one
def test_blocks_give_the_whole_array_result(rows, rng):
    Z, X = rng.standard_normal((rows, 8)), rng.standard_normal((rows, 8))
    out = np.empty_like(Z)
    sums = row_blocks(chain, Z, X, out)
    expected = X + 0.5 * np.tanh(Z + 0.1)  # independent: one NumPy expression
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=1e-15)
    threaded = Z.size >= parallel._THREADED_ELEMENTS and blas_threads_settable()
    assert (len(sums) > 1) == threaded
    assert sum(sums) == pytest.approx(expected.sum(), rel=1e-12)


def test_an_error_in_a_block_reaches_the_caller(rng):
    Z = rng.standard_normal((4 * LARGE_ROWS, 8))

    def failing(z):
        if z[0, 0] == Z[-1, 0]:  # only the blocks of the second half fail
            raise FloatingPointError("block failed")

    Z[-1, 0] = 123.0
    Z[Z.shape[0] // 2 :, 0] = Z[-1, 0]
    with pytest.raises(FloatingPointError, match="block failed"):
        row_blocks(failing, Z)


def test_single_threaded_blas_holds_one_thread_and_restores():
    if not blas_threads_settable():
        pytest.skip("no OpenBLAS whose thread count can be set in this process")
    controls = parallel._blas_state["controls"]
    before = [get() for _, get in controls]
    with single_threaded_blas():
        assert all(get() == 1 for _, get in controls)
        with single_threaded_blas():  # nested: the outer level restores
            pass
        assert all(get() == 1 for _, get in controls)
    assert [get() for _, get in controls] == before


def test_each_loaded_openblas_is_controlled_once():
    """SciPy's wrapper modules resolve its OpenBLAS's functions too: one control per library, not per module."""
    import ctypes

    import scipy.linalg.blas  # noqa: F401 - loads SciPy's OpenBLAS and the modules that link it

    controls = parallel._loaded_openblas_controls()
    if not controls:
        pytest.skip("no OpenBLAS found in this process")
    addresses = [ctypes.cast(set_threads, ctypes.c_void_p).value for set_threads, _ in controls]
    assert len(set(addresses)) == len(addresses)


def test_threaded_blocks_see_one_blas_thread():
    if not blas_threads_settable():
        pytest.skip("no OpenBLAS whose thread count can be set in this process")
    controls = parallel._blas_state["controls"]
    seen = parallel.in_parallel(lambda i: [get() for _, get in controls], 4, True)
    assert all(n == 1 for counts in seen for n in counts)


def _large_layer(rng, dtype, transform=None):
    n = 16
    layer = ocdl.Layer(transform or ocdl.Dense(n), "tanh")
    theta = (rng.standard_normal(layer.n_params) / 4).astype(dtype)
    V, X = (rng.standard_normal((LARGE_ROWS, n)).astype(dtype) for _ in range(2))
    return layer, theta, V, X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_tanh_step_equals_the_formula(dtype, rng):
    # Layer._step on a state big enough for the threaded blocks, against sigma's formula
    layer, theta, V, X = _large_layer(rng, dtype)
    out, D = layer._step(theta, V, X, 0.3)
    K, b = theta[:-1].reshape(16, 16).astype(np.float64), float(theta[-1])
    t = np.tanh(V.astype(np.float64) @ K + b)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out, X + 0.3 * t, rtol=tol, atol=tol)
    np.testing.assert_allclose(D, 0.3 * (1 - t**2), rtol=tol, atol=tol)
    value_only, none = layer._step(theta, V, X, 0.3, derivative=False)
    assert none is None
    np.testing.assert_array_equal(value_only, out)


@pytest.mark.parametrize("transpose", [False, True])
def test_large_step_derivatives_equal_the_formulas(transpose, rng):
    # the tangent and the transpose kernels, block by block, against whole-array NumPy formulas
    layer, theta, V, X = _large_layer(rng, np.float64)
    D, W, dV = (rng.standard_normal(V.shape) for _ in range(3))
    dtheta = rng.standard_normal(theta.shape)
    K, dK, db = theta[:-1].reshape(16, 16), dtheta[:-1].reshape(16, 16), dtheta[-1]
    if transpose:
        K, dK = K.T, dK.T
    tangent = layer._step_jvp(theta, V, D, dV, dtheta, X, transpose=transpose)
    np.testing.assert_allclose(tangent, X + D * (dV @ K + V @ dK + db), rtol=1e-12, atol=1e-12)
    back, gtheta = layer._step_vjp(theta, V, D, W, X, transpose=transpose)
    G = D * W
    np.testing.assert_allclose(back, X + G @ K.T, rtol=1e-12, atol=1e-12)
    g_K = (G.T @ V) if transpose else (V.T @ G)
    np.testing.assert_allclose(gtheta[:-1], g_K.ravel(), rtol=1e-11)
    assert gtheta[-1] == pytest.approx(G.sum(), rel=1e-11)
