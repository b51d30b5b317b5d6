"""Work shared among threads in row blocks (NumPy on the CPU; private helpers).

A time step acts on each example, each row of ``Y``, alone. The step kernels
(:meth:`ocdl.Layer._step` and its derivatives) therefore cut the rows into
blocks and run the *whole* step on each block: the product with ``K`` and the
activation's elementwise passes, the blocks shared among the threads
(NumPy's loops and BLAS release the GIL).

While the blocks run, BLAS is held to one thread per block. OpenBLAS's own
worker threads keep spinning for a while after each call, and on two cores
they took the second core from the elementwise passes: on a 2-core Xeon
(2026-12-02) one wide step (2048 x 256, float64) took 4.0 ms as a threaded
GEMM followed by elementwise passes and 3.1 ms as blocks of GEMM plus
passes with single-threaded BLAS. Where the BLAS's thread count cannot be
set (no OpenBLAS found, or not Linux) the blocks run one after another on
the whole arrays, BLAS threading the products as before.
"""

from __future__ import annotations

import contextvars
import ctypes
import os
import threading
from contextlib import contextmanager

import numpy as np

from ._workspace import run_kernel

#: Most entries per row block, about; the blocks are as many as a multiple of
#: the threads. Large blocks keep the fixed cost per call small (Conv2d's:
#: blocks of 2^17 entries made the convolutional benchmark 5-10% slower),
#: and W2's states (2^19 entries) get one block per thread.
_BLOCK_ELEMENTS = 1 << 20
#: From this many entries blocks of GEMM work are shared among threads (the
#: step kernels' rows, Conv2d's images); below it one call on the whole arrays
#: costs less than the hand-off (narrow networks: 3x slower threaded).
_THREADED_ELEMENTS = 1 << 18

_pool_lock = threading.Lock()
_pool = None


def _num_threads() -> int:
    """Threads for CPU work: the OpenMP/BLAS setting, else the usable CPUs."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        try:
            n = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if n >= 1:
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            n = _num_threads()
            _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="ocdl") if n > 1 else False
            if hasattr(os, "register_at_fork"):  # a forked child starts without the threads
                os.register_at_fork(after_in_child=_reset_executor)
        return _pool


def _reset_executor() -> None:
    global _pool
    _pool = None


# -- the BLAS's thread count -------------------------------------------------
_OPENBLAS_PREFIXES = ("scipy_", "")  # NumPy/SciPy wheels rename the symbols
_OPENBLAS_SUFFIXES = ("64_", "")  # 64-bit integer builds
_blas_lock = threading.Lock()
_blas_state = {"controls": None, "depth": 0, "saved": []}


def _loaded_openblas_controls() -> list:
    """``(set_num_threads, get_num_threads)`` of every OpenBLAS loaded in this process.

    Found among the shared libraries in ``/proc/self/maps`` (Linux), once per
    OpenBLAS: SciPy's wrapper modules also resolve its functions, and they
    are kept once, by address. An empty list elsewhere or when no loaded
    library exports OpenBLAS's functions.
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "blas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        return []
    names = [(f"{p}openblas_set_num_threads{s}", f"{p}openblas_get_num_threads{s}")
             for p in _OPENBLAS_PREFIXES for s in _OPENBLAS_SUFFIXES]
    controls, seen = [], set()
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        found = next(((getattr(lib, a), getattr(lib, b)) for a, b in names
                      if hasattr(lib, a) and hasattr(lib, b)), None)
        if found is None:
            continue
        address = ctypes.cast(found[0], ctypes.c_void_p).value
        if address not in seen:
            seen.add(address)
            setter, getter = found
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            controls.append(found)
    return controls


def blas_threads_settable() -> bool:
    """Whether :func:`single_threaded_blas` can hold the BLAS to one thread."""
    with _blas_lock:
        if _blas_state["controls"] is None:
            _blas_state["controls"] = _loaded_openblas_controls()
        return bool(_blas_state["controls"])


