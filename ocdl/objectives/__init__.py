"""Losses of the classifier :math:`h(Y_N W + e\\mu^T)`, averaged over the examples."""

from .base import Objective
from .labels import one_hot
from .least_squares import LeastSquares
from .logistic import LogisticCrossEntropy
from .softmax import SoftmaxCrossEntropy

__all__ = ["LeastSquares", "LogisticCrossEntropy", "Objective", "SoftmaxCrossEntropy", "one_hot"]
