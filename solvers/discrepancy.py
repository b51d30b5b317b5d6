r"""Choosing the regularisation weight :math:`\alpha` by Morozov's discrepancy principle.

The problem protocol: ``problem.with_alpha(alpha)`` is the Tikhonov problem
:math:`\min_\theta \tfrac12\|F(\theta) - d\|^2 + \alpha R(\theta)` in the
protocol of :mod:`ocdl.solvers.newton`, ``problem.misfit(theta)`` is
:math:`\|F(\theta) - d\|`, ``problem.sigma`` a weight about where the regulariser
outweighs the data, and ``problem.theta0`` the first solve's starting point
(:class:`ocdl.problems.heat_inverse.Tikhonov` is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ocdl.validation import check_above, check_nonnegative, check_positive

from .newton import gauss_newton_pcg
from .result import rounding_floor


@dataclass
class DiscrepancyResult:
    r"""The discrepancy-principle choice: the largest tried :math:`\alpha` with misfit :math:`\le \tau\delta`.

    ``target`` is :math:`\tau\delta`; ``path`` lists ``(alpha, misfit, theta)`` for every
    :math:`\alpha` solved, in order.
    """

    alpha: float
    theta: np.ndarray
    misfit: float
    target: float
    path: list[tuple[float, float, np.ndarray]] = field(default_factory=list)


def discrepancy_principle(
    problem,
    delta: float,
    tau: float = 1.1,
    alpha0: float | None = None,
    factor: float = 10.0,
    n_bisect: int = 4,
    **gn_options,
) -> DiscrepancyResult:
    r"""Choose :math:`\alpha` with :math:`\|F(\theta_\alpha) - d\| \approx \tau\delta` (Morozov).

    The misfit grows with :math:`\alpha`. From ``alpha0`` (default the shift
    :math:`\sigma`, about where the regulariser outweighs the data) divide by
    ``factor`` while the misfit is above :math:`\tau\delta`, or, where the first
    solve already fits to :math:`\tau\delta`, multiply by ``factor`` until it does
    not (up to :math:`10^{12}\sigma`); then bisect :math:`\log\alpha` ``n_bisect``
    times in the last bracket. Each solve is :func:`ocdl.solvers.gauss_newton_pcg`
    warm-started from the previous one (the first from ``problem.theta0``), with
    ``max_iter=10, cg_maxiter=200, cg_rtol=1e-7`` and its default ``gtol`` (1e-6) unless ``gn_options``
    say otherwise (in float32 ``gtol`` and ``cg_rtol`` :math:`\sqrt{\epsilon} = 3.5 \cdot 10^{-4}`:
    float32 levels off above 1e-6, and the solves would run to ``max_iter``).
    Returns the largest :math:`\alpha` found with misfit :math:`\le \tau\delta`.

    Raises
    ------
    ValueError
        If ``delta`` or ``alpha0`` is not a positive number, ``tau`` not a number
        > 1 (the exact parameters' misfit is about :math:`\delta`), ``factor`` not a
        number > 1 or ``n_bisect`` not an integer >= 0 (naming it).
    FloatingPointError
        If a solve ends with a NaN or Inf misfit (NaN in the data, a blow-up),
        naming :math:`\alpha` and the solver's message.
    RuntimeError
        If the misfit stays above :math:`\tau\delta` down to
        :math:`\alpha = 10^{-12}\sigma` (the noise level ``delta`` is too small).
    """
    target = check_above("tau", tau, 1.0) * check_positive("delta", delta)
    factor = check_above("factor", factor, 1.0)  # alpha is divided or multiplied by it
    n_bisect = check_nonnegative("n_bisect", n_bisect, integer=True)
    alpha = problem.sigma if alpha0 is None else check_positive("alpha0", alpha0)
    theta0 = problem.theta0
    # float32 cannot resolve 1e-7 (3e-4; float64 1.5e-8); gtol: the solver's default
    options = {"max_iter": 10, "cg_maxiter": 200, "cg_rtol": max(1e-7, rounding_floor(theta0.dtype))}
    options |= gn_options
    path = []

    def solve(alpha: float, x0: np.ndarray) -> tuple[float, np.ndarray]:
        result = gauss_newton_pcg(problem.with_alpha(alpha), x0, **options)
        misfit = problem.misfit(result.x)
        if not np.isfinite(misfit):
            raise FloatingPointError(f"the misfit at alpha = {alpha:.3g} is {misfit} (NaN or Inf in the data or "
                                     f"the solve?); gauss_newton_pcg: {result.message}")
        path.append((alpha, misfit, result.x))
        return misfit, result.x

    misfit, x = solve(alpha, theta0)
    if misfit <= target:  # fits already: the largest such alpha lies above
        good, good_misfit, good_x = alpha, misfit, x
        while misfit <= target and alpha < 1e12 * problem.sigma:
            alpha *= factor
            misfit, x = solve(alpha, good_x)
            if misfit <= target:
                good, good_misfit, good_x = alpha, misfit, x
        bad = alpha if misfit > target else None
    else:
        while misfit > target:
            if alpha < 1e-12 * problem.sigma:
                raise RuntimeError(f"misfit {misfit:.3g} stays above tau * delta = {target:.3g}: delta too small?")
            alpha /= factor
            misfit, x = solve(alpha, x)
        good, good_misfit, good_x, bad = alpha, misfit, x, alpha * factor
    if bad is not None:  # bisect log(alpha) in [good, bad]
        for _ in range(n_bisect):
            mid = np.sqrt(good * bad)
            misfit, x = solve(mid, good_x)
            if misfit <= target:
                good, good_misfit, good_x = mid, misfit, x
            else:
                bad = mid
    return DiscrepancyResult(good, good_x, good_misfit, target, path)
