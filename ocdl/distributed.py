r"""Data-parallel training over MPI: the examples split over processes, every sum completed by one reduction.

Every data term of the learning problem is a mean over examples (see
:mod:`ocdl.reduction`), so ``P`` processes (MPI ranks) can each hold a share
of the examples and complete every sum by :class:`MPIReduction`::

    from mpi4py import MPI
    from ocdl.distributed import MPIReduction, share

    reduction = MPIReduction(MPI.COMM_WORLD)
    data = ocdl.problems.peaks(seed=0)                 # the same data on every rank
    Y, C = share(reduction, data.Y_train, data.C_train)  # this rank's rows (checked equal on all ranks)
    problem = ocdl.LearningProblem(net, objective, Y, C, n_classes=data.n_classes, reduction=reduction)

and ``mpiexec -n P python script.py`` trains as one process would: the
parameters, the random draws and every decision of the solvers are the same
on every rank. :func:`world` gives the reduction of a program started by
``mpiexec`` (the local :class:`~ocdl.reduction.Reduction` when it runs as one
process), as ``ocdl train`` uses it.

Rules that make the ranks agree:

* results identical on all ranks: a reduction gathers the ranks' parts on
  rank 0, which adds them in rank order (means weighted by the ranks' numbers
  of examples, in float64) and broadcasts the result; never an all-reduce,
  whose rounding may differ between ranks;
* sub-samples are drawn from the global example indices ``0..s-1`` with the
  same seed on every rank; each rank uses the part that falls in its share
  (possibly none: it then adds nothing);
* an exception raised on some ranks inside :meth:`MPIReduction.errors` (a
  propagation that blows up on one rank's examples) is raised on all of them
  at their next reduction, the lowest rank's;
* the ranks' parts of one reduction must have one shape: a rank that has
  gone out of step with the others (another number of reductions) makes an
  error, not a silent mix.

Memory: the ranks on one node share its memory, so a rank plans with its
share (:func:`memory_per_rank`: the node's memory, or on the GPU the device's
free memory, divided by the ranks on the node, or on the device:
:func:`ranks_sharing_memory`), as ``memory="auto"`` and the cost estimate of
:mod:`ocdl.experiments` do; and it need not hold the whole data set:
:func:`ocdl.experiments.load_data` reads only the rank's rows of the MNIST
files, and :func:`check_share` checks such shares.

CuPy arrays are reduced through host buffers (parameter-sized vectors:
5,200 numbers for the paper's MNIST network), or on the device when the MPI
library is CUDA-aware (``cuda_aware=True``, or mpi4py's report where it gives
one). With GPUs, rank ``r`` uses GPU ``r mod (number of visible GPUs)``
(:func:`select_gpu`).

mpi4py is an optional dependency (``pip install "ocdl[mpi]"``), imported
when a :class:`MPIReduction` is made.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Array, asnumpy, get_array_module, memory_bytes
from .fingerprint import digest
from .reduction import Reduction
from .validation import check_nonnegative

LAUNCHER_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
"""Environment variables in which ``mpiexec`` (Open MPI; MPICH, Intel MPI, Slurm's PMI; MVAPICH) gives the
number of processes it started."""
LAUNCHER_RANKS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
"""The same launchers' environment variables of the process's rank."""

_AGREED = "_ocdl_raised_on_every_rank"


def mpi() -> Any:
    """The module ``mpi4py.MPI`` (initialises MPI); ``ImportError`` naming the extra if it is not installed."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            'training on several processes needs mpi4py and an MPI library: pip install "ocdl[mpi]"'
        ) from None
    return MPI


def launched_size() -> int:
    """Number of processes ``mpiexec`` started this program among (1 without ``mpiexec``), from the environment.

    Read without importing mpi4py, so that a program run as one process does
    not start MPI.
    """
    return _from_environment(LAUNCHER_SIZES, 1)


def launched_rank() -> int:
    """This process's rank given by ``mpiexec`` (0 without it), from the environment, as :func:`launched_size`."""
    return _from_environment(LAUNCHER_RANKS, 0)


