"""ocdl: deep learning as discrete optimal control (Haber & Ruthotto 2017).

Forward propagation is time stepping, ``x_{j+1} = step(x_j, theta_j, h)``;
sensitivities and adjoints come from each stepper's one-step linearisation.
"""

from .activations import Activation, Identity, ReLU, SmoothReLU, Tanh, get_activation
from .backend import asnumpy, cupy_available, get_array_module, to_device
from .checks import CheckReport, check_stepper, dot_test, dot_test_operator, taylor_test
from .factory import KINDS, network
from .layer import Layer
from .memory import MemoryPolicy, StoreAll, Trajectory
from .network import Network
from .objectives import LeastSquares, LogisticCrossEntropy, Objective, SoftmaxCrossEntropy
from .regularizers import Regularizer, SpatialSmoothness, TimeSmoothness, WeightDecay
from .steppers import RK4, LayerStepper, Leapfrog, ResNet, Stepper, Verlet
from .transforms import Antisymmetric, Conv2d, Dense, NegativeDefinite, Transform
from .validation import PropagationError

__version__ = "0.1.0"

__all__ = [
    "KINDS", "RK4", "Activation", "Antisymmetric", "CheckReport", "Conv2d", "Dense", "Identity",
    "Layer", "LayerStepper", "LeastSquares", "LogisticCrossEntropy", "Objective", "Regularizer",
    "SoftmaxCrossEntropy", "SpatialSmoothness", "TimeSmoothness", "WeightDecay", "Leapfrog", "MemoryPolicy", "NegativeDefinite", "Network",
    "PropagationError", "ReLU", "ResNet", "SmoothReLU", "StoreAll", "Stepper", "Tanh",
    "Trajectory", "Transform", "Verlet", "asnumpy", "check_stepper", "cupy_available",
    "dot_test", "dot_test_operator", "get_activation", "get_array_module", "network",
    "taylor_test", "to_device",
]
