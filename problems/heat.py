r"""The heat equation as user-defined dynamics: steppers, grid, sensors, exact solutions.

On :math:`x \in (0, 1)` with :math:`u = 0` at both ends, the source is a sum of
:math:`p` known spatial profiles :math:`g_k(x)` with unknown time-dependent
intensities :math:`q_k(t)`:

.. math::

   u_t = \kappa\, u_{xx} + \sum_{k=1}^{p} q_k(t)\, g_k(x), \qquad u(x, 0) = u_0(x).

Space: the :math:`n` interior nodes :math:`x_i = i\,\Delta x`,
:math:`\Delta x = 1/(n + 1)`, and the second difference
:math:`L = \Delta x^{-2} \operatorname{tridiag}(1, -2, 1)` (:func:`laplacian`).
Time: :math:`N` steps of :math:`h = T/N`; the control of step :math:`j` is
:math:`\theta_j = (q_1, \dots, q_p)` on :math:`[t_j, t_{j+1}]`, the source
:math:`f_j = \theta_j G` with the profiles in the rows of :math:`G \in
\mathbb{R}^{p \times n}`. The fields are rows (``s x n``: one row per
right-hand side, all driven by the same source):

* :class:`ExplicitHeat`, forward Euler,
  :math:`u_{j+1} = u_j + h(\kappa L u_j + f_j)`, stable for
  :math:`h \le 2 / (\kappa |\mu_{\max}|) \approx \Delta x^2 / (2\kappa)` only
  (:math:`\mu_{\max}` the Laplacian's largest eigenvalue in modulus;
  :meth:`ExplicitHeat.max_stable_step`);
* :class:`ImplicitHeat`, backward Euler or Crank-Nicolson, one sparse LU
  solve per step, unconditionally stable.

Both are :class:`ocdl.Stepper` subclasses with nothing but the one-step methods;
:class:`ObservedTrajectory` reads sensors at every time step and builds its
derivative from those one-step methods.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

import ocdl
from ocdl.validation import check_positive


def _floats(name: str, values: Any) -> np.ndarray:
    """``values`` as a non-empty 1-D float64 array of finite numbers (positions), or an error naming ``name``."""
    try:
        array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    return array


def grid(n: int) -> np.ndarray:
    r"""The interior nodes :math:`x_i = i/(n + 1)`, :math:`i = 1, \dots, n` (``n`` an integer >= 1)."""
    n = check_positive("n", n, integer=True)
    return np.arange(1, n + 1) / (n + 1)


def laplacian(n: int) -> sp.csc_matrix:
    r""":math:`L = \Delta x^{-2} \operatorname{tridiag}(1, -2, 1)`, the Dirichlet second difference.

    Its eigenvectors are :math:`\sin(k\pi x_i)` with eigenvalues
    :math:`\mu_k = -\frac{4}{\Delta x^2} \sin^2\frac{k \pi \Delta x}{2}
    = -(k\pi)^2 + O(\Delta x^2)`.
    """
    dx = 1.0 / (check_positive("n", n, integer=True) + 1)
    return sp.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n), format="csc") / dx**2


def laplacian_eigenvalue(n: int, k: int) -> float:
    r"""The eigenvalue :math:`\mu_k = -\frac{4}{\Delta x^2}\sin^2\frac{k\pi\Delta x}{2}` of :func:`laplacian`."""
    dx = 1.0 / (n + 1)
    return -4.0 / dx**2 * np.sin(k * np.pi * dx / 2.0) ** 2


def gaussian_profiles(x: np.ndarray, centres: Any, width: float) -> np.ndarray:
    r"""Source profiles :math:`g_k(x) = \exp(-(x - c_k)^2 / (2 w^2))`, one per row (``p x n``).

    ``centres``: one or more finite numbers; ``width``: :math:`w > 0`.
    """
    centres = _floats("centres", centres)
    width = check_positive("width", width)
    return np.exp(-((x[None, :] - centres[:, None]) ** 2) / (2.0 * width**2))


def sensor_matrix(x: np.ndarray, sensors: Any) -> sp.csr_matrix:
    r"""Linear interpolation :math:`P \in \mathbb{R}^{m \times n}` from the nodes ``x`` to the sensors.

    The boundary values are zero, so a sensor between the wall and the first
    (last) node weighs that node only. ``sensors``: one or more positions in :math:`[0, 1]`.
    """
    sensors = _floats("sensors", sensors)
    nodes = np.concatenate([[0.0], x, [1.0]])  # with the Dirichlet walls
    if sensors.min() < 0.0 or sensors.max() > 1.0:
        raise ValueError(f"sensors must lie in [0, 1], got {sensors}")
    right = np.clip(np.searchsorted(nodes, sensors, side="right"), 1, len(nodes) - 1)
    left = right - 1
    w_right = (sensors - nodes[left]) / (nodes[right] - nodes[left])
    rows = np.concatenate([np.arange(len(sensors))] * 2)
    cols = np.concatenate([left, right]) - 1  # node index -> interior index
    vals = np.concatenate([1.0 - w_right, w_right])
    keep = (cols >= 0) & (cols < len(x))
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(len(sensors), len(x)))


def _times_transpose(U: np.ndarray, A: sp.spmatrix) -> np.ndarray:
    """``U A^T`` for rows ``U`` (``s x n``): ``A`` applied to every row."""
    return (A @ U.T).T


class _HeatStepper(ocdl.Stepper):
    """What both schemes share: the grid, the profiles ``G`` and the source terms.

    The matrices are float64; a float32 state or control meets float32 copies of them
    (:meth:`matrix`, made once per dtype), so that float32 fields stay float32.
    """

    def __init__(self, n: int, kappa: float, profiles: np.ndarray) -> None:
        n = check_positive("n", n, integer=True)
        profiles = np.atleast_2d(np.asarray(profiles, dtype=np.float64))
        if profiles.ndim != 2 or profiles.shape[1] != n:
            raise ValueError(f"profiles must be p x n = p x {n}, got shape {profiles.shape}")
        kappa = check_positive("kappa", kappa)
        self.n_features = int(n)
        self.kappa = float(kappa)
        self.G = profiles
        self.n_params = profiles.shape[0]
        self.L = laplacian(n)
        self.LT = self.L.T.tocsc()
        self._copies: dict = {}

    def matrix(self, name: str, dtype: Any) -> Any:
        """The attribute ``name`` (``"G"``, ``"L"``, ``"LT"``) in ``dtype``: float64 itself, else a copy kept."""
        if np.dtype(dtype) == np.float64:
            return getattr(self, name)
        key = (name, np.dtype(dtype))
        if key not in self._copies:
            self._copies[key] = getattr(self, name).astype(dtype)
        return self._copies[key]

    def source(self, theta: np.ndarray) -> np.ndarray:
        r""":math:`f_j = \theta_j G` (``1 x n``, added to every row of the state)."""
        return (theta @ self.matrix("G", theta.dtype))[None, :]

    def source_vjp(self, lam: np.ndarray) -> np.ndarray:
        r"""Transpose of :meth:`source` over all rows: :math:`G \sum_i \lambda_i`."""
        return self.matrix("G", lam.dtype) @ lam.sum(axis=0)

    def max_stable_step(self) -> float:
        r"""Forward Euler's limit :math:`h \le 2 / (\kappa |\mu_n|) \approx \Delta x^2 / (2\kappa)`."""
        return 2.0 / (self.kappa * abs(float(laplacian_eigenvalue(self.n_features, self.n_features))))

    def init_params(self, rng, scale=1.0, dtype=None):
        return scale * rng.standard_normal(self.n_params).astype(np.float64 if dtype is None else dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n_features}, kappa={self.kappa:g}, p={self.n_params})"


