r"""The network, objective and regularizers of an experiment, built from its :class:`Settings`.

2-D problems: the dense networks of :func:`ocdl.network` (``n x n`` matrices;
Verlet ``n x n`` too). MNIST: the same steppers over a same-size ``3 x 3``
convolution from ``c`` to ``c`` channels (:class:`ocdl.Conv2d`; antisymmetric:
:math:`\tfrac12 (K - K^T - \gamma I)` of that convolution), and the classifier
regularized by the squared discrete Laplacian of each channel's weight image
(:class:`~ocdl.ChannelSmoothness`, eq. 5.25).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import Array
from ..distributed import memory_per_rank
from ..factory import find_kind, network
from ..learning_problem import LearningProblem
from ..memory import MemoryPolicy, Recompute, Reversible, StoreAll
from ..objectives import LogisticCrossEntropy, Objective, SoftmaxCrossEntropy
from ..propagation import Network
from ..reduction import Reduction
from ..regularizers import ChannelSmoothness, Regularizer, WeightDecay
from ..transforms import Conv2d
from .settings import MNIST_IMAGE, Settings

ACTIVATION = "tanh"


def examples_kept(settings: Settings, n_examples: int) -> int:
    r"""Examples whose forward states a training iteration on ``n_examples`` examples keeps at once.

    The Gauss-Newton matrix's examples (kept for all products of PCG) and,
    when they are a separate sub-sample, one chunk of the gradient's sweep
    (``settings.chunk_size``; :class:`ocdl.LearningProblem`)."""
    batch = min(settings.batch_size or n_examples, n_examples)
    hessian = min(settings.hessian_batch_size or batch, batch)
    return hessian + (min(settings.chunk_size or batch, batch) if hessian < batch else 0)


def memory_policy(settings: Settings, n_examples: int, budget: int | None = None,
                  reduction: Reduction | None = None, n_layers: int | None = None) -> MemoryPolicy:
    r"""The memory policy of ``settings.memory`` for training a network of ``n_layers`` layers on
    ``n_examples`` examples.

    ``"auto"`` estimates the stored forward sweeps of that network,
    :math:`(N + 1)\, s\, m` numbers, :math:`s` the examples kept at once
    (:func:`examples_kept`), :math:`m` the numbers per example
    of one step's state and cache (:func:`numbers_per_step`), and keeps
    everything (:class:`~ocdl.memory.StoreAll`) when that fits in ``budget``
    bytes; otherwise it rebuilds the states backward
    (:class:`~ocdl.memory.Reversible`, Leapfrog and Verlet: about 1.4x the
    gradient time) or recomputes them from :math:`\lceil\sqrt{N}\,\rceil`
    checkpoints (:class:`~ocdl.memory.Recompute`, fewer than three extra
    forward sweeps). All give the same derivatives up to rounding. With a
    data-parallel ``reduction`` each worker plans for its examples and its
    share of the memory, and all store everything only if it fits on every
    one of them, so that they take one decision. Multilevel training
    (:func:`~ocdl.experiments.train`) asks once per level, so that only the
    levels whose states do not fit pay for rebuilding them.

    Parameters
    ----------
    settings : Settings
    n_examples : int
        Training examples.
    budget : int, optional
        Bytes the stored sweep may take (default: half of this process's
        memory, :func:`ocdl.distributed.memory_per_rank`: the host's memory, or
        the GPU's free memory with ``device="gpu"``, where the training data
        already lie when the policy is chosen, divided by the data-parallel
        ranks of ``reduction`` that share it).
    reduction : Reduction, optional
        The workers of a data-parallel run (``n_examples``: this worker's);
        default: one process. With ``"auto"``, a collective operation.
    n_layers : int, optional
        The network's layers :math:`N` (default ``settings.max_layers``, the
        finest level).
    """
    n_layers = settings.max_layers if n_layers is None else n_layers
    choice = settings.memory
    if choice == "auto":
        itemsize = np.dtype(settings.dtype).itemsize
        stored = (n_layers + 1) * examples_kept(settings, n_examples) * numbers_per_step(settings) * itemsize
        reduction = Reduction() if reduction is None else reduction
        fits = stored <= (memory_per_rank(reduction, settings.device) // 2 if budget is None else budget)
        if all(reduction.gather(fits)):
            choice = "store-all"
        else:
            choice = "reversible" if find_kind(settings.stepper).reversible else "recompute"
    if choice == "store-all":
        return StoreAll()
    if choice == "reversible":
        return Reversible()
    return Recompute(math.isqrt(n_layers - 1) + 1)


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


def build_network(settings: Settings, n_steps: int, memory: MemoryPolicy | None = None) -> Network:
    """The network of ``settings`` with ``n_steps`` layers (see the module docstring) and ``memory`` policy."""
    if settings.problem != "mnist":
        return network(settings.stepper, settings.width, n_steps, settings.final_time, ACTIVATION, settings.gamma,
                       memory=memory)
    stepper = find_kind(settings.stepper).build(Conv2d(settings.width, settings.width, *MNIST_IMAGE), ACTIVATION,
                                            settings.gamma)
    return Network(stepper, n_steps, settings.final_time, memory)


def build_objective(n_classes: int) -> Objective:
    """Logistic regression for two classes (one output), softmax otherwise (eqs. 2.2, 2.3)."""
    return LogisticCrossEntropy() if n_classes == 2 else SoftmaxCrossEntropy()


def classifier_regularizer(settings: Settings) -> Regularizer:
    """Weight decay (2-D) or :class:`~ocdl.ChannelSmoothness` over the 28 x 28 grid (MNIST)."""
    if settings.problem == "mnist":
        return ChannelSmoothness(settings.width, MNIST_IMAGE)
    return WeightDecay()


def build_problem(settings: Settings, Y: Array, C: Array, n_classes: int,
                  reduction: Reduction | None = None) -> LearningProblem:
    """The learning problem (eq. 2.4) on the widened examples ``Y`` with labels ``C``, first level's network
    (``Y, C``: this worker's share with a data-parallel ``reduction``)."""
    return LearningProblem(
        build_network(settings, settings.first_layers,
                      memory_policy(settings, Y.shape[0], reduction=reduction, n_layers=settings.first_layers)),
        build_objective(n_classes),
        Y,
        C,
        alpha_theta=settings.alpha_theta,
        alpha_W=settings.alpha_W,
        W_regularizer=classifier_regularizer(settings),
        n_classes=n_classes,
        chunk_size=settings.chunk_size,
        reduction=reduction,
    )


def initial_parameters(settings: Settings, net: Network) -> np.ndarray:
    """Random network weights (standard deviation ``init_scale / sqrt(fan-in)``, zero biases), seeded."""
    return net.init_params(settings.seed, scale=settings.init_scale).astype(settings.dtype, copy=False)
