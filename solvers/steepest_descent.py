"""Steepest descent with Armijo backtracking: the first-order baseline for the Newton-type solvers."""

from __future__ import annotations

import time

import numpy as np

from ocdl.validation import check_nonnegative

from .line_search import armijo
from .result import SolverResult, Status, default_gtol, gradient_test


def steepest_descent(problem, x0: np.ndarray, max_iter: int = 1000, gtol: float | None = None) -> SolverResult:
    r"""Steepest descent with Armijo backtracking, the first-order baseline:

    .. math::  x_{k+1} = x_k - t_k \nabla\Phi(x_k),

    :math:`t_k` backtracked from :math:`2 t_{k-1}`, with :math:`t_{-1} = 1/\|\nabla\Phi(x_0)\|`.
    Stops, like :func:`ocdl.solvers.newton_pcg`, when
    :math:`\|\nabla\Phi(x_k)\| \le \text{gtol}\, \|\nabla\Phi(x_0)\|` (default, as there,
    :func:`~ocdl.solvers.result.default_gtol`: 1e-6 in float64, :math:`\sqrt{\epsilon}` in float32); the
    history records ``objective``, ``grad_norm``, ``rel_grad_norm``, ``step``
    and, if the model has them, its ``metrics()`` at :math:`x_{k+1}`; a failed
    line search keeps its record (``step`` 0), as in :func:`ocdl.solvers.newton_pcg`.
    ``status`` as there, without a callback: ``CONVERGED`` (also at a zero
    gradient), ``MAX_ITER``, ``LINE_SEARCH_FAILED`` or ``NOT_FINITE`` (a NaN or
    Inf objective or gradient). The problem protocol is
    :mod:`ocdl.solvers.newton`'s (``hessian_matvec`` unused).
    """
    max_iter = check_nonnegative("max_iter", max_iter, integer=True)
    gtol = default_gtol(getattr(x0, "dtype", None)) if gtol is None else check_nonnegative("gtol", gtol)
    start = time.perf_counter()
    x, model = x0, problem.model(x0)
    g0_norm = float(np.linalg.norm(model.gradient))
    step = 1.0 / g0_norm if g0_norm > 0.0 else 0.0  # 0: converged at once
    history: list[dict] = []
    status, success, message = Status.MAX_ITER, False, f"reached max_iter = {max_iter}"
    for k in range(max_iter):  # the test before each step, as in newton_pcg
        g_norm = float(np.linalg.norm(model.gradient))
        stop = gradient_test(model.value, g_norm, g0_norm, gtol)
        if stop is not None:
            status, success, message = stop
            break
        ls = armijo(problem.value, x, -model.gradient, model.value, -(g_norm**2), t0=2.0 * step, max_evals=60)
        record = {"iteration": k, "objective": model.value, "grad_norm": g_norm,
                  "rel_grad_norm": g_norm / g0_norm, "step": ls.step}
        if not ls.success:
            record["time"] = time.perf_counter() - start
            history.append(record)
            status, message = Status.LINE_SEARCH_FAILED, "line search failed"
            break
        step = ls.step
        x = x - step * model.gradient
        model = problem.model(x)
        record.update(getattr(model, "metrics", dict)())
        record["time"] = time.perf_counter() - start
        history.append(record)
    return SolverResult(x=x, fun=model.value, nit=len(history), status=status, success=success, message=message,
                        history=history)