class ExplicitHeat(_HeatStepper):
    r"""Forward Euler on the heat equation:

    .. math::  u_{j+1} = u_j + h\,(\kappa L u_j + \theta_j G).

    Linear in :math:`(u_j, \theta_j)`, so the jvp is the step itself without the
    data, :math:`du_{j+1} = du_j + h(\kappa L\, du_j + d\theta_j G)`, and the
    vjp its transpose, :math:`\lambda_j = \lambda_{j+1} + h\kappa L^T
    \lambda_{j+1}`, :math:`g_j = h\, G \sum_i \lambda_{j+1, i}`. The
    amplification of the mode :math:`\sin(k\pi x)` is :math:`1 + h\kappa\mu_k`;
    for the highest mode it falls below :math:`-1` (growth) once
    :math:`h > 2/(\kappa|\mu_n|) \approx \Delta x^2/(2\kappa)`
    (:meth:`max_stable_step`).
    """

    def step(self, state, theta, h):
        (U,) = state
        return (U + h * (self.kappa * _times_transpose(U, self.matrix("L", U.dtype)) + self.source(theta)),), None

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (dU,) = dstate
        return (dU + h * (self.kappa * _times_transpose(dU, self.matrix("L", dU.dtype)) + self.source(dtheta)),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Lam,) = lam
        return (Lam + h * self.kappa * _times_transpose(Lam, self.matrix("LT", Lam.dtype)),), h * self.source_vjp(Lam)


