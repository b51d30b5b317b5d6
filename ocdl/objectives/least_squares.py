"""Least-squares (quadratic) loss of the linear hypothesis."""

from __future__ import annotations

from ..backend import Array
from .base import Objective


class LeastSquares(Objective):
    r"""Least-squares misfit of the identity hypothesis,

    .. math::

       S = \frac{1}{2s} \| Y_N W + e\mu^T - C \|_F^2, \qquad
       \frac{\partial S}{\partial Z} = \frac{Z - C}{s}, \qquad
       \frac{\partial^2 S}{\partial Z^2} dZ = \frac{dZ}{s},

    with :math:`C \in \mathbb{R}^{s \times m}` any real target matrix (for
    classification, the one-hot matrix from :meth:`prepare_labels`, ``m =
    n_classes``). Prediction is the ``argmax`` over the ``m`` columns.
    """

    def value_z(self, Z: Array, C: Array) -> Array:
        R = Z - C
        return 0.5 * (R * R).sum() / Z.shape[0]

    def value_and_gradient_z(self, Z: Array, C: Array) -> tuple[Array, Array]:
        R = Z - C
        s = Z.shape[0]
        return 0.5 * (R * R).sum() / s, R / s

    def hessian_z(self, Z: Array, C: Array, dZ: Array) -> Array:
        return dZ / Z.shape[0]
