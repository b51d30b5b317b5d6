"""Spatial smoothness of the classifier weights (Haber & Ruthotto 2017, eq. 5.25)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..backend import Array
from ..validation import check_array, is_integer
from .base import Regularizer
from .neumann import check_shift, dct_solve, eigenvalues, laplacian, squared_differences

OPERATORS = ("laplacian", "gradient")


class SpatialSmoothness(Regularizer):
    r"""Smoothness of the classifier weights as images on a grid, eq. (5.25):

    .. math::

       R(W) = \frac12 \sum_{k=1}^m \|L w_k\|^2, \qquad H = L^T L
       \text{ (applied to every column)},

    with :math:`w_k` the columns of :math:`W \in \mathbb{R}^{n \times m}`, each
    seen as an array of ``grid_shape`` in row-major order (the order in which
    images of shape ``(channels, height, width)`` are flattened into the rows of
    :math:`Y`), :math:`n` = ``prod(grid_shape)``. With :math:`D_a` the forward
    difference along grid axis :math:`a` (unit grid spacing, no differences
    across the boundary, i.e. homogeneous Neumann conditions; axes of length 1,
    e.g. a single channel, contribute nothing):

    * ``operator="gradient"``: :math:`L = (D_1; D_2; \dots)` stacked, so
      :math:`R = \frac12 \sum_a \|D_a w\|^2` and :math:`L^T L = \Delta_N
      := \sum_a D_a^T D_a` (the negative Neumann Laplacian);
    * ``operator="laplacian"``: :math:`L = \Delta_N`, so :math:`L^T L = \Delta_N^2`.

    Differences are taken along every grid axis, channels included. The grid
    spacing is 1 (its scaling is absorbed by the regularization parameter).
    :math:`\Delta_N` is diagonalised by the multidimensional orthonormal DCT-II
    with eigenvalues

    .. math::

       \lambda_{k} = \sum_a \big(2 - 2\cos(\pi k_a / n_a)\big), \qquad
       0 \le k_a < n_a,

    so :math:`L^T L` has eigenvalues :math:`\lambda_k` (gradient) or
    :math:`\lambda_k^2` (Laplacian); :meth:`precondition` divides by
    :math:`\lambda_k + \sigma` (resp. :math:`\lambda_k^2 + \sigma`) in that basis.

    Parameters
    ----------
    grid_shape : sequence of int
        Shape of one column of ``W`` as a grid, e.g. ``(28, 28)`` or ``(1, 28, 28)``;
        positive integers (a float such as ``2.5`` is an error, not truncated).
    operator : {"laplacian", "gradient"}
        Which :math:`L`.

    Notes
    -----
    Arguments are float32 or float64 NumPy or CuPy arrays ``W`` of shape
    ``(n, m)`` (columns regularized independently) or a single column of shape
    ``(n,)``; other inputs (lists, integer arrays) raise ``TypeError``.
    """

    def __init__(self, grid_shape: Sequence[int], operator: str = "laplacian") -> None:
        if isinstance(grid_shape, (str, bytes)) or not isinstance(grid_shape, (Sequence, np.ndarray)):
            raise TypeError(
                f"grid_shape must be a non-empty tuple of positive ints, e.g. (28, 28), got {grid_shape!r}"
            )
        grid_shape = tuple(grid_shape)
        for k in grid_shape or (0,):
            if not is_integer(k) or k < 1:
                raise ValueError(
                    f"grid_shape must be a non-empty tuple of positive ints (integers, not floats), "
                    f"got {grid_shape!r}"
                )
        grid_shape = tuple(int(k) for k in grid_shape)
        if operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
        self.grid_shape = grid_shape
        self.operator = operator
        self.n = math.prod(grid_shape)
        self._axes = tuple(range(len(grid_shape)))

    def value(self, W: Array) -> float:
        V = self._grid(W)
        if self.operator == "gradient":
            return 0.5 * squared_differences(V, self._axes)
        LV = laplacian(V, self._axes)
        return 0.5 * float((LV * LV).sum())

    def hessian_matvec(self, v: Array) -> Array:
        HV = laplacian(self._grid(v, "v"), self._axes)
        if self.operator == "laplacian":
            HV = laplacian(HV, self._axes)
        return HV.reshape(v.shape)

    def precondition(self, r: Array, shift: float) -> Array:
        r"""Solve :math:`(L^T L + \sigma I) z = r` column by column with a DCT-II over the grid.

        ``shift`` :math:`\sigma` must be positive (:math:`L^T L` annihilates constants).
        """
        shift = check_shift(shift)
        R = self._grid(r, "r")
        lam = eigenvalues(R.shape, self._axes, R)
        if self.operator == "laplacian":
            lam = lam * lam
        return dct_solve(R, lam + shift, self._axes).reshape(r.shape)

    def _grid(self, W: Array, name: str = "W") -> Array:
        """``W`` (a float32/float64 array, else an error naming ``name``) as grids, columns last."""
        check_array(name, W, finite=False)
        if W.ndim not in (1, 2) or W.shape[0] != self.n:
            raise ValueError(
                f"{name} must have shape (n, m) or (n,) with n = prod(grid_shape) = {self.n}, "
                f"got {W.shape}"
            )
        return W.reshape(self.grid_shape + W.shape[1:])