def _from_environment(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def world(cuda_aware: bool | None = None) -> Reduction:
    """The reduction of this program: an :class:`MPIReduction` over ``MPI.COMM_WORLD`` when ``mpiexec``
    started it with more than one process, else the local :class:`~ocdl.reduction.Reduction`.

    Raises
    ------
    ImportError
        Under ``mpiexec -n P`` (``P > 1``) without mpi4py.
    """
    if launched_size() > 1:
        reduction = MPIReduction(cuda_aware=cuda_aware)
        if reduction.size > 1:
            return reduction
    return Reduction()


def abort(reduction: Reduction | None, status: int) -> int:
    """End every rank of ``reduction`` now (``MPI_Abort``) if it is an :class:`MPIReduction`; else return ``status``.

    For what stops one rank without the others (Ctrl-C reaches the ranks at
    different points, some of them waiting inside MPI where Python never
    sees it): ``mpiexec`` then ends all ranks, and a run with checkpoints
    continues from its last one.
    """
    if isinstance(reduction, MPIReduction):
        sys.stdout.flush()
        sys.stderr.flush()
        reduction.comm.Abort(status)
    return status


def share_rows(n: int, reduction: Reduction) -> slice:
    r"""This worker's rows of ``n`` examples: contiguous shares in rank order, sizes differing by one at most.

    Rank :math:`k` of :math:`P` holds rows :math:`\lfloor kn/P \rfloor` to
    :math:`\lfloor (k+1)n/P \rfloor - 1`, so that the shares in rank order
    are the examples in their order (:meth:`~ocdl.reduction.Reduction.partition`).

    Raises
    ------
    ValueError
        If ``n`` is smaller than the number of workers (each needs an example).
    """
    n, size, rank = int(n), reduction.size, reduction.rank
    if n < size:
        raise ValueError(f"cannot split {n} examples over {size} workers: each worker needs one example at least")
    return slice(rank * n // size, (rank + 1) * n // size)


def share(reduction: Reduction, *arrays: Array) -> tuple[Array, ...]:
    """This worker's rows (:func:`share_rows`) of every array, after checking that all workers hold equal arrays.

    Parameters
    ----------
    reduction : Reduction
        The workers.
    *arrays : array
        The whole data set on every worker (e.g. ``Y_train, C_train``), with
        one number of rows.

    Returns
    -------
    tuple of arrays
        Views of this worker's rows, in the order given.

    Raises
    ------
    ValueError
        If the arrays differ between workers (another file, another seed:
        compared by SHA-256 of their contents), their numbers of rows differ,
        or there are fewer rows than workers.
    """
    if not arrays:
        raise ValueError("share needs at least one array")
    rows = {int(a.shape[0]) for a in arrays}
    if len(rows) != 1:
        raise ValueError(f"the arrays to share must have one number of rows, got {sorted(rows)}")
    reduction.check_same("data (SHA-256 of the arrays to share)", digest(*arrays))
    mine = share_rows(rows.pop(), reduction)
    return tuple(a[mine] for a in arrays)


def check_share(reduction: Reduction, what: str, first: int, count: int, total: int) -> None:
    """Raise ``ValueError`` on every worker unless each holds its share (:func:`share_rows`) of ``total`` examples.

    For data each worker read in part (:func:`ocdl.experiments.load_data`):
    this worker's ``count`` examples are examples ``first .. first + count - 1``
    of ``total``. A collective operation (two gathers).

    Parameters
    ----------
    reduction : Reduction
        The workers.
    what : str
        What the examples are, for the message (e.g. ``"training examples"``).
    first, count, total : int
        Where this worker's examples lie among all.
    """
    reduction.check_same(f"numbers of {what}", int(total))
    mine = share_rows(total, reduction)
    held = reduction.gather(((int(first), int(first) + int(count)), (mine.start, mine.stop)))
    wrong = [(rank, rows, share) for rank, (rows, share) in enumerate(held) if rows != share]
    if wrong:
        rank, rows, share = wrong[0]
        raise ValueError(f"worker {rank} of {reduction.size} holds {what} {rows[0]}..{rows[1] - 1} of {total}, not its "
                         f"share {share[0]}..{share[1] - 1}: give every worker the rows share_rows gives it")


def select_gpu(rank: int) -> int:
    """Make GPU ``rank mod (number of visible GPUs)`` CuPy's current device; return its number."""
    import cupy

    device = rank % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(device).use()
    return device


def ranks_sharing_memory(reduction: Reduction, device: str) -> int:
    """Number of workers of ``reduction`` that share this worker's memory on ``device``, this one included.

    ``"cpu"``: the ranks on this process's node (MPI's
    ``Split_type(COMM_TYPE_SHARED)``, :attr:`MPIReduction.node`); ``"gpu"``:
    those of them whose current CUDA device is this process's (by PCI bus
    id, so that ranks that each see another GPU as device 0 are told
    apart; :func:`select_gpu`). 1 for the local reduction. A collective
    operation (one :meth:`~MPIReduction.gather`).
    """
    if not isinstance(reduction, MPIReduction):
        return 1
    if device == "gpu":
        import cupy

        key = (reduction.node, cupy.cuda.runtime.deviceGetPCIBusId(cupy.cuda.Device().id))
    elif device == "cpu":
        key = (reduction.node, None)
    else:
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    return reduction.gather(key).count(key)


def memory_per_rank(reduction: Reduction | None, device: str) -> int:
    """Bytes that new arrays of this worker may take on ``device``: its share of :func:`ocdl.backend.memory_bytes`.

    That memory divided by the workers that share it
    (:func:`ranks_sharing_memory`), all of it without a data-parallel
    ``reduction``. With an :class:`MPIReduction`, a collective operation
    that measures the memory once every rank has reached it (on the GPU:
    when every rank sharing the device holds the arrays it made before).
    """
    sharing = ranks_sharing_memory(Reduction() if reduction is None else reduction, device)
    return memory_bytes(device) // sharing


_KINDS = (MemoryError, FloatingPointError, ValueError, TypeError, OSError, ImportError, KeyboardInterrupt, Exception)
"""What an exception that cannot be pickled is sent as: the first of these it is an instance of."""


@dataclass
class _Failure:
    """An exception of worker ``rank``, sent to the others in place of its part of a reduction."""

    rank: int
    error: BaseException

    @classmethod
    def of(cls, rank: int, error: BaseException) -> _Failure:
        try:  # sent as is if it survives pickling, else as the nearest built-in kind, with its text
            pickle.loads(pickle.dumps(error))
        except Exception:
            kind = next(kind for kind in _KINDS if isinstance(error, kind))
            error = kind(f"{type(error).__name__}: {error}")
        return cls(rank, error)


@dataclass
class _Done:
    value: Any


class MPIReduction(Reduction):
    """The reduction over the ranks of an MPI communicator; results identical on every rank.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The workers (default ``MPI.COMM_WORLD``).
    cuda_aware : bool, optional
        Whether the MPI library takes CuPy arrays (device buffers) directly.
        Default: what mpi4py reports (``MPI.Query_cuda_support()`` where it
        has it), else ``False``: CuPy arrays go through host buffers.

    Attributes
    ----------
    node : int
        The lowest rank on this process's node: the ranks with one ``node``
        share the node's memory (``MPI_COMM_TYPE_SHARED``,
        :func:`ranks_sharing_memory`).
    n_reductions : int
        Number of :meth:`sum`, :meth:`mean` and :meth:`gather` calls so far
        (each one collective operation over the ranks).

    Raises
    ------
    ImportError
        If mpi4py is not installed.

    Notes
    -----
    Making one is a collective operation: every rank of ``comm`` makes it
    at the same point of the program (it asks MPI which ranks share a node).
    """

    def __init__(self, comm: Any = None, cuda_aware: bool | None = None) -> None:
        MPI = mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if cuda_aware is None:
            query = getattr(MPI, "Query_cuda_support", None)
            cuda_aware = bool(query()) if query is not None else False
        self.cuda_aware = bool(cuda_aware)
        on_node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            self.node = on_node.bcast(self.rank, root=0)
        finally:
            on_node.Free()
        self.n_reductions = 0

    def __repr__(self) -> str:
        return f"MPIReduction(rank {self.rank} of {self.size}, cuda_aware={self.cuda_aware})"

    # -- the reductions ------------------------------------------------------------------------
    def sum(self, x: Array) -> Array:
        r""":math:`\sum_k x_k` in rank order (arrays of one shape on every rank, or numbers)."""
        return self._reduce("sum", x, 1)

    def mean(self, x: Array, count: int) -> Array:
        r""":math:`\sum_k s_k x_k / \sum_k s_k` in rank order, in float64, over the ranks with :math:`s_k > 0`
        (the one rank's :math:`x_k` itself if only one has examples)."""
        return self._reduce("mean", x, check_nonnegative("count", count, integer=True))

    def gather(self, value: Any) -> list:
        """Every rank's ``value`` (pickled), in rank order, on every rank."""
        return self._exchange("gather", value, list)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """See :meth:`ocdl.reduction.Reduction.errors`: an exception of the block on some ranks is sent to
        the others in place of their next reduction's part, and the lowest such rank's is raised on all."""
        try:
            yield
        except Exception as error:
            if getattr(error, _AGREED, False):
                raise
            self._exchange("failure", _Failure.of(self.rank, error), None, own=error)

    # -- collective operations -----------------------------------------------------------------
    def _exchange(self, op: str, part: Any, combine: Callable[[list], Any] | None, own: BaseException | None = None):
        """Gather ``(op, part)`` on rank 0, which applies ``combine`` to the parts (or picks the first
        failure), and broadcast the outcome: its value, or its exception raised on every rank."""
        self.n_reductions += 1
        item = part if isinstance(part, _Failure) else (op, part)
        items = self.comm.gather(item, root=0)
        outcome = None
        if self.rank == 0:
            outcome = _outcome(items, combine)
        outcome = self.comm.bcast(outcome, root=0)
        if isinstance(outcome, _Failure):
            error = own if own is not None and outcome.rank == self.rank else outcome.error
            setattr(error, _AGREED, True)
            raise error
        return outcome.value

    def _reduce(self, op: str, x: Array, count: int) -> Array:
        if getattr(x, "ndim", 0) == 0:  # a number, NumPy scalar or 0-d array: one exchange
            value = x.item() if hasattr(x, "item") else x
            total = self._exchange(op, (count, value), lambda parts: _combine_numbers(op, parts))
            return _like(x, total)
        xp = get_array_module(x)
        shape, dtype = tuple(x.shape), np.dtype(x.dtype)
        counts = self._exchange(op, (count, shape, dtype.str), lambda parts: _check_layout(op, parts))
        on_device = xp is not np and self.cuda_aware
        if on_device:
            send = xp.ascontiguousarray(x)
            xp.cuda.get_current_stream().synchronize()  # the MPI library reads the device buffer now
        else:
            send = np.ascontiguousarray(asnumpy(x))
        buffers = xp if on_device else np
        parts = buffers.empty((self.size, *shape), dtype=dtype) if self.rank == 0 else None
        self.comm.Gather(send, parts, root=0)
        result = _combine_arrays(op, parts, counts, dtype) if self.rank == 0 else buffers.empty(shape, dtype=dtype)
        self.comm.Bcast(result, root=0)
        return result if on_device or xp is np else xp.asarray(result)


def _outcome(items: list, combine: Callable[[list], Any] | None) -> _Done | _Failure:
    """Rank 0's verdict on the gathered items: the first failure, or the combined parts."""
    failures = [item for item in items if isinstance(item, _Failure)]
    if failures:
        return failures[0]
    ops = [op for op, _ in items]
    if len(set(ops)) > 1:
        return _Failure(0, RuntimeError(
            "the ranks are out of step (one in another collective operation than the others: "
            + ", ".join(f"rank {rank} in {op}" for rank, op in enumerate(ops))
            + "); every rank must run the same solver steps"
        ))
    try:
        return _Done(combine([part for _, part in items]))
    except Exception as error:
        return _Failure.of(0, error)


def _combine_numbers(op: str, parts: list[tuple[int, Any]]) -> Any:
    if op == "sum":
        total = parts[0][1]
        for _, value in parts[1:]:
            total = total + value
        return total
    weighted = [(count, value) for count, value in parts if count > 0]
    if not weighted:
        raise ValueError("a mean over no examples: every rank passed count 0")
    if len(weighted) == 1:  # one rank holds all the examples: its mean, not rounded again
        return weighted[0][1]
    total = 0.0
    for count, value in weighted:
        total += count * float(value)
    return total / sum(count for count, _ in weighted)


def _check_layout(op: str, parts: list[tuple[int, tuple, str]]) -> list[int]:
    """The ranks' counts, after checking that their arrays have one shape and dtype (and, for ``mean``, that
    some rank has examples): an error here reaches every rank, one in :func:`_combine_arrays` rank 0 alone."""
    layouts = {(shape, dtype) for _, shape, dtype in parts}
    if len(layouts) > 1:
        raise ValueError(
            "the ranks reduce arrays of different shapes or dtypes ("
            + ", ".join(f"rank {rank}: {shape} {np.dtype(dtype)}" for rank, (_, shape, dtype) in enumerate(parts))
            + ")"
        )
    counts = [count for count, _, _ in parts]
    if op == "mean" and not any(counts):
        raise ValueError("a mean over no examples: every rank passed count 0")
    return counts


def _combine_arrays(op: str, parts: Array, counts: list[int], dtype: np.dtype) -> Array:
    """Rank 0: the ranks' ``parts`` (stacked) added in rank order; for ``mean`` weighted by ``counts`` in float64."""
    if op == "sum":
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total
    ranks = [rank for rank, count in enumerate(counts) if count > 0]  # some: _check_layout
    if len(ranks) == 1:  # one rank holds all the examples: its mean, not rounded again
        return parts[ranks[0]].copy()
    total = counts[ranks[0]] * parts[ranks[0]].astype(np.float64)
    for rank in ranks[1:]:
        total += counts[rank] * parts[rank].astype(np.float64)
    return (total / sum(counts)).astype(dtype)


def _like(x: Any, value: Any) -> Any:
    """``value`` as the kind of number ``x`` is: a NumPy scalar or a 0-d array of its dtype and module
    (a Python number as it is)."""
    if isinstance(x, np.generic):
        return x.dtype.type(value)
    if hasattr(x, "ndim"):
        return get_array_module(x).asarray(value, dtype=x.dtype)
    return value
