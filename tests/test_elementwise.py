"""The blocked, threaded elementwise chains of the step kernels (ocdl.activations._elementwise)."""

import numpy as np
import pytest

import ocdl
from ocdl import activations
from ocdl.activations import _elementwise


def chain(z, x, o):
    """A chain of passes like a step kernel's; returns a per-block reduction."""
    np.add(z, 0.1, out=o)
    np.tanh(o, out=o)
    np.multiply(o, 0.5, out=o)
    np.add(o, x, out=o)
    return o.sum()


@pytest.mark.parametrize("rows", [7, 2**20 // 8 + 3])  # whole arrays; threaded blocks with a ragged last one
def test_blocks_give_the_whole_array_result(rows, rng):
    Z, X = rng.standard_normal((rows, 8)), rng.standard_normal((rows, 8))
    out = np.empty_like(Z)
    sums = _elementwise(chain, Z, X, out)
    expected = X + 0.5 * np.tanh(Z + 0.1)  # independent: one NumPy expression
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=1e-15)
    assert (len(sums) > 1) == (Z.size >= activations._THREADED_ELEMENTS)
    assert sum(sums) == pytest.approx(expected.sum(), rel=1e-12)


def test_an_error_in_a_block_reaches_the_caller(rng):
    Z = rng.standard_normal((2**20 // 4, 8))

    def failing(z):
        if z[0, 0] == Z[-1, 0]:  # only the block holding the last row fails
            raise FloatingPointError("block failed")

    Z[-1, 0] = 123.0
    Z[Z.shape[0] // 2 :, 0] = Z[-1, 0]
    with pytest.raises(FloatingPointError, match="block failed"):
        _elementwise(failing, Z)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_tanh_step_equals_the_formula(dtype, rng):
    # Layer._step on a state big enough for the threaded blocks, against sigma's formula
    n, s = 16, 2**20 // 16 + 5
    layer = ocdl.Layer(ocdl.Dense(n), "tanh")
    theta = rng.standard_normal(layer.n_params).astype(dtype)
    V, X = rng.standard_normal((s, n)).astype(dtype), rng.standard_normal((s, n)).astype(dtype)
    out, D = layer._step(theta, V, X, 0.3)
    K, b = theta[:-1].reshape(n, n).astype(np.float64), float(theta[-1])
    t = np.tanh(V.astype(np.float64) @ K + b)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out, X + 0.3 * t, rtol=tol, atol=tol)
    np.testing.assert_allclose(D, 0.3 * (1 - t**2), rtol=tol, atol=tol)
    value_only, none = layer._step(theta, V, X, 0.3, derivative=False)
    assert none is None
    np.testing.assert_array_equal(value_only, out)
