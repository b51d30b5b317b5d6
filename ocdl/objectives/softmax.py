"""Softmax cross-entropy for mutually exclusive classes (Haber & Ruthotto 2017, eq. 2.3)."""

from __future__ import annotations

from ..backend import Array, get_array_module
from .base import Objective


def log_softmax(Z: Array) -> Array:
    r"""Row-wise :math:`\log \operatorname{softmax}(z) = z - \operatorname{lse}(z)`, overflow-free.

    The log-sum-exp is evaluated as
    :math:`\operatorname{lse}(z) = \max z + \log \sum_j \exp(z_j - \max z)`,
    so every exponent is :math:`\le 0`.
    """
    xp = get_array_module(Z)
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class SoftmaxCrossEntropy(Objective):
    r"""Cross-entropy of the softmax hypothesis, eq. (2.3):

    .. math::

       S = -\frac1s \sum_{i=1}^s c_i^T \log \frac{\exp(z_i)}{e^T \exp(z_i)}
         = \frac1s \sum_{i=1}^s \big[(e^T c_i) \operatorname{lse}(z_i) - c_i^T z_i\big],

    with :math:`z_i` the rows of :math:`Z = Y_N W + e\mu^T` (``m = n_classes``
    columns) and :math:`c_i` the rows of the one-hot target matrix. With
    :math:`p_i = \operatorname{softmax}(z_i)`,

    .. math::

       \frac{\partial S}{\partial z_i} = \frac1s\big[(e^T c_i)\, p_i - c_i\big], \qquad
       \frac{\partial^2 S}{\partial z_i^2} = \frac{e^T c_i}{s}
       \big(\operatorname{diag}(p_i) - p_i p_i^T\big).

    Evaluated through :func:`log_softmax`, so huge logits do not overflow.
    At least two columns are required: with ``m = 1`` the softmax is identically 1
    and the loss and its derivatives vanish (nothing would be learned).
    """

    min_outputs = 2

    def check_targets(self, C: Array) -> Array:
        """At least two columns and entries :math:`\\ge 0` (soft labels, weights): a negative :math:`c_{ij}`
        makes :math:`S` unbounded below in :math:`z_i`."""
        C = super().check_targets(C)
        if C.size and not float(C.min()) >= 0.0:
            raise ValueError(f"C must have entries >= 0 for {type(self).__name__}, got {float(C.min()):g}")
        return C

    def value_z(self, Z: Array, C: Array) -> Array:
        return -(C * log_softmax(Z)).sum() / Z.shape[0]

    def value_and_gradient_z(self, Z: Array, C: Array) -> tuple[Array, Array]:
        xp = get_array_module(Z)
        log_p = log_softmax(Z)
        s = Z.shape[0]
        dZ = (C.sum(axis=1, keepdims=True) * xp.exp(log_p) - C) / s
        return -(C * log_p).sum() / s, dZ

    def hessian_z(self, Z: Array, C: Array, dZ: Array) -> Array:
        xp = get_array_module(Z)
        P = xp.exp(log_softmax(Z))
        PdZ = P * dZ
        weight = C.sum(axis=1, keepdims=True) / Z.shape[0]
        return weight * (PdZ - P * PdZ.sum(axis=1, keepdims=True))
