"""PCG against scipy's CG and direct solves; preconditioning, negative curvature, limits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from ocdl.solvers.pcg import PCGResult, pcg
from scipy.sparse.linalg import LinearOperator, aslinearoperator, cg

from ocdl.backend import cupy_available


def spd_matrix(n, cond, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.logspace(0, np.log10(cond), n)) @ Q.T


@pytest.mark.parametrize("use_M", [False, True], ids=["plain", "jacobi"])
def test_matches_scipy_cg_and_direct_solve(use_M):
    A = spd_matrix(60, 1e3) + np.diag(np.linspace(1, 30, 60))
    b = np.random.default_rng(1).standard_normal(60)
    M = aslinearoperator(sp.diags(1 / np.diag(A))) if use_M else None
    scipy_iterates = []
    x_ref, info = cg(A, b, M=M, rtol=1e-9, maxiter=500, callback=lambda x: scipy_iterates.append(x.copy()))
    assert info == 0
    ours = []
    result = pcg(lambda v: A @ v, b, M=M, rtol=1e-9, maxiter=500, callback=lambda x: ours.append(x.copy()))
    assert isinstance(result, PCGResult)
    assert result.success and not result.negative_curvature
    assert result.nit == len(scipy_iterates) == len(ours)
    np.testing.assert_allclose(result.x, x_ref, rtol=1e-10)
    np.testing.assert_allclose(ours[2], scipy_iterates[2], rtol=1e-12)
    x_direct = np.linalg.solve(A, b)
    assert np.linalg.norm(result.x - x_direct) <= 1e-6 * np.linalg.norm(x_direct)
    assert result.rel_residual <= 1e-9
    assert len(result.residual_history) == result.nit + 1
    assert result.residual_history[0] == 1.0
    true_rel = np.linalg.norm(b - A @ result.x) / np.linalg.norm(b)
    assert true_rel == pytest.approx(result.rel_residual, rel=1e-3, abs=1e-12)


@pytest.mark.parametrize("A", ["matrix", "sparse", "linear_operator"])
def test_accepts_matrices_and_operators(A):
    dense = spd_matrix(20, 10.0, seed=2)
    op = {"matrix": dense, "sparse": sp.csr_array(dense), "linear_operator": aslinearoperator(dense)}[A]
    b = np.ones(20)
    result = pcg(op, b, rtol=1e-12, maxiter=100)
    np.testing.assert_allclose(result.x, np.linalg.solve(dense, b), rtol=1e-9)


def test_preconditioner_reduces_iterations():
    d = np.logspace(0, 6, 300)
    b = np.random.default_rng(3).standard_normal(300)
    plain = pcg(lambda v: d * v, b, rtol=1e-8, maxiter=300)
    jacobi = pcg(lambda v: d * v, b, M=lambda r: r / d, rtol=1e-8, maxiter=300)
    assert jacobi.success and jacobi.nit == 1
    assert plain.nit > 20 * jacobi.nit
    np.testing.assert_allclose(jacobi.x, b / d, rtol=1e-12)


def test_negative_curvature_first_direction():
    A = np.diag([-1.0, -2.0, -3.0])
    result = pcg(A, np.ones(3), maxiter=50)
    assert result.negative_curvature and not result.success
    assert result.nit == 0
    np.testing.assert_array_equal(result.x, np.zeros(3))


def test_negative_curvature_later_returns_last_iterate():
    A = np.diag([1.0, 2.0, 3.0, 4.0, -0.1])
    b = np.ones(5)
    iterates = []
    result = pcg(A, b, rtol=1e-12, maxiter=50, callback=lambda x: iterates.append(x.copy()))
    assert result.negative_curvature and not result.success
    assert 0 < result.nit < 5
    np.testing.assert_array_equal(result.x, iterates[-1])
    assert len(result.residual_history) == result.nit + 1


def test_maxiter_is_honoured():
    A = spd_matrix(40, 1e4, seed=4)
    result = pcg(A, np.ones(40), rtol=1e-14, maxiter=3)
    assert result.nit == 3 and not result.success
    assert len(result.residual_history) == 4


def test_initial_guess_and_zero_rhs():
    A = spd_matrix(10, 5.0, seed=5)
    x = np.arange(10.0)
    result = pcg(A, A @ x, x0=x, rtol=1e-8)
    assert result.success and result.nit == 0
    np.testing.assert_array_equal(result.x, x)
    zero = pcg(A, np.zeros(10))
    assert zero.success and zero.nit == 0 and not zero.x.any()


def test_matrix_shaped_unknowns():
    """b may be any array (e.g. weights W, n x m); A acts on all entries."""
    rng = np.random.default_rng(6)
    A = spd_matrix(8, 50.0, seed=6)
    B = rng.standard_normal((8, 3))
    result = pcg(lambda V: A @ V, B, rtol=1e-12, maxiter=100)
    np.testing.assert_allclose(result.x, np.linalg.solve(A, B), rtol=1e-9)


def test_float32():
    A = spd_matrix(30, 100.0, seed=7).astype(np.float32)
    b = np.ones(30, dtype=np.float32)
    op = LinearOperator(A.shape, matvec=lambda v: A @ v, dtype=np.float32)
    result = pcg(op, b, rtol=1e-4, maxiter=100)
    assert result.success and result.x.dtype == np.float32
    x_direct = np.linalg.solve(A.astype(np.float64), b.astype(np.float64))
    assert np.linalg.norm(result.x - x_direct) <= 1e-2 * np.linalg.norm(x_direct)


def test_float32_success_at_an_unreachable_rtol_is_judged_on_the_true_residual():
    """cond(A) = 1e4 in float32: the recursive residual falls to ~1e-9, b - A x stays near 1e-4."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    A = ((Q * np.logspace(0, 4, 200)) @ Q.T).astype(np.float32)
    b = rng.standard_normal(200).astype(np.float32)
    result = pcg(lambda v: A @ v, b, rtol=1e-9, maxiter=2000)
    true_rel = np.linalg.norm(b - A @ result.x) / np.linalg.norm(b)
    assert result.residual_history[-1] <= 1e-9 < true_rel  # the recursive residual met rtol ...
    assert not result.success and result.rel_residual == pytest.approx(true_rel, rel=1e-3)  # ... the true did not
    A = ((Q * np.logspace(0, 2, 200)) @ Q.T).astype(np.float32)  # cond 100: 1e-5 is reachable
    reachable = pcg(lambda v: A @ v, b, rtol=1e-5, maxiter=2000)  # below sqrt(eps): checked, and passes
    assert reachable.success and np.linalg.norm(b - A @ reachable.x) <= 1e-5 * np.linalg.norm(b)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"maxiter": -1}, r"maxiter must be an integer >= 0, got -1"),
        ({"maxiter": 2.5}, r"maxiter must be an integer >= 0, got 2.5"),
        ({"maxiter": "20"}, r"maxiter must be an integer >= 0, got '20'"),
        ({"rtol": float("nan")}, r"rtol must be a finite number >= 0, got nan"),
        ({"rtol": -1e-3}, r"rtol must be a finite number >= 0, got -0.001"),
        ({"rtol": float("inf")}, r"rtol must be a finite number >= 0, got inf"),
        ({"x0": np.zeros(4)}, r"x0 must have the shape of b, \(3,\), got \(4,\)"),
    ],
)
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        pcg(2 * np.eye(3), np.ones(3), **options)


