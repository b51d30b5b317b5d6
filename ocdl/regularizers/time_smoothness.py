"""Smoothness of the network parameters in time (Haber & Ruthotto 2017, eq. 5.23)."""

from __future__ import annotations

from .base import Array, Regularizer
from .neumann import check_shift, dct_solve, eigenvalues, laplacian, squared_differences


class TimeSmoothness(Regularizer):
    r"""Squared time derivative of the layer parameters, eq. (5.23):

    .. math::

       R(\theta) = \frac{1}{2h} \sum_{j=1}^{N-1} \|\theta_j - \theta_{j-1}\|^2
                 = \frac12 \theta^T \Big(\frac1h (D^T D) \otimes I_p\Big) \theta,

    where :math:`\theta_j \in \mathbb{R}^p` holds all parameters of time step
    :math:`j` (:math:`K_j` and :math:`b_j`) and :math:`D \in \mathbb{R}^{(N-1)
    \times N}` is the forward difference in time. :math:`D^T D` is the 1-D
    Neumann Laplacian, with eigenvalues :math:`2 - 2\cos(\pi k/N)`,
    :math:`k = 0, \dots, N-1`, diagonalised by the DCT-II along the time axis,
    which :meth:`precondition` uses.

    Parameters
    ----------
    n_steps : int
        Number :math:`N` of time steps (layers).
    n_params_per_step : int
        Number :math:`p` of parameters per time step.
    step_size : float
        Time step :math:`h > 0`.

    Notes
    -----
    ``x`` is the flat parameter vector :math:`\theta` of ``N * p`` entries (any
    shape with that size is accepted and kept) whose row-major ``(N, p)`` view
    has one row per time step.
    """

    def __init__(self, n_steps: int, n_params_per_step: int, step_size: float) -> None:
        if n_steps < 1 or n_params_per_step < 1:
            raise ValueError(
                f"n_steps and n_params_per_step must be positive, got {n_steps} and "
                f"{n_params_per_step}"
            )
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.n_steps = int(n_steps)
        self.n_params_per_step = int(n_params_per_step)
        self.step_size = float(step_size)

    def value(self, x: Array) -> float:
        return squared_differences(self._steps(x), (0,)) / (2.0 * self.step_size)

    def hessian_matvec(self, v: Array) -> Array:
        return (laplacian(self._steps(v), (0,)) / self.step_size).reshape(v.shape)

    def precondition(self, r: Array, shift: float) -> Array:
        r"""Solve :math:`(\frac1h (D^T D) \otimes I_p + \sigma I) z = r` by a DCT-II in time.

        ``shift`` :math:`\sigma` must be positive (:math:`D^T D` is singular).
        """
        check_shift(shift)
        R = self._steps(r)
        diagonal = eigenvalues(R.shape, (0,), R) / self.step_size + shift
        return dct_solve(R, diagonal, (0,)).reshape(r.shape)

    def _steps(self, x: Array) -> Array:
        N, p = self.n_steps, self.n_params_per_step
        if x.size != N * p:
            raise ValueError(
                f"x must have n_steps * n_params_per_step = {N} * {p} = {N * p} entries, "
                f"got shape {x.shape}"
            )
        return x.reshape(N, p)
