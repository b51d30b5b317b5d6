"""Time steppers: the one-step dynamics and their linearisations."""

from .base import LayerStepper, Stepper
from .leapfrog import Leapfrog
from .resnet import ResNet
from .rk4 import RK4
from .verlet import Verlet

__all__ = ["LayerStepper", "Leapfrog", "RK4", "ResNet", "Stepper", "Verlet"]