class ImplicitHeat(_HeatStepper):
    r"""The implicit theta-scheme with weight :math:`w` (1: backward Euler, 1/2: Crank-Nicolson):

    .. math::

       A u_{j+1} = B u_j + h\,\theta_j G, \qquad
       A = I - w h\kappa L, \quad B = I + (1 - w) h\kappa L.

    The jvp is the same solve, :math:`A\, du_{j+1} = B\, du_j + h\, d\theta_j G`;
    the vjp a transposed solve, :math:`A^T \mu = \lambda_{j+1}`,
    :math:`\lambda_j = B^T \mu`, :math:`g_j = h\, G \sum_i \mu_i`. :math:`A`
    is factored (sparse LU) once per step size and reused by every step,
    jvp and vjp. Unconditionally stable (:math:`|1 + (1-w)h\kappa\mu| \le
    |1 - w h\kappa\mu|` for :math:`w \ge 1/2`); backward Euler is first,
    Crank-Nicolson second order in :math:`h`.
    """

    SCHEMES = {"backward-euler": 1.0, "crank-nicolson": 0.5}

    def __init__(self, n: int, kappa: float, profiles: np.ndarray, scheme: str = "backward-euler") -> None:
        if scheme not in self.SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(self.SCHEMES)}, got {scheme!r}")
        super().__init__(n, kappa, profiles)
        self.scheme = scheme
        self.weight = self.SCHEMES[scheme]
        self._operators: dict[tuple, tuple] = {}

    def operators(self, h: float, dtype: Any = np.float64) -> tuple:
        """``(lu(A), B, B^T)`` for step ``h`` in ``dtype`` (SuperLU factors float32 too), factored on first use
        and kept."""
        key = (h, np.dtype(dtype))
        if key not in self._operators:
            identity = sp.identity(self.n_features, format="csc")
            A = (identity - self.weight * h * self.kappa * self.L).tocsc().astype(dtype)
            B = (identity + (1.0 - self.weight) * h * self.kappa * self.L).tocsc().astype(dtype)
            self._operators[key] = (splu(A), B, B.T.tocsc())
        return self._operators[key]

    def _solve(self, U: np.ndarray, h: float, trans: str = "N") -> np.ndarray:
        """``A^{-1}`` (``trans="N"``) or ``A^{-T}`` (``"T"``) applied to every row of ``U``."""
        return self.operators(h, U.dtype)[0].solve(np.ascontiguousarray(U.T), trans=trans).T

    def step(self, state, theta, h):
        (U,) = state
        B = self.operators(h, U.dtype)[1]
        return (self._solve(_times_transpose(U, B) + h * self.source(theta), h),), None

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (dU,) = dstate
        B = self.operators(h, dU.dtype)[1]
        return (self._solve(_times_transpose(dU, B) + h * self.source(dtheta), h),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Lam,) = lam
        BT = self.operators(h, Lam.dtype)[2]
        mu = self._solve(Lam, h, trans="T")
        return (_times_transpose(mu, BT),), h * self.source_vjp(mu)

    def __repr__(self) -> str:
        return f"ImplicitHeat(n={self.n_features}, kappa={self.kappa:g}, p={self.n_params}, scheme={self.scheme!r})"


