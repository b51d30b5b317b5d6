r"""Choosing the regularisation weight :math:`\alpha` by Morozov's discrepancy principle.

The problem protocol: ``problem.with_alpha(alpha)`` is the Tikhonov problem
:math:`\min_\theta \tfrac12\|F(\theta) - d\|^2 + \alpha R(\theta)` in the
protocol of :mod:`ocdl.solvers.newton`, ``problem.misfit(theta)`` is
:math:`\|F(\theta) - d\|`, ``problem.sigma`` a weight at which the regulariser
outweighs the data, and ``problem.setup.n_params`` the size of :math:`\theta`
(:class:`ocdl.problems.heat_inverse.Tikhonov` is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ocdl.validation import check_above, check_nonnegative, check_positive

from .newton import gauss_newton_pcg


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
    :math:`\sigma`, where the regulariser outweighs the data) divide by
    ``factor`` until the misfit is at most :math:`\tau\delta`, then bisect
    :math:`\log\alpha` ``n_bisect`` times in the last bracket; each solve is
    :func:`ocdl.solvers.gauss_newton_pcg` warm-started from the previous one.
    Returns the largest :math:`\alpha` found with misfit :math:`\le \tau\delta`.

    Raises
    ------
    ValueError
        If ``delta``, ``tau`` or ``alpha0`` is not a positive number, ``factor``
        not a number > 1 or ``n_bisect`` not an integer >= 0 (naming it).
    RuntimeError
        If the misfit stays above :math:`\tau\delta` down to
        :math:`\alpha = 10^{-12}\sigma` (the noise level ``delta`` is too small).
    """
    target = check_positive("tau", tau) * check_positive("delta", delta)
    factor = check_above("factor", factor, 1.0)  # alpha is divided by it
    n_bisect = check_nonnegative("n_bisect", n_bisect, integer=True)
    options = {"max_iter": 10, "gtol": 1e-6, "cg_maxiter": 200, "cg_rtol": 1e-7} | gn_options
    path = []

    def solve(alpha: float, x0: np.ndarray) -> tuple[float, np.ndarray]:
        result = gauss_newton_pcg(problem.with_alpha(alpha), x0, **options)
        path.append((alpha, problem.misfit(result.x), result.x))
        return path[-1][1], result.x

    alpha = problem.sigma if alpha0 is None else check_positive("alpha0", alpha0)
    misfit, x = solve(alpha, np.zeros(problem.setup.n_params))
    while misfit > target:
        if alpha < 1e-12 * problem.sigma:
            raise RuntimeError(f"misfit {misfit:.3g} stays above tau * delta = {target:.3g}: delta too small?")
        alpha /= factor
        misfit, x = solve(alpha, x)
    good, good_misfit, good_x = alpha, misfit, x  # misfit <= tau delta
    if len(path) > 1:  # bisect log(alpha) in [good, good * factor]
        bad = good * factor
        for _ in range(n_bisect):
            mid = np.sqrt(good * bad)
            misfit, x = solve(mid, good_x)
            if misfit <= target:
                good, good_misfit, good_x = mid, misfit, x
            else:
                bad = mid
    return DiscrepancyResult(good, good_x, good_misfit, target, path)