def test_zero_maxiter_and_rtol_are_allowed():
    assert pcg(2 * np.eye(3), np.ones(3), maxiter=np.int64(0)).nit == 0
    result = pcg(2 * np.eye(3), np.ones(3), rtol=0.0)
    assert result.nit == 1 and result.rel_residual == 0.0 and result.success


def test_complex_systems_are_rejected():
    A = 2 * np.eye(3)
    with pytest.raises(TypeError, match=r"b must be a floating-point array \(float32 or float64\), got dtype complex"):
        pcg(A, np.ones(3) * (1 + 1j))
    with pytest.raises(TypeError, match=r"x0 must be a floating-point array"):
        pcg(A, np.ones(3), x0=np.ones(3) * 1j)
    with pytest.raises(TypeError, match=r"A or M returned complex values"):
        pcg(A * 1j, np.ones(3))
    with pytest.raises(TypeError, match=r"b must be a NumPy or CuPy array, got list"):
        pcg(A, [1.0, 2.0, 3.0])


def test_an_operator_returning_another_shape_is_named():
    """A column (n, 1) for a vector (n,) broadcast the iterates to (n, n), (n, n, n), ...: memory growing as
    n^k (still running after 20 s at maxiter 50), or a wrong x of shape (n, n)."""
    A, b = np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), np.ones(6)
    with pytest.raises(ValueError, match=r"A must return an array of b's shape \(6,\), got \(6, 1\)"):
        pcg(lambda v: (A @ v)[:, None], b, maxiter=50)
    with pytest.raises(ValueError, match=r"M must return an array of b's shape \(6,\), got \(1, 6\)"):
        pcg(A, b, M=lambda r: r[None, :])
    with pytest.raises(ValueError, match=r"A must return an array of b's shape \(6,\), got float"):
        pcg(lambda v: 1.0, b)