class ObservedTrajectory:
    r"""Sensor readings at every time step, :math:`F(\theta) = (P u_1, \dots, P u_N)`.

    The generic :class:`ocdl.Network` returns :math:`u_N` only; this operator
    observes the whole trajectory. Its derivatives are built from the
    stepper's one-step methods over the states of one
    :meth:`ocdl.Network.trajectory`:

    * :meth:`jvp`: :math:`du_0 = 0`,
      :math:`du_{j+1} = \partial_u\Phi_j\, du_j + \partial_\theta\Phi_j\, d\theta_j`,
      :math:`dd_{j+1} = P\, du_{j+1}`;
    * :meth:`vjp`: :math:`\lambda_N = P^T w_N`,
      :math:`(\lambda_j, g_j) = (\partial_u\Phi_j^T, \partial_\theta\Phi_j^T)\,\lambda_{j+1}`,
      then :math:`\lambda_j \mathrel{+}= P^T w_j` for :math:`j \ge 1`.

    Readings have shape ``(s, N, m)``: right-hand side, time step
    :math:`t_1, \dots, t_N`, sensor.
    """

    def __init__(self, network: ocdl.Network, P: Any) -> None:
        if P.shape[1] != network.stepper.n_features:
            raise ValueError(f"P must have n = {network.stepper.n_features} columns, got shape {P.shape}")
        self.network = network
        self.P = P
        self.PT = P.T

    def _observe(self, state: tuple) -> np.ndarray:
        U = self.network.stepper.output(state)
        return _times_transpose(U, self.P).astype(U.dtype, copy=False)  # P is float64: float32 fields stay float32

    def trajectory(self, theta: np.ndarray, U0: np.ndarray) -> ocdl.Trajectory:
        """The forward states (one :meth:`ocdl.Network.trajectory`), reusable by :meth:`jvp` and :meth:`vjp`."""
        return self.network.trajectory(theta, U0)

    def _trajectory(self, theta, U0, trajectory):
        """A context giving ``trajectory``, or a fresh one that is closed on exit."""
        return self.trajectory(theta, U0) if trajectory is None else nullcontext(trajectory)

    def forward(self, theta: np.ndarray, U0: np.ndarray, trajectory: ocdl.Trajectory | None = None) -> np.ndarray:
        r"""The readings :math:`d_j = P u_j`, :math:`j = 1, \dots, N` (``s x N x m``)."""
        with self._trajectory(theta, U0, trajectory) as traj:
            states = [state for j, state, _ in traj.steps() if j > 0] + [traj.final_state]
            return np.stack([self._observe(state) for state in states], axis=1)

    def jvp(self, theta: np.ndarray, U0: np.ndarray, dtheta: np.ndarray, trajectory=None) -> np.ndarray:
        """:math:`F'(\\theta)\\, d\\theta` by forward substitution through ``step_jvp``."""
        net, stepper = self.network, self.network.stepper
        steps, dsteps = net.theta_steps(theta), net.theta_steps(dtheta)
        dstate = stepper.init(np.zeros_like(U0))
        readings = []
        with self._trajectory(theta, U0, trajectory) as traj:
            for j, state, cache in traj.steps():
                dstate = stepper.step_jvp(state, steps[j], net.h, dstate, dsteps[j], cache)
                readings.append(self._observe(dstate))
        return np.stack(readings, axis=1)

    def vjp(self, theta: np.ndarray, U0: np.ndarray, lam: np.ndarray, trajectory=None) -> np.ndarray:
        """:math:`F'(\\theta)^T \\lambda` by backward substitution through ``step_vjp``.

        ``lam`` is the cotangent of the readings, shaped like :meth:`forward`'s result.
        """
        net, stepper = self.network, self.network.stepper
        steps = net.theta_steps(theta)
        grad = np.empty_like(steps)
        with self._trajectory(theta, U0, trajectory) as traj:
            final = traj.final_state
            lam_state = tuple(np.zeros_like(x) for x in final)
            for j, state, cache in traj.reversed_steps():
                reading = stepper.output_vjp(final, _times_transpose(lam[:, j], self.PT).astype(lam.dtype, copy=False))
                lam_state = tuple(a + b for a, b in zip(lam_state, reading))
                lam_state, grad[j] = stepper.step_vjp(state, steps[j], net.h, lam_state, cache)
        return grad.ravel()


def eigenmode_solution(x: np.ndarray, t: float, kappa: float, k: int = 1) -> np.ndarray:
    r"""The exact source-free solution :math:`u = \sin(k\pi x)\, e^{-\kappa (k\pi)^2 t}` from :math:`\sin(k\pi x)`."""
    return np.sin(k * np.pi * x) * np.exp(-kappa * (k * np.pi) ** 2 * t)
