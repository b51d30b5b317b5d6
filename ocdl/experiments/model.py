r"""The network, objective and regularizers of an experiment, built from its :class:`Settings`.

2-D problems: the dense networks of :func:`ocdl.network` (``n x n`` matrices;
Verlet ``n x n`` too). MNIST: the same steppers over a same-size ``3 x 3``
convolution from ``c`` to ``c`` channels (:class:`ocdl.Conv2d`; antisymmetric:
:math:`\tfrac12 (K - K^T - \gamma I)` of that convolution), and the classifier
regularized by the squared discrete Laplacian of each channel's weight image
(:class:`ChannelSmoothness`, eq. 5.25).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..factory import network
from ..layer import Layer
from ..learning_problem import LearningProblem
from ..memory import MemoryPolicy, Recompute, Reversible, StoreAll
from ..network import Network
from ..objectives import LogisticCrossEntropy, Objective, SoftmaxCrossEntropy
from ..regularizers import Regularizer, SpatialSmoothness, WeightDecay
from ..regularizers.base import Array
from ..steppers import RK4, Leapfrog, ResNet, Verlet
from ..transforms import Antisymmetric, Conv2d
from ..validation import check_positive
from .settings import MNIST_IMAGE, REVERSIBLE_STEPPERS, Settings

ACTIVATION = "tanh"

_STEPPER_CLASSES = {"resnet": ResNet, "antisymmetric": ResNet, "leapfrog": Leapfrog, "verlet": Verlet, "rk4": RK4}


class ChannelSmoothness(Regularizer):
    r""":class:`~ocdl.SpatialSmoothness` of every channel's image, with no differences across channels.

    A column :math:`w` of :math:`W` (``channels * height * width`` entries,
    channel-major) holds one ``height x width`` image per channel;

    .. math::  R(W) = \frac12 \sum_{k} \sum_{c} \|L\, w_{k,c}\|^2 ,

    :math:`L` the operator of :class:`~ocdl.SpatialSmoothness` on the
    ``height x width`` grid (default the Neumann Laplacian, so
    :math:`H = \Delta_N^2` per image). Each image is one column for that
    regularizer, so value, products and the DCT preconditioner are its own.

    Parameters
    ----------
    channels : int
        Channels per column.
    image_shape : (int, int)
        Height and width of one image.
    operator : {"laplacian", "gradient"}
        :math:`L`, as for :class:`~ocdl.SpatialSmoothness`.
    """

    def __init__(self, channels: int, image_shape: tuple[int, int], operator: str = "laplacian") -> None:
        self.channels = check_positive("channels", channels, integer=True)
        self.image = SpatialSmoothness(image_shape, operator)

    def _images(self, W: Array) -> Array:
        """``(channels * pixels, m)`` to ``(pixels, channels * m)``: one image per column."""
        if W.ndim not in (1, 2) or W.shape[0] != self.channels * self.image.n:
            raise ValueError(
                f"W must have shape (n, m) or (n,) with n = channels * pixels = {self.channels * self.image.n}, "
                f"got {W.shape}"
            )
        m = W.shape[1] if W.ndim == 2 else 1
        return W.reshape(self.channels, self.image.n, m).transpose(1, 0, 2).reshape(self.image.n, -1)

    def _columns(self, V: Array, shape: tuple[int, ...]) -> Array:
        """Inverse of :meth:`_images`, back to ``shape``."""
        return V.reshape(self.image.n, self.channels, -1).transpose(1, 0, 2).reshape(shape)

    def value(self, W: Array) -> float:
        return self.image.value(self._images(W))

    def hessian_matvec(self, v: Array) -> Array:
        return self._columns(self.image.hessian_matvec(self._images(v)), v.shape)

    def precondition(self, r: Array, shift: float) -> Array:
        r"""Solve :math:`(H + \sigma I) z = r` image by image (DCT-II, see :class:`~ocdl.SpatialSmoothness`)."""
        return self._columns(self.image.precondition(self._images(r), shift), r.shape)

    def __repr__(self) -> str:
        return f"ChannelSmoothness(channels={self.channels}, image_shape={self.image.grid_shape})"


def examples_kept(settings: Settings, n_examples: int) -> int:
    r"""Examples whose forward states a training iteration on ``n_examples`` examples keeps at once.

    The Gauss-Newton matrix's examples (kept for all products of PCG) and,
    when they are a separate sub-sample, one chunk of the gradient's sweep
    (``settings.chunk_size``; :class:`ocdl.LearningProblem`)."""
    batch = min(settings.batch_size or n_examples, n_examples)
    hessian = min(settings.hessian_batch_size or batch, batch)
    return hessian + (min(settings.chunk_size or batch, batch) if hessian < batch else 0)


def memory_policy(settings: Settings, n_examples: int, budget: int | None = None) -> MemoryPolicy:
    r"""The memory policy of ``settings.memory`` for training on ``n_examples`` examples, up to
    ``settings.max_layers`` layers.

    ``"auto"`` estimates the stored forward sweeps of the finest level,
    :math:`(N_{max} + 1)\, s\, m` numbers, :math:`s` the examples kept at once
    (:func:`examples_kept`), :math:`m` the numbers per example
    of one step's state and cache (:func:`numbers_per_step`), and keeps
    everything (:class:`~ocdl.memory.StoreAll`) when that fits in ``budget``
    bytes; otherwise it rebuilds the states backward
    (:class:`~ocdl.memory.Reversible`, Leapfrog and Verlet: about 1.4x the
    gradient time) or recomputes them from :math:`\lceil\sqrt{N_{max}}\,\rceil`
    checkpoints (:class:`~ocdl.memory.Recompute`, fewer than three extra
    forward sweeps). All give the same derivatives up to rounding.

    Parameters
    ----------
    settings : Settings
    n_examples : int
        Training examples.
    budget : int, optional
        Bytes the stored sweep may take (default: half the machine's memory,
        or of the GPU's with ``device="gpu"``).
    """
    choice = settings.memory
    if choice == "auto":
        itemsize = np.dtype(settings.dtype).itemsize
        stored = (settings.max_layers + 1) * examples_kept(settings, n_examples) * numbers_per_step(settings) * itemsize
        if stored <= (_half_the_memory(settings.device) if budget is None else budget):
            choice = "store-all"
        else:
            choice = "reversible" if settings.stepper in REVERSIBLE_STEPPERS else "recompute"
    if choice == "store-all":
        return StoreAll()
    if choice == "reversible":
        return Reversible()
    return Recompute(math.isqrt(settings.max_layers - 1) + 1)


def numbers_per_step(settings: Settings) -> int:
    r"""Numbers per example that store-all keeps for one step: its state and its cache, counted on one example.

    Measured by one step of the stepper on a zero example (ResNet: the state
    and :math:`\sigma'`, two ``n``-vectors; Verlet: two states and the
    two half-steps' derivatives), so that a user's stepper is counted as it is. Arrays
    shared between the state and the cache are counted once.
    """
    from .data import network_width

    net = build_network(settings, 1)
    stepper = net.stepper
    state, cache = stepper.step(stepper.init(np.zeros((1, network_width(settings)))), np.zeros(stepper.n_params), net.h)
    arrays = {}

    def collect(obj) -> None:
        if hasattr(obj, "shape") and hasattr(obj, "size"):
            arrays[id(obj)] = obj.size
        elif isinstance(obj, (tuple, list)):
            for item in obj:
                collect(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                collect(item)

    collect((state, cache))
    return sum(arrays.values())


def machine_memory(device: str) -> int:
    """Bytes of physical memory of ``device``: the machine's, or the GPU's (8 GiB where the system does not say)."""
    if device == "gpu":
        import cupy

        return cupy.cuda.Device().mem_info[1]
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 33


def _half_the_memory(device: str) -> int:
    """Half of :func:`machine_memory`."""
    return machine_memory(device) // 2


def build_network(settings: Settings, n_steps: int, memory: MemoryPolicy | None = None) -> Network:
    """The network of ``settings`` with ``n_steps`` layers (see the module docstring) and ``memory`` policy."""
    if settings.problem != "mnist":
        return network(settings.stepper, settings.width, n_steps, settings.final_time, ACTIVATION, settings.gamma,
                       memory=memory)
    transform = Conv2d(settings.width, settings.width, *MNIST_IMAGE)
    if settings.stepper == "antisymmetric":
        transform = Antisymmetric(transform, settings.gamma)
    stepper = _STEPPER_CLASSES[settings.stepper](Layer(transform, ACTIVATION))
    return Network(stepper, n_steps, settings.final_time, memory)


def build_objective(n_classes: int) -> Objective:
    """Logistic regression for two classes (one output), softmax otherwise (eqs. 2.2, 2.3)."""
    return LogisticCrossEntropy() if n_classes == 2 else SoftmaxCrossEntropy()


def classifier_regularizer(settings: Settings) -> Regularizer:
    """Weight decay (2-D) or :class:`ChannelSmoothness` over the 28 x 28 grid (MNIST)."""
    if settings.problem == "mnist":
        return ChannelSmoothness(settings.width, MNIST_IMAGE)
    return WeightDecay()


def build_problem(settings: Settings, Y: Array, C: Array, n_classes: int) -> LearningProblem:
    """The learning problem (eq. 2.4) on the widened examples ``Y`` with labels ``C``, first level's network."""
    return LearningProblem(
        build_network(settings, settings.first_layers, memory_policy(settings, Y.shape[0])),
        build_objective(n_classes),
        Y,
        C,
        alpha_theta=settings.alpha_theta,
        alpha_W=settings.alpha_W,
        W_regularizer=classifier_regularizer(settings),
        n_classes=n_classes,
        chunk_size=settings.chunk_size,
    )


def initial_parameters(settings: Settings, net: Network) -> np.ndarray:
    """Random network weights (standard deviation ``init_scale / sqrt(fan-in)``, zero biases), seeded."""
    return net.init_params(settings.seed, scale=settings.init_scale).astype(settings.dtype, copy=False)