def assert_same_solve(result, reference, A, b):
    r"""Two PCG runs on the same ill-conditioned system whose products round differently.

    In exact arithmetic CG takes the same steps whatever the order of the
    sums; in floating point the directions lose orthogonality at different
    rates, so past the first few dozen iterations the residual histories
    oscillate out of step and the iteration counts may differ by a few (101 and
    103: CuPy against NumPy on an H200, and NumPy 2.4 with its columns reversed;
    101 both with NumPy 2.5's OpenBLAS, whose residuals still differ). What
    must agree: the first 20 residuals (rounding has not yet grown there),
    convergence within 10% of the iterations, and the solutions, each within
    :math:`\kappa(A)` times its true residual of the direct solution.
    """
    assert result.success and reference.success
    assert abs(result.nit - reference.nit) <= 0.1 * reference.nit
    np.testing.assert_allclose(result.residual_history[:21], reference.residual_history[:21], rtol=1e-6)
    x_direct = np.linalg.solve(A, b)
    cond = np.linalg.cond(A)
    for x in (result.x, reference.x):
        true_rel = np.linalg.norm(b - A @ x) / np.linalg.norm(b)
        assert true_rel <= 1e-9
        assert np.linalg.norm(x - x_direct) <= cond * true_rel * np.linalg.norm(x_direct)
    np.testing.assert_allclose(result.x, reference.x, rtol=1e-8)


def test_rounding_changes_iterations_not_the_solve():
    """The GPU's situation on the CPU: the same products summed in another order (columns reversed)."""
    A = spd_matrix(50, 1e3, seed=8)
    b = np.ones(50)
    A_reversed = np.ascontiguousarray(A[:, ::-1])
    reordered = pcg(lambda v: A_reversed @ v[::-1], b, rtol=1e-10, maxiter=200)
    plain = pcg(lambda v: A @ v, b, rtol=1e-10, maxiter=200)
    # rounding changes the path (the late residuals differ by factors, and with them the count on some BLAS
    # builds): equal counts are no criterion
    n = min(len(reordered.residual_history), len(plain.residual_history))
    ratio = np.asarray(reordered.residual_history[:n]) / np.asarray(plain.residual_history[:n])
    assert np.max(np.abs(np.log(ratio))) > 0.1
    assert_same_solve(reordered, plain, A, b)


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_cupy_matches_numpy():
    import cupy

    A = spd_matrix(50, 1e3, seed=8)
    b = np.ones(50)
    Ag = cupy.asarray(A)
    gpu = pcg(lambda v: Ag @ v, cupy.asarray(b), rtol=1e-10, maxiter=200)
    cpu = pcg(lambda v: A @ v, b, rtol=1e-10, maxiter=200)
    assert isinstance(gpu.x, cupy.ndarray)
    assert_same_solve(dataclasses.replace(gpu, x=cupy.asnumpy(gpu.x)), cpu, A, b)
