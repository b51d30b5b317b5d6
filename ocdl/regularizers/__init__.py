"""Quadratic regularizers with fast exact shifted-Hessian solves (preconditioners)."""

from .base import Regularizer
from .channel_smoothness import ChannelSmoothness
from .spatial_smoothness import SpatialSmoothness
from .time_smoothness import TimeSmoothness
from .weight_decay import WeightDecay

__all__ = ["ChannelSmoothness", "Regularizer", "SpatialSmoothness", "TimeSmoothness", "WeightDecay"]
