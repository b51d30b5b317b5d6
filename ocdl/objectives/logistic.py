"""Logistic (Bernoulli) cross-entropy (Haber & Ruthotto 2017, eq. 2.2)."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from ..backend import Array, get_array_module
from .base import Objective
from .labels import one_hot


def softplus(Z: Array) -> Array:
    r""":math:`\operatorname{softplus}(z) = \log(1 + e^z) = -\log \sigma(-z)`, overflow-free."""
    return get_array_module(Z).logaddexp(0.0, Z)


def sigmoid(Z: Array) -> Array:
    r""":math:`\sigma(z) = 1/(1 + e^{-z}) = \exp(-\operatorname{softplus}(-z))`, overflow-free."""
    return get_array_module(Z).exp(-softplus(-Z))


class LogisticCrossEntropy(Objective):
    r"""Cross-entropy of independent Bernoulli labels, eq. (2.2):

    .. math::

       S = -\frac1s \sum_{i,j} \big[c_{ij} \log \sigma(z_{ij})
           + (1 - c_{ij}) \log(1 - \sigma(z_{ij}))\big]
         = \frac1s \sum_{i,j} \big[c_{ij} \operatorname{softplus}(-z_{ij})
           + (1 - c_{ij}) \operatorname{softplus}(z_{ij})\big],

    with :math:`\sigma` the logistic sigmoid, :math:`z_{ij}` the entries of
    :math:`Z = Y_N W + e\mu^T` and :math:`c_{ij} \in [0, 1]`. Each of the ``m``
    columns is an independent Bernoulli label. Two classes use ``m = 1`` with
    :math:`c = ` label; ``n_classes > 2`` use the one-hot matrix (one-vs-rest).
    Then

    .. math::

       \frac{\partial S}{\partial z_{ij}} = \frac{\sigma(z_{ij}) - c_{ij}}{s}, \qquad
       \frac{\partial^2 S}{\partial z_{ij}^2} = \frac{\sigma(z_{ij})\,\sigma(-z_{ij})}{s}

    (the Hessian in :math:`Z` is diagonal). The softplus form (``logaddexp``)
    never overflows.
    """

    def value_z(self, Z: Array, C: Array) -> Array:
        return (C * softplus(-Z) + (1 - C) * softplus(Z)).sum() / Z.shape[0]

    def value_and_gradient_z(self, Z: Array, C: Array) -> tuple[Array, Array]:
        return self.value_z(Z, C), (sigmoid(Z) - C) / Z.shape[0]

    def hessian_z(self, Z: Array, C: Array, dZ: Array) -> Array:
        return sigmoid(Z) * sigmoid(-Z) * dZ / Z.shape[0]

    def predict_z(self, Z: Array) -> Array:
        """Class ``z > 0`` (i.e. :math:`\\sigma(z) > 1/2`) for ``m = 1``; ``argmax`` otherwise."""
        if Z.shape[1] == 1:
            return (Z[:, 0] > 0).astype(np.int64)
        return super().predict_z(Z)

    def check_targets(self, C: Array) -> Array:
        """Entries in :math:`[0, 1]` (probabilities of the Bernoulli labels): a :math:`c_{ij}` outside makes
        :math:`S` unbounded below in :math:`z_{ij}`."""
        C = super().check_targets(C)
        if C.size and not (float(C.min()) >= 0.0 and float(C.max()) <= 1.0):
            raise ValueError(f"C must have entries in [0, 1] for {type(self).__name__} (probabilities), "
                             f"got entries from {float(C.min()):g} to {float(C.max()):g}")
        return C

    def classes_of_targets(self, C: Array) -> Array:
        """Class ``c > 1/2`` for ``m = 1``; ``argmax`` over columns otherwise."""
        if C.shape[1] == 1:
            return (C[:, 0] > 0.5).astype(np.int64)
        return super().classes_of_targets(C)

    def n_outputs(self, n_classes: int) -> int:
        """``1`` for two classes (one Bernoulli label), ``n_classes`` otherwise (at least 2)."""
        n_classes = super().n_outputs(n_classes)
        return 1 if n_classes == 2 else n_classes

    def prepare_labels(
        self, C: Array, n_classes: int | None = None, dtype: DTypeLike = np.float64
    ) -> Array:
        """One-hot targets, reduced to the single column ``c = label`` for two classes.

        Accepts the same forms as :meth:`Objective.prepare_labels` (at least two
        classes: with one class the single column would be all ones, "class 1",
        and mean the opposite of the labels); returns shape
        ``(s, n_outputs(n_classes))``.
        """
        T = one_hot(C, n_classes, dtype)
        return T[:, 1:] if T.shape[1] == 2 else T
