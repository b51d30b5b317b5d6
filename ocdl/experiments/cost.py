r"""What the finest level of an experiment will cost, estimated before it runs.

A level with :math:`N` layers costs, per block-coordinate-descent iteration,
about

.. math::

   t \approx N\, \tau\, \bigl(6 B + 4\, k_{CG} H + V\bigr)

seconds: :math:`\tau` the measured time of one layer on one example (a short
forward sweep), :math:`B`, :math:`H`, :math:`V` the examples of the gradient's
batch, of the Gauss-Newton matrix and of the validation set, :math:`k_{CG}`
the CG iterations. The gradient is a forward and an adjoint sweep (about three
forward sweeps), the classifier's features and the line search about three more,
a Gauss-Newton product a tangent and an adjoint sweep (about four), the
validation accuracy one. Its memory is the forward states the memory policy
keeps (:func:`~ocdl.experiments.model.memory_policy`), about ten parameter
vectors of :math:`N p` numbers (parameters, best parameters, gradient, CG's
vectors) and the data. The time is a rough upper estimate (CG often stops
before :math:`k_{CG}` iterations; the 2-D runs take a fifth of it, MNIST about
half): enough to tell a run of minutes from one of years.

With the examples split over data-parallel workers (:mod:`ocdl.distributed`),
the estimate is one worker's: its share of the time, and its examples' states
and data against its share of the memory (the node's, or the GPU's, divided
among the workers that share it: :func:`ocdl.distributed.memory_per_rank`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ocdl.problems import Dataset

from ..backend import to_device
from ..distributed import memory_per_rank, ranks_sharing_memory, select_gpu, share_rows
from ..memory import Recompute, Reversible, StoreAll
from ..reduction import Reduction
from .data import network_width, widen
from .model import build_network, examples_kept, initial_parameters, memory_policy, numbers_per_step
from .settings import Settings

PARAMETER_COPIES = 10
"""Parameter vectors held at once by training (parameters, best, gradient, CG's vectors, ...)."""

SWEEPS_PER_EXAMPLE = dict(batch=6, hessian_per_cg=4, validation=1)
"""Forward-sweep equivalents per example of an iteration (see the module docstring)."""


@dataclass(frozen=True)
class LevelCost:
    """The estimated cost of one level of a run.

    Attributes
    ----------
    n_layers : int
        The level's layers :math:`N`.
    iterations : int
        Its iterations.
    seconds : float
        Estimated wall time of all its iterations.
    memory_bytes : int
        Estimated memory held at once (forward states, parameters, data).
    machine_bytes : int
        The machine's memory, or the GPU's free memory (:func:`ocdl.backend.memory_bytes`); with data-parallel
        workers that share it, this worker's share (:func:`ocdl.distributed.memory_per_rank`).
    sharing : int
        The workers that share that memory (1: one process).
    """

    n_layers: int
    iterations: int
    seconds: float
    memory_bytes: int
    machine_bytes: int
    sharing: int = 1

    def describe(self) -> str:
        """E.g. ``"about 3.1 years for its 20 iterations and 48 GB of memory (the machine has 16 GB)"``, or
        ``"... (each of the 4 processes on the machine has 4 GB)"``."""
        has = (f"the machine has {size(self.machine_bytes)}" if self.sharing == 1 else
               f"each of the {self.sharing} processes on the machine has {size(self.machine_bytes)}")
        return (f"about {duration(self.seconds)} for its {self.iterations} iterations and "
                f"{size(self.memory_bytes)} of memory ({has})")


def layer_seconds(settings: Settings, data: Dataset, n_layers: int = 4, rows: int = 1024, repeats: int = 2,
                  budget: float = 0.05) -> float:
    """Measured seconds of one layer on one example: the best of ``repeats`` forward sweeps of ``n_layers``
    layers on up to ``rows`` training examples, divided by both.

    The examples grow from one, as many as a sweep of ``budget`` seconds takes (at most ``rows``): a network
    of absurd width is timed on a few examples, so that the estimate that refuses it is cheap (at ``rows``
    examples, an MNIST network of 1,000 channels took minutes and 15 GB to time).
    """
    rows = min(rows, data.Y_train.shape[0])
    net = build_network(settings, n_layers)
    theta = to_device(initial_parameters(settings, net), settings.device)
    count = 1
    while True:
        Y0 = to_device(widen(data.Y_train[:count], settings), settings.device)
        best = math.inf
        for _ in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            net.forward(theta, Y0)
            best = min(best, time.perf_counter() - start)
        if count == rows or best >= budget:
            return best / (n_layers * count)
        count = int(min(rows, max(2 * count, count * budget / max(best, 1e-9))))


def finest_level_cost(settings: Settings, data: Dataset, seconds_per_layer: float | None = None,
                      reduction: Reduction | None = None) -> LevelCost:
    """Estimate the finest level of ``settings`` on ``data`` (see the module docstring).

    Parameters
    ----------
    settings : Settings
    data : ocdl.problems.Dataset
        The whole data set, or this worker's :attr:`~ocdl.problems.Dataset.part` of it.
    seconds_per_layer : float, optional
        :math:`\\tau`, one layer on one example; measured by :func:`layer_seconds` if not given.
    reduction : Reduction, optional
        The data-parallel workers (default: one process): the estimate is this worker's, for its share of the
        examples (:func:`ocdl.distributed.share_rows`), on its GPU with ``device="gpu"``
        (:func:`ocdl.distributed.select_gpu`, made current). A collective operation.

    Returns
    -------
    LevelCost
    """
    reduction = Reduction() if reduction is None else reduction
    if settings.device == "gpu" and reduction.size > 1:
        select_gpu(reduction.rank)  # the GPU the rank trains on (as train selects it): its time, its memory
    n_layers = settings.levels[-1]
    n_train, n_val = (data.whole_size(split) for split in ("train", "val"))
    n_mine, n_val_mine = (rows.stop - rows.start for rows in (share_rows(n, reduction) for n in (n_train, n_val)))
    batch = min(settings.batch_size or n_train, n_train)
    hessian = min(settings.hessian_batch_size or batch, batch)
    tau = layer_seconds(settings, data) if seconds_per_layer is None else seconds_per_layer
    sweeps = (SWEEPS_PER_EXAMPLE["batch"] * batch + SWEEPS_PER_EXAMPLE["hessian_per_cg"] * settings.cg_maxiter
              * hessian) * n_mine / n_train + SWEEPS_PER_EXAMPLE["validation"] * n_val_mine
    itemsize = np.dtype(settings.dtype).itemsize
    policy = memory_policy(settings, n_mine, reduction=reduction, n_layers=n_layers)
    if isinstance(policy, StoreAll):
        states = n_layers + 1
    elif isinstance(policy, Recompute):
        states = policy.n_checkpoints + 3
    else:
        assert isinstance(policy, Reversible), policy
        states = 4
    per_example = numbers_per_step(settings)
    states_bytes = states * examples_kept(settings, n_mine) * per_example * itemsize
    params_bytes = PARAMETER_COPIES * n_layers * build_network(settings, 1).n_params * itemsize
    data_bytes = (n_mine + n_val_mine) * network_width(settings) * itemsize
    return LevelCost(
        n_layers=n_layers,
        iterations=settings.max_iter,
        seconds=settings.max_iter * n_layers * tau * sweeps,
        memory_bytes=int(states_bytes + params_bytes + data_bytes),
        machine_bytes=memory_per_rank(reduction, settings.device),
        sharing=ranks_sharing_memory(reduction, settings.device),
    )


def duration(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps the number >= 1 (``"40 s"``, ``"3.2 hours"``, ``"12 years"``)."""
    for unit, length in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= length:
            return f"{_number(seconds / length)} {unit}"
    return f"{_number(seconds)} s"


def size(n_bytes: float) -> str:
    """``n_bytes`` in kB, MB, GB, TB, ... (powers of 1000)."""
    for unit, length in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= length:
            return f"{_number(n_bytes / length)} {unit}"
    return f"{int(n_bytes)} bytes"


def _number(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:,.0f}"
