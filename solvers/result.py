"""The result every ocdl optimizer returns, after :class:`scipy.optimize.OptimizeResult`, and why it stopped.

The linear solver :func:`~ocdl.solvers.pcg.pcg` returns its own
:class:`~ocdl.solvers.pcg.PCGResult`; :func:`~ocdl.solvers.multilevel.multilevel`
a :class:`MultilevelResult`, which adds the finest level's network.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Status(enum.IntEnum):
    """Why a solver stopped (``SolverResult.status``; an ``int``, as scipy's ``status``)."""

    CONVERGED = 0
    """The stopping test was met: the gradient norm fell by the factor ``gtol`` (Newton-type solvers)."""
    MAX_ITER = 1
    """The iterations asked for are done (for the training solvers and multilevel that is success)."""
    CALLBACK = 2
    """The callback returned ``True``."""
    LINE_SEARCH_FAILED = 3
    """No step along the Newton (or Gauss-Newton) and the steepest-descent direction decreased the objective."""
    NOT_FINITE = 4
    """The objective or the gradient was NaN or Inf, or the forward propagation blew up."""


def gradient_test(value: float, g_norm: float, g0_norm: float, gtol: float) -> tuple[Status, bool, str] | None:
    r"""The stopping test of the solvers of an array, before each step: ``(status, success, message)`` for a
    NaN or Inf objective or gradient, a zero gradient, or
    :math:`\|g_k\| \le \text{gtol}\, \|g_0\|`; ``None`` to go on."""
    if not (np.isfinite(value) and np.isfinite(g_norm)):
        return Status.NOT_FINITE, False, "objective or gradient is NaN or Inf; stopped"
    if g_norm == 0.0:
        return Status.CONVERGED, True, "the gradient is zero"
    if g_norm <= gtol * g0_norm:
        return Status.CONVERGED, True, f"gradient norm reduced by {gtol:g}"
    return None


def rounding_floor(dtype: Any) -> float:
    r""":math:`\sqrt{\epsilon}` of the floating ``dtype`` (:math:`3.5 \cdot 10^{-4}` in float32,
    :math:`1.5 \cdot 10^{-8}` in float64): the smallest relative reduction of a gradient or a residual that
    the solvers trust to be the iteration's rather than rounding's (:func:`default_gtol`,
    :func:`~ocdl.solvers.pcg.pcg`'s true-residual test, the ``cg_rtol`` of
    :func:`~ocdl.solvers.discrepancy.discrepancy_principle`)."""
    return float(np.finfo(dtype).eps) ** 0.5


def default_gtol(dtype: Any) -> float:
    r"""The solvers' default ``gtol`` for iterates of ``dtype``: :math:`10^{-6}`, or :math:`\sqrt{\epsilon}` of
    ``dtype`` where that is larger (:math:`3.5 \cdot 10^{-4}` in float32; float64's :math:`1.5 \cdot 10^{-8}`
    leaves :math:`10^{-6}`), as :func:`~ocdl.solvers.discrepancy.discrepancy_principle`'s ``cg_rtol``. A float32
    gradient levels off above :math:`10^{-6}\, \|g_0\|` by rounding, the more the worse the conditioning (at
    :math:`10^{-5}` for a least-squares fit whose matrix has condition number 100), and a solver that asked for
    1e-6 ran to ``max_iter`` or failed its line search. Not a floating type (integers, a list's ``None``):
    :math:`10^{-6}`, the iterates being float64."""
    if dtype is None or not np.issubdtype(dtype, np.inexact):
        return 1e-6
    return max(1e-6, rounding_floor(dtype))


@dataclass(kw_only=True)
class SolverResult:
    """Outcome of a solver, with a per-iteration history.

    Attributes
    ----------
    x : the solution: a :class:`~ocdl.solvers.params.Params` for the training
        solvers and multilevel, an array for the solvers of an array (Newton-PCG,
        Gauss-Newton-PCG, steepest descent).
    fun : objective value at ``x``.
    nit : number of outer iterations taken.
    status : :class:`Status`, why the solver stopped.
    success : whether the solver did what was asked: the stopping test met
        (Newton-type solvers; reaching ``max_iter`` is not success there),
        every iteration done or a callback's stop (training solvers), every
        level done (multilevel); ``False`` after a failure.
    message : why the solver stopped, in words.
    history : one dict per iteration; keys include ``objective``,
        ``grad_norm``, ``step``, ``cg_iters`` and ``time`` (seconds since the
        start), plus what the solver or the problem reports (accuracies).
    """

    x: Any
    fun: float
    nit: int
    status: Status
    success: bool
    message: str
    history: list[dict] = field(default_factory=list)

    def trace(self, key: str) -> np.ndarray:
        """The history of ``key`` as an array (NaN where an iteration lacks it)."""
        return np.array([float(rec.get(key, np.nan)) for rec in self.history])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(fun={self.fun:.6g}, nit={self.nit}, status={self.status.name}, "
            f"success={self.success}, message={self.message!r})"
        )


@dataclass(kw_only=True, repr=False)
class MultilevelResult(SolverResult):
    """The result of :func:`~ocdl.solvers.multilevel.multilevel`: a :class:`SolverResult` whose ``x`` belongs
    to the finest level trained, with that level's network.

    Attributes
    ----------
    network : ocdl.Network
        The network of ``x.theta`` (the finest level's number of layers).
    history : list of dict
        One record per level, not per iteration (its keys are listed under
        :func:`~ocdl.solvers.multilevel.multilevel`'s return value); each level's
        iterations are in its record's ``result.history``.
    """

    network: Any
