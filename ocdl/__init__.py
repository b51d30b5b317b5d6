"""ocdl: deep learning as discrete optimal control (Haber & Ruthotto 2017).

Forward propagation is time stepping, ``x_{j+1} = step(x_j, theta_j, h)``;
sensitivities and adjoints come from each stepper's one-step linearisation.
"""

from . import kernels as kernels
from . import stability
from ._version import __version__ as __version__
from .activations import Activation, Identity, ReLU, SmoothReLU, Tanh, get_activation
from .backend import asnumpy, cupy_available, get_array_module, to_device
from .checks import (
    CheckReport,
    check_activation,
    check_layer,
    check_objective,
    check_regularizer,
    check_stepper,
    check_transform,
    dot_test,
    dot_test_operator,
    taylor_test,
)
from .factory import KINDS, network
from .layer import Layer
from .learning_problem import LearningProblem
from .memory import HDF5, MemoryPolicy, Recompute, Reversible, StoreAll, Trajectory
from .objectives import LeastSquares, LogisticCrossEntropy, Objective, SoftmaxCrossEntropy
from .propagation import Network
from .reduction import Reduction
from .regularizers import ChannelSmoothness, Regularizer, SpatialSmoothness, TimeSmoothness, WeightDecay
from .stability import euler_factor, input_sensitivity, layer_jacobian_eigenvalues
from .steppers import RK4, LayerStepper, Leapfrog, ResNet, Stepper, Verlet
from .transforms import Antisymmetric, Conv2d, Dense, NegativeDefinite, Transform
from .validation import PropagationError

__all__ = [
    # dynamics
    "Stepper", "LayerStepper", "ResNet", "Leapfrog", "Verlet", "RK4", "Network", "network", "KINDS",
    "Layer", "Transform", "Dense", "Antisymmetric", "NegativeDefinite", "Conv2d",
    "Activation", "Tanh", "ReLU", "SmoothReLU", "Identity", "get_activation",
    # memory policies
    "MemoryPolicy", "Trajectory", "StoreAll", "Recompute", "HDF5", "Reversible",
    # objectives and regularizers
    "Objective", "SoftmaxCrossEntropy", "LogisticCrossEntropy", "LeastSquares",
    "Regularizer", "WeightDecay", "TimeSmoothness", "SpatialSmoothness", "ChannelSmoothness",
    # the learning problem
    "LearningProblem", "Reduction",
    # checks and stability
    "taylor_test", "dot_test", "dot_test_operator", "CheckReport",
    "check_stepper", "check_layer", "check_transform", "check_activation", "check_objective", "check_regularizer",
    "stability", "layer_jacobian_eigenvalues", "euler_factor", "input_sensitivity", "PropagationError",
    # arrays
    "get_array_module", "to_device", "asnumpy", "cupy_available",
]
