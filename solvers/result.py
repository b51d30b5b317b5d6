"""The result every ocdl optimizer returns (as :class:`scipy.optimize.OptimizeResult`); the linear solver
:func:`~ocdl.solvers.pcg.pcg` returns its own :class:`~ocdl.solvers.pcg.PCGResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SolverResult:
    """Outcome of a solver, with a per-iteration history.

    Attributes
    ----------
    x : the solution (an array, or a dict of arrays for block solvers).
    fun : objective value at ``x``.
    nit : number of outer iterations taken.
    success : whether the stopping test was met (not a failure or the iteration cap).
    message : why the solver stopped, in words.
    history : one dict per iteration; keys include ``objective``,
        ``grad_norm``, ``step``, ``cg_iters`` and ``time`` (seconds since the
        start), plus what the solver or the problem reports (accuracies).
    """

    x: Any
    fun: float
    nit: int
    success: bool
    message: str
    history: list[dict] = field(default_factory=list)

    def trace(self, key: str) -> np.ndarray:
        """The history of ``key`` as an array (NaN where an iteration lacks it)."""
        return np.array([float(rec.get(key, np.nan)) for rec in self.history])

    def __repr__(self) -> str:
        return (
            f"SolverResult(fun={self.fun:.6g}, nit={self.nit}, success={self.success}, "
            f"message={self.message!r})"
        )
