"""Smoothness of the network parameters in time (Haber & Ruthotto 2017, eq. 5.23)."""

from __future__ import annotations

from ..backend import Array
from ..validation import check_array, check_positive
from .base import Regularizer
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
        Number :math:`N \ge 1` of time steps (layers); an integer, not a float.
    n_params_per_step : int
        Number :math:`p \ge 1` of parameters per time step; an integer.
    step_size : float
        Time step :math:`h > 0`, finite.

    Notes
    -----
    ``x`` is the flat parameter vector :math:`\theta` of ``N * p`` entries, a
    float32 or float64 NumPy or CuPy array (any shape with that size is
    accepted and kept; other inputs raise ``TypeError``) whose row-major
    ``(N, p)`` view has one row per time step.
    """

    def __init__(self, n_steps: int, n_params_per_step: int, step_size: float) -> None:
        self.n_steps = check_positive("n_steps", n_steps, integer=True)
        self.n_params_per_step = check_positive("n_params_per_step", n_params_per_step, integer=True)
        self.step_size = check_positive("step_size", step_size)

    def value(self, x: Array) -> float:
        return squared_differences(self._steps(x), (0,)) / (2.0 * self.step_size)

    def hessian_matvec(self, v: Array) -> Array:
        return (laplacian(self._steps(v, "v"), (0,)) / self.step_size).reshape(v.shape)

    def precondition(self, r: Array, shift: float) -> Array:
        r"""Solve :math:`(\frac1h (D^T D) \otimes I_p + \sigma I) z = r` by a DCT-II in time.

        ``shift`` :math:`\sigma` must be positive (:math:`D^T D` is singular).
        """
        shift = check_shift(shift)
        R = self._steps(r, "r")
        diagonal = eigenvalues(R.shape, (0,), R) / self.step_size + shift
        return dct_solve(R, diagonal, (0,)).reshape(r.shape)

    def _steps(self, x: Array, name: str = "x") -> Array:
        """The ``(N, p)`` view of ``x``, a float32/float64 array of ``N p`` entries (else an error naming ``name``)."""
        check_array(name, x, finite=False)
        N, p = self.n_steps, self.n_params_per_step
        if x.size != N * p:
            raise ValueError(
                f"{name} must have n_steps * n_params_per_step = {N} * {p} = {N * p} entries, "
                f"got shape {x.shape}"
            )
        return x.reshape(N, p)
