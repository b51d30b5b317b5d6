r"""Inexact Newton and Gauss-Newton methods with PCG and Armijo backtracking.

Each iteration builds a local quadratic model at :math:`x_k` (the forward
states are computed once, there), solves :math:`H_k p = -g_k` approximately by
preconditioned CG, and backtracks along :math:`p`:

.. math::  x_{k+1} = x_k + t_k p_k, \qquad H_k p_k \approx -\nabla f(x_k).

The problem supplies the model; the method is the same for the exact
Hessian (:func:`newton_pcg`, convex classifier weights) and the Gauss-Newton
matrix :math:`J^T \nabla^2 S\, J + \alpha \nabla^2 R` (:func:`gauss_newton_pcg`).

The problem protocol:

* ``problem.model(x)`` returns an object with ``value`` (float),
  ``gradient`` (array like ``x``), ``hessian_matvec(v)`` and, optionally,
  ``precondition(r)`` (an approximate inverse of the Hessian) and
  ``metrics()`` (a dict logged in the history, e.g. accuracies);
* ``problem.value(x)`` evaluates the objective (the line search).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ocdl.checks import inner, norm
from ocdl.validation import check_nonnegative, check_positive

from .line_search import armijo
from .pcg import pcg
from .result import SolverResult, Status, default_gtol, gradient_test


def newton_pcg(
    problem: Any,
    x0: Any,
    max_iter: int = 10,
    gtol: float | None = None,
    cg_maxiter: int = 20,
    cg_rtol: float = 1e-2,
    callback: Callable[[int, Any, dict], bool | None] | None = None,
    step0: float = 1.0,
) -> SolverResult:
    """Minimise ``problem`` from ``x0`` by Newton-PCG with Armijo backtracking.

    Parameters
    ----------
    problem : see the module docstring.
    x0 : initial point (NumPy or CuPy array of any shape).
    max_iter : outer iterations, an integer >= 0.
    gtol : stop when :math:`\\|g_k\\| \\le \\text{gtol}\\, \\|g_0\\|` (>= 0), tested before each step: the
        last iterate's gradient is not evaluated (one more gradient, a forward and an adjoint sweep in
        every iteration of block coordinate descent, whose Gauss-Newton solves take one step), so after
        ``max_iter`` steps ``status`` is ``MAX_ITER`` even where that iterate would pass. Default
        (``None``): :func:`~ocdl.solvers.result.default_gtol` of ``x0``'s dtype, 1e-6 in float64 and
        :math:`\\sqrt{\\epsilon} = 3.5 \\cdot 10^{-4}` in float32, whose gradients level off above 1e-6.
    cg_maxiter, cg_rtol : PCG's iteration cap (an integer >= 1) and relative tolerance (>= 0).
    callback : called as ``callback(k, x_k, record)`` after every iteration;
        returning ``True`` stops the solver.
    step0 : first trial step of the first line search along the Newton direction,
        in ``(0, 1]`` (later iterations start from 1, the Newton step).

    Returns
    -------
    SolverResult with ``x`` (an array like ``x0``), ``fun``, ``nit``,
    ``status``, ``success``, ``message`` and per-iteration records
    ``iteration, objective, grad_norm, rel_grad_norm, step, cg_iters, cg_rel_residual,
    negative_curvature, gradient_fallback, time`` plus the model's ``metrics()``.
    Where PCG meets nonpositive curvature on its first direction (no Newton
    direction, ``cg_iters`` 0) or backtracking along the Newton direction fails
    (near-zero curvature makes the step far too long), one Armijo step along :math:`-g_k` is taken
    instead (``gradient_fallback`` in the record), backtracked from the Cauchy
    step :math:`\\min(1, g_k^T g_k / g_k^T H_k g_k)` (one more Hessian product). ``status`` is
    :attr:`~ocdl.solvers.result.Status.CONVERGED` (the gradient test, or the
    gradient is zero) or :attr:`~ocdl.solvers.result.Status.CALLBACK` with
    ``success=True``; :attr:`~ocdl.solvers.result.Status.MAX_ITER`,
    :attr:`~ocdl.solvers.result.Status.LINE_SEARCH_FAILED` (along both
    directions) or :attr:`~ocdl.solvers.result.Status.NOT_FINITE` (a NaN
    or Inf objective or gradient) with ``success=False``: never an endless loop.

    Raises
    ------
    ValueError
        If an option is out of the range above, naming it.
    """
    start = time.perf_counter()
    x = x0
    history: list[dict] = []
    g0_norm = None
    status, success, message = Status.MAX_ITER, False, f"reached max_iter = {max_iter}"
    max_iter = check_nonnegative("max_iter", max_iter, integer=True)
    gtol = default_gtol(getattr(x0, "dtype", None)) if gtol is None else check_nonnegative("gtol", gtol)
    cg_maxiter = check_positive("cg_maxiter", cg_maxiter, integer=True)
    cg_rtol = check_nonnegative("cg_rtol", cg_rtol)
    if not 0.0 < step0 <= 1.0:
        raise ValueError(f"step0 must lie in (0, 1], got {step0!r}")
    model = problem.model(x)
    for k in range(max_iter):  # the test before each step: x_{max_iter}'s gradient is not evaluated (see above)
        g_norm = norm(model.gradient)
        g0_norm = g_norm if g0_norm is None else g0_norm
        stop = gradient_test(model.value, g_norm, g0_norm, gtol)
        if stop is not None:
            status, success, message = stop
            break
        precondition = getattr(model, "precondition", None)
        cg = pcg(model.hessian_matvec, -model.gradient, M=precondition, rtol=cg_rtol, maxiter=cg_maxiter)
        p = cg.x
        slope = inner(model.gradient, p)
        # No descent from CG (nonpositive curvature on its first direction: p = 0): no Newton step to try
        ls = armijo(problem.value, x, p, model.value, slope, t0=step0 if k == 0 else 1.0) if slope < 0 else None
        gradient_fallback = ls is None or not ls.success
        if gradient_fallback:
            # No Newton direction, or near-zero curvature (saturated logits, e.g. right after a
            # multilevel prolongation) makes the Newton step too long for backtracking from
            # t = 1: take a steepest-descent step instead, from the Cauchy step of the
            # model along -g, min(1, g^T g / g^T H g) (1 where the curvature along g is
            # not positive): where the gradient is steep, t = 1 is far too long. Not more
            # halvings: each trial is a forward sweep, and at t ~ 2^-40 one no longer
            # changes x.
            p = -model.gradient
            curvature = inner(p, model.hessian_matvec(p))
            t0 = min(1.0, g_norm**2 / curvature) if curvature > 0 else 1.0
            ls = armijo(problem.value, x, p, model.value, -(g_norm**2), t0=t0)
        record = {
            "iteration": k,
            "objective": model.value,
            "grad_norm": g_norm,
            "rel_grad_norm": g_norm / g0_norm,
            "step": ls.step,
            "cg_iters": cg.nit,
            "cg_rel_residual": cg.rel_residual,
            "negative_curvature": cg.negative_curvature,
            "gradient_fallback": gradient_fallback,
        }
        if not ls.success:
            record["time"] = time.perf_counter() - start
            history.append(record)
            status, success = Status.LINE_SEARCH_FAILED, False
            message = "line search failed along the Newton and the steepest-descent directions"
            break
        x = x + ls.step * p
        model = problem.model(x)
        record.update(getattr(model, "metrics", dict)())
        record["time"] = time.perf_counter() - start
        history.append(record)
        if callback is not None and callback(k, x, record):
            status, success, message = Status.CALLBACK, True, "stopped by callback"
            break
    return SolverResult(x=x, fun=model.value, nit=len(history), status=status, success=success, message=message,
                        history=history)


def gauss_newton_pcg(problem: Any, x0: Any, **options: Any) -> SolverResult:
    """Gauss-Newton-PCG: :func:`newton_pcg` on a problem whose model's ``hessian_matvec``
    is the Gauss-Newton matrix :math:`J^T \\nabla^2 S\\, J + \\alpha \\nabla^2 R`
    (symmetric positive semi-definite), e.g. :meth:`ocdl.LearningProblem.theta_problem`.
    Options as for :func:`newton_pcg`.
    """
    return newton_pcg(problem, x0, **options)