@contextmanager
def single_threaded_blas():
    """Hold every loaded OpenBLAS to one thread inside the block (nested and thread safe).

    The first caller to enter saves the thread counts and the last to leave
    restores them. Does nothing where :func:`blas_threads_settable` is false.
    """
    if not blas_threads_settable():
        yield
        return
    with _blas_lock:
        if _blas_state["depth"] == 0:
            _blas_state["saved"] = [get() for _, get in _blas_state["controls"]]
            for set_threads, _ in _blas_state["controls"]:
                set_threads(1)
        _blas_state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0:
                for (set_threads, _), n in zip(_blas_state["controls"], _blas_state["saved"]):
                    set_threads(n)


# -- items of a task shared among the threads ----------------------------------
class _Batch:
    """Items ``0 .. n-1`` of ``task``, each claimed by whichever thread is free.

    Claiming item by item (rather than handing each thread a fixed share)
    keeps a descheduled thread on a busy machine from holding up the rest:
    the caller works through the items itself and waits only for those
    another thread has started.
    """

    def __init__(self, task, n: int) -> None:
        self.task, self.n = task, n
        self.results = [None] * n
        self.next = 0
        self.left = n
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.error = None

    def work(self) -> None:
        while True:
            with self.lock:
                i = self.next
                self.next += 1
            if i >= self.n:
                return
            try:
                self.results[i] = self.task(i)
            except BaseException as exc:  # re-raised by the caller
                self.error = exc
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.finished.set()


class _Nested(threading.local):
    active = False


_nested = _Nested()


def _nested_run(work) -> None:
    """``work()`` with this thread marked as running items: nested parallel calls run inline."""
    _nested.active = True
    try:
        work()
    finally:
        _nested.active = False


def in_parallel(task, n: int, threaded: bool) -> list:
    """``[task(i) for i in range(n)]``, the items shared among the threads if ``threaded``.

    Threaded items run under :func:`single_threaded_blas`, each thread in a
    copy of the caller's context (the workspace of the running step,
    :mod:`ocdl._workspace`); a task that parallelises again runs its items
    inline (no deadlock, no oversubscription).
    """
    pool = _executor() if threaded and n > 1 and not _nested.active else False
    if not pool:
        return [task(i) for i in range(n)]
    batch = _Batch(task, n)
    with single_threaded_blas():
        for _ in range(min(pool._max_workers, n - 1)):
            pool.submit(contextvars.copy_context().run, _nested_run, batch.work)
        _nested_run(batch.work)
        batch.finished.wait()
    if batch.error is not None:
        raise batch.error
    return batch.results


def row_blocks(kernel, *arrays) -> list:
    """Run ``kernel(*blocks)`` over row blocks of ``arrays`` (equal first dimensions).

    ``kernel`` must act on rows alone: each output row depends only on the
    same rows of the inputs (a time step's product ``Y K`` and elementwise
    passes). NumPy arrays of at least ``_THREADED_ELEMENTS`` entries, where
    the BLAS can be held to one thread, are cut into blocks of about
    ``_BLOCK_ELEMENTS`` entries shared among the threads; otherwise (smaller
    arrays, CuPy) ``kernel`` gets the whole arrays in one call. Returns the
    kernel's return values, one per block. The buffers a kernel takes and
    does not return are given back when it returns
    (:func:`ocdl._workspace.run_kernel`).
    """
    X = arrays[0]
    size = X.size
    if type(X) is not np.ndarray or X.ndim == 0 or size < _THREADED_ELEMENTS or not blas_threads_settable():
        return [run_kernel(kernel, *arrays)]
    pool = _executor()
    rows, threads = X.shape[0], pool._max_workers + 1 if pool else 1
    step = -(-rows // (threads * -(-size // (threads * _BLOCK_ELEMENTS))))

    def run(k):
        i = k * step
        return run_kernel(kernel, *(a[i : i + step] if a is not None else None for a in arrays))

    return in_parallel(run, -(-rows // step), True)
