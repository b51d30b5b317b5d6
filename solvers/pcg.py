r"""Preconditioned conjugate gradients for the Newton systems of the training solvers.

Why not :func:`scipy.sparse.linalg.cg`: it accepts LinearOperators, ``rtol`` and
``maxiter``, but (a) it runs on NumPy arrays only, while the Hessian-vector
products here may live on the GPU (CuPy) and must stay there; (b) it does not
detect directions of nonpositive curvature :math:`p^T A p \le 0`, which a
Newton-CG method on a nonconvex objective must stop at instead of dividing by
them; and (c) it reports neither the iteration count nor the residual history
the solvers log. Hence this short hand-written PCG, dispatching on the array
module of ``b`` (:func:`ocdl.backend.get_array_module`) and accepting arrays of
any shape (e.g. weight matrices), with inner products over all entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocdl._threads import vdot
from ocdl.backend import Array, get_array_module
from ocdl.validation import check_array, check_nonnegative

from .result import rounding_floor


@dataclass
class PCGResult:
    """Outcome of :func:`pcg`.

    Attributes
    ----------
    x : array
        The last iterate (shape and dtype of ``b``).
    nit : int
        Number of completed CG updates of ``x``.
    rel_residual : float
        :math:`\\|r\\| / \\|b\\|` at ``x``: the recursively updated residual, or, where
        it met an ``rtol`` below the square root of ``b``'s machine epsilon, the true
        residual :math:`b - A x` (see :func:`pcg`).
    success : bool
        Converged: ``rel_residual <= rtol``.
    negative_curvature : bool
        A search direction with :math:`p^T A p \\le 0` was met; ``x`` is the
        iterate before it (``x0``, or zero, if it was the first direction).
    residual_history : list of float
        ``rel_residual`` at ``x0`` and after every update (``nit + 1`` entries).
    """

    x: Array
    nit: int
    rel_residual: float
    success: bool
    negative_curvature: bool
    residual_history: list[float]


def _as_operator(name: str, A: Any, shape: tuple) -> Callable[[Array], Array]:
    """A callable (function, LinearOperator), or a matrix (dense, sparse) as ``v -> A @ v``, whose results must
    have ``shape`` (``b``'s): a column ``(n, 1)`` broadcast the iterates to ``(n, n, ...)``, growing each
    iteration."""
    apply = A if callable(A) else (lambda v: A @ v)

    def checked(v: Array) -> Array:
        out = apply(v)
        if getattr(out, "shape", None) != shape:
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"{name} must return an array of b's shape {shape}, got {got}")
        return out

    return checked


def pcg(
    A: Any,
    b: Array,
    M: Any = None,
    x0: Array | None = None,
    rtol: float = 1e-2,
    maxiter: int = 20,
    callback: Callable[[Array], None] | None = None,
) -> PCGResult:
    r"""Solve :math:`A x = b` by preconditioned conjugate gradients.

    Stops when :math:`\|b - A x\| \le \mathrm{rtol}\, \|b\|`, after ``maxiter``
    updates, or at the first direction of nonpositive curvature
    :math:`p^T A p \le 0` (then ``negative_curvature`` is set and the previous
    iterate is returned).

    The residual is updated recursively, :math:`r_{k+1} = r_k - \alpha_k A p_k`, and
    drifts from :math:`b - A x_{k+1}` by round-off: it goes on falling below what
    the precision can attain (in float32 to :math:`10^{-10}` while
    :math:`\|b - A x\| / \|b\|` stays near :math:`10^{-4}`). So where it meets an ``rtol``
    below :math:`\sqrt{\epsilon}` of ``b``'s dtype (:math:`3 \cdot 10^{-4}` in float32,
    :math:`1.5 \cdot 10^{-8}` in float64), the true residual is computed once (one
    more product with ``A``) and decides ``success``.

    Parameters
    ----------
    A : callable, LinearOperator or matrix
        The symmetric operator, :math:`v \mapsto A v` (any array shape).
    b : array
        Right-hand side; NumPy or CuPy.
    M : callable, LinearOperator or matrix, optional
        Preconditioner :math:`r \mapsto M r \approx A^{-1} r`, symmetric positive
        definite. Default: none (identity).
    x0 : array, optional
        Initial guess (default zero).
    rtol : float, optional
        Relative residual tolerance, a finite number ``>= 0``.
    maxiter : int, optional
        Maximum number of iterations, an integer ``>= 0``.
    callback : callable, optional
        Called as ``callback(x)`` after every update.

    Returns
    -------
    PCGResult

    Raises
    ------
    ValueError
        If ``rtol`` or ``maxiter`` is not of the form above, ``x0`` does not
        have the shape of ``b``, or ``A`` or ``M`` returns another shape.
    TypeError
        If ``b`` or ``x0`` is not a float32 or float64 NumPy or CuPy array
        (complex systems are not supported: the inner products here are
        real), or ``A`` or ``M`` returns complex values.
    """
    rtol = check_nonnegative("rtol", rtol)
    maxiter = check_nonnegative("maxiter", maxiter, integer=True)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    xp = get_array_module(b)
    check_array("b", b, finite=False)  # real float32 or float64: the inner products here are real
    if x0 is not None:
        check_array("x0", x0, finite=False)
        if x0.shape != b.shape:
            raise ValueError(f"x0 must have the shape of b, {b.shape}, got {x0.shape}")
    apply_A = _as_operator("A", A, b.shape)
    apply_M = (lambda r: r) if M is None else _as_operator("M", M, b.shape)

    def dot(u: Array, v: Array) -> float:
        value = vdot(u, v)
        if xp.iscomplexobj(value):
            raise TypeError(
                "pcg solves real systems: A or M returned complex values (an inner product "
                f"came out {value.dtype})"
            )
        return float(value)

    b_norm = dot(b, b) ** 0.5
    if b_norm == 0.0:
        return PCGResult(xp.zeros_like(b), 0, 0.0, True, False, [0.0])
    if x0 is None:
        x = xp.zeros_like(b)
        r = b
    else:
        x = xp.array(x0, dtype=b.dtype, copy=True)
        r = b - apply_A(x)
    rel = dot(r, r) ** 0.5 / b_norm
    history = [rel]
    negative_curvature = False
    nit = 0
    z = apply_M(r)
    rz = dot(r, z)
    p = z
    while rel > rtol and nit < maxiter:
        Ap = apply_A(p)
        pAp = dot(p, Ap)
        if pAp <= 0.0:
            negative_curvature = True
            break
        alpha = rz / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        nit += 1
        rel = dot(r, r) ** 0.5 / b_norm
        history.append(rel)
        if callback is not None:
            callback(x)
        if rel <= rtol or nit == maxiter:
            break  # done: skip the preconditioner solve
        z = apply_M(r)
        rz_new = dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    if nit > 0 and rel <= rtol < rounding_floor(b.dtype):
        true_r = b - apply_A(x)
        rel = dot(true_r, true_r) ** 0.5 / b_norm
    return PCGResult(x, nit, rel, rel <= rtol, negative_curvature, history)
