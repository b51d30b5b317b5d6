r"""Recovering a time-dependent heat source from sensor readings (Tikhonov, Gauss-Newton-PCG).

The forward problem is :mod:`ocdl.problems.heat`; the unknown is the control
:math:`\theta = (\theta_0, \dots, \theta_{N-1})`, :math:`\theta_j \in \mathbb{R}^p`
the intensities of the :math:`p` source profiles on step :math:`j`, and the
data are noisy readings :math:`d = F(\theta_{\rm true}) + e` of
:math:`m` sensors at :math:`t_1, \dots, t_N`. The Tikhonov problem

.. math::

   \min_\theta\ \Phi_\alpha(\theta) = \tfrac12 \|F(\theta) - d\|^2 + \alpha R(\theta),
   \qquad R(\theta) = \frac{1}{2h} \sum_{j=1}^{N-1} \|\theta_j - \theta_{j-1}\|^2

(:class:`ocdl.TimeSmoothness`) is solved by :func:`ocdl.solvers.gauss_newton_pcg`
with the Gauss-Newton matrix :math:`F'^T F' + \alpha \nabla^2 R` and the
preconditioner :math:`(\alpha \nabla^2 R + \sigma I)^{-1}` (a DCT in time),
:math:`\sigma` the mean diagonal of :math:`F'^T F'`; :math:`\alpha` is chosen by
the discrepancy principle :math:`\|F(\theta_\alpha) - d\| = \tau\delta`
(:func:`ocdl.solvers.discrepancy_principle`). :func:`ocdl.solvers.steepest_descent`
solves the same problem for comparison. This module builds the problem and knows
nothing of the solvers.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from ocdl.problems.heat import (
    ExplicitHeat,
    ImplicitHeat,
    ObservedTrajectory,
    gaussian_profiles,
    grid,
    sensor_matrix,
)

import ocdl
from ocdl.validation import check_array, check_dtype_of, check_nonnegative, check_positive, random_generator


def true_intensities(t: np.ndarray) -> np.ndarray:
    r"""The source intensities to recover (``len(t) x 2``):

    .. math::  q_1(t) = 1 + \tfrac12 \sin(2\pi t), \qquad q_2(t) = 2\, e^{-((t - 0.55)/0.15)^2}.
    """
    return np.stack([1.0 + 0.5 * np.sin(2.0 * np.pi * t), 2.0 * np.exp(-(((t - 0.55) / 0.15) ** 2))], axis=1)


class HeatSource:
    r"""The experiment: grid, sources, sensors, scheme, and the observation operator :math:`F`.

    Parameters
    ----------
    n : interior grid nodes (:math:`\Delta x = 1/(n+1)`).
    n_steps, final_time : :math:`N` and :math:`T` (:math:`h = T/N`).
    kappa : diffusivity :math:`\kappa`.
    centres, width : the Gaussian source profiles (:func:`ocdl.problems.heat.gaussian_profiles`).
    sensors : sensor positions in :math:`[0, 1]`.
    scheme : ``"forward-euler"``, ``"backward-euler"`` or ``"crank-nicolson"``.
    dtype : ``numpy.float64`` (default) or ``numpy.float32``: of the fields, the
        controls and the readings.

    The initial temperature is :math:`u_0 = 0`, and the true control samples
    :func:`true_intensities` at the midpoints :math:`t_{j+1/2}`.
    """

    def __init__(
        self,
        n: int = 63,
        n_steps: int = 100,
        final_time: float = 1.0,
        kappa: float = 0.05,
        centres: tuple = (0.3, 0.7),
        width: float = 0.05,
        sensors: tuple = (0.2, 0.4, 0.6, 0.8),
        scheme: str = "crank-nicolson",
        dtype: Any = np.float64,
    ) -> None:
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.x = grid(n)
        profiles = gaussian_profiles(self.x, centres, width)
        if scheme == "forward-euler":
            self.stepper = ExplicitHeat(n, kappa, profiles)
        else:
            self.stepper = ImplicitHeat(n, kappa, profiles, scheme)
        self.network = ocdl.Network(self.stepper, n_steps, final_time)
        self.sensors = np.asarray(sensors, dtype=np.float64)
        self.observations = ObservedTrajectory(self.network, sensor_matrix(self.x, self.sensors))
        self.U0 = np.zeros((1, n), dtype=self.dtype)
        self.t = np.linspace(0.0, final_time, n_steps + 1)

    @property
    def n_params(self) -> int:
        return self.network.n_params

    def true_theta(self) -> np.ndarray:
        r""":math:`\theta_j = q(t_{j+1/2})`, flat (``N p``)."""
        return true_intensities(0.5 * (self.t[:-1] + self.t[1:])).ravel().astype(self.dtype)

    def intensities(self, theta: np.ndarray) -> np.ndarray:
        """The ``(N, p)`` view of a control: one row per step, one column per source."""
        return self.network.theta_steps(theta)

    def forward(self, theta: np.ndarray) -> np.ndarray:
        """Sensor readings ``(N, m)`` of the control ``theta`` (one right-hand side)."""
        return self.observations.forward(theta, self.U0)[0]

    def noisy_data(
        self, level: float, rng: np.random.Generator | int | None = 0, refine: int = 1
    ) -> tuple[np.ndarray, float]:
        r"""Readings of the truth plus Gaussian noise of relative level ``level``, and :math:`\delta`.

        The clean readings come from ``refine`` times more steps of the same
        scheme, each :math:`\theta_j` held over its ``refine`` sub-steps, read
        at :math:`t_1, \dots, t_N` (``refine > 1``: no inverse crime in time;
        ``refine = 1``: the data are :math:`F(\theta_{\rm true})` exactly).
        The noise is i.i.d. :math:`e_i \sim \mathcal N(0, \varsigma^2)` with
        :math:`\varsigma = \text{level}\, \|d\| / \sqrt{M}` over the
        :math:`M = Nm` readings, so that :math:`E\|e\|^2 = \delta^2`,
        :math:`\delta = \text{level}\, \|d\|`. ``level`` is a number >= 0, ``refine`` an integer >= 1.
        """
        level = check_nonnegative("level", level)
        refine = check_positive("refine", refine, integer=True)
        fine = ObservedTrajectory(self.network.with_steps(refine * self.network.n_steps), self.observations.P)
        theta = np.repeat(self.intensities(self.true_theta()), refine, axis=0).ravel()
        clean = fine.forward(theta, self.U0)[0, refine - 1 :: refine]
        delta = level * float(np.linalg.norm(clean))
        noise = random_generator("rng", rng).standard_normal(clean.shape) * delta / np.sqrt(clean.size)
        return (clean + noise).astype(self.dtype), delta


class Tikhonov:
    r"""The Tikhonov functional :math:`\Phi_\alpha(\theta) = \frac12 \|F(\theta) - d\|^2 + \alpha R(\theta)`.

    In the problem protocol of :mod:`ocdl.solvers.newton`, ``model(theta)`` runs
    the forward problem once and returns the value, the gradient
    :math:`F'^T r + \alpha \nabla R`, the Gauss-Newton product
    :math:`v \mapsto F'^T F' v + \alpha \nabla^2 R\, v` (a tangent and an
    adjoint sweep over the stored states), the preconditioner
    :math:`r \mapsto (\alpha \nabla^2 R + \sigma I)^{-1} r` and the misfit
    :math:`\|r\|`, :math:`r = F(\theta) - d`. ``n_solves`` counts the
    forward, tangent and adjoint sweeps (each :math:`N` steps).

    ``sigma`` defaults to the mean diagonal :math:`\operatorname{tr}(F'^T F')/(Np)`,
    estimated from 4 random probes :math:`E\|F' z\|^2` (Hutchinson).

    ``data`` are the ``(N, m)`` readings (:meth:`HeatSource.noisy_data`) in the setup's
    dtype, finite; ``alpha`` and ``sigma`` are positive numbers. ``theta0`` is the zero
    control, the solvers' starting point.
    """

    def __init__(self, setup: HeatSource, data: np.ndarray, alpha: float, sigma: float | None = None) -> None:
        if not isinstance(setup, HeatSource):
            raise TypeError(f"setup must be a HeatSource, got {type(setup).__name__}")
        readings = (setup.network.n_steps, len(setup.sensors))
        check_dtype_of("data", check_array("data", data, shape=readings), "the setup's fields", setup.U0)
        self.setup = setup
        self.obs = setup.observations
        self.data = data[None]  # one right-hand side
        self.alpha = float(check_positive("alpha", alpha))
        net = setup.network
        self.regularizer = ocdl.TimeSmoothness(net.n_steps, net.stepper.n_params, net.h)
        self.n_solves = 0
        self.sigma = self._mean_curvature() if sigma is None else float(check_positive("sigma", sigma))

    @property
    def theta0(self) -> np.ndarray:
        """The zero control in the setup's dtype: the first solve's starting point."""
        return np.zeros(self.setup.n_params, dtype=self.setup.dtype)

    def with_alpha(self, alpha: float) -> Tikhonov:
        """The same data and preconditioner shift with another weight :math:`\\alpha`."""
        return Tikhonov(self.setup, self.data[0], alpha, self.sigma)

    def _mean_curvature(self, n_probes: int = 4) -> float:
        theta = self.theta0
        rng = np.random.default_rng(0)
        with self.obs.trajectory(theta, self.setup.U0) as traj:
            sq = [
                np.sum(self.obs.jvp(theta, self.setup.U0, rng.choice([-1.0, 1.0], theta.size).astype(theta.dtype),
                                    traj).astype(np.float64) ** 2)
                for _ in range(n_probes)
            ]
        return float(np.mean(sq)) / theta.size

    def misfit(self, theta: np.ndarray) -> float:
        r""":math:`\|F(\theta) - d\|`."""
        self.n_solves += 1
        return float(np.linalg.norm(self.obs.forward(theta, self.setup.U0) - self.data))

    def value(self, theta: np.ndarray) -> float:
        return 0.5 * self.misfit(theta) ** 2 + self.alpha * self.regularizer.value(theta)

    def model(self, theta: np.ndarray) -> SimpleNamespace:
        obs, U0, R, alpha = self.obs, self.setup.U0, self.regularizer, self.alpha
        traj = obs.trajectory(theta, U0)
        r = obs.forward(theta, U0, traj) - self.data
        self.n_solves += 2

        def hessian_matvec(v):
            self.n_solves += 2
            return obs.vjp(theta, U0, obs.jvp(theta, U0, v, traj), traj) + alpha * R.hessian_matvec(v)

        misfit = float(np.linalg.norm(r))
        return SimpleNamespace(
            value=0.5 * misfit**2 + alpha * R.value(theta),
            gradient=obs.vjp(theta, U0, r, traj) + alpha * R.gradient(theta),
            hessian_matvec=hessian_matvec,
            precondition=lambda res: R.precondition(res, self.sigma / alpha) / alpha,
            metrics=lambda: {"misfit": misfit, "n_solves": self.n_solves},
        )
