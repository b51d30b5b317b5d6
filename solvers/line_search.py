r"""Armijo backtracking line search.

Finds :math:`t \in \{1, \beta, \beta^2, \dots\}` with the sufficient decrease

.. math::  f(x + t p) \le f(x) + c\, t\, \nabla f(x)^T p \quad\text{and}\quad f(x + t p) < f(x) .

The second condition follows from the first (the slope is negative) but not from its rounded form: where
:math:`c\, t\, \nabla f(x)^T p` is below the rounding of :math:`f(x)`, the first rounds to
:math:`f(x + t p) \le f(x)` and would accept a step that did not decrease :math:`f` at all (a flat
objective, or a step too short to change :math:`x`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocdl.validation import check_positive


@dataclass
class LineSearchResult:
    """Accepted step ``t`` (0 if none), the new value, the number of function evaluations, and success."""

    step: float
    value: float
    nfev: int
    success: bool


def armijo(
    f: Callable[[Any], float],
    x: Any,
    p: Any,
    f0: float,
    slope: float,
    c: float = 1e-4,
    beta: float = 0.5,
    t0: float = 1.0,
    max_evals: int = 20,
) -> LineSearchResult:
    """Backtrack from ``t0`` by ``beta`` until the Armijo condition holds.

    ``slope`` is :math:`\\nabla f(x)^T p` and must be negative (a descent
    direction). A trial must also decrease ``f`` strictly (see the module
    docstring: a tie with ``f0`` is no decrease). Non-finite trial values
    count as failures of the condition, so a step into a blow-up is
    shortened, never accepted. After
    ``max_evals`` trials the search gives up with ``success=False`` and
    ``step=0`` (the caller keeps ``x``): it never loops forever.

    Raises
    ------
    ValueError
        If ``slope`` is not negative, ``c`` or ``beta`` is outside ``(0, 1)``,
        ``t0`` is not a positive number or ``max_evals`` not an integer >= 1.
    """
    for name, value in (("c", c), ("beta", beta)):
        if not 0.0 < check_positive(name, value) < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    t0 = check_positive("t0", t0)
    max_evals = check_positive("max_evals", max_evals, integer=True)
    if not slope < 0:
        raise ValueError(f"armijo needs a descent direction (slope < 0), got slope = {slope}")
    t = t0
    for k in range(1, max_evals + 1):
        try:
            ft = float(f(x + t * p))
        except FloatingPointError:  # a propagation that blew up for this trial step
            ft = np.inf
        if np.isfinite(ft) and ft <= f0 + c * t * slope and ft < f0:
            return LineSearchResult(t, ft, k, True)
        t *= beta
    return LineSearchResult(0.0, f0, max_evals, False)
