"""Threads and the BLAS's thread count for the NumPy kernels: the one private place for both.

A time step acts on each example, each row of ``Y``, alone. The step kernels
(:meth:`ocdl.Layer.step` and its derivatives) therefore cut the rows into
blocks and run the *whole* step on each block: the product with ``K`` and the
activation's elementwise passes, the blocks shared among the threads (NumPy's
loops and BLAS release the GIL). ``Conv2d`` shares its blocks of images the
same way.

The kernel interface, the only names the numerical modules import from here
(a test holds them to it):

* :func:`row_blocks` runs a kernel that acts on rows alone over row blocks of
  its arrays (the layer's step kernels, the objective's products with the
  classifier);
* :func:`map_blocks` runs the items of one product (``Conv2d``'s blocks of
  images), shared among the threads when the data are large;
* :func:`vdot` is ``xp.vdot`` with the BLAS held to one thread on long
  vectors (the inner products of the solvers and of :mod:`ocdl.checks`).

The first two decide alone whether to use threads: only for NumPy arrays of at least
``_THREADED_ELEMENTS`` entries (CuPy and small arrays get one call, or the
items one after another). Everything else here (the thread pool, the sizes,
the BLAS limit) is private; tests and ``benchmarks/threads.py`` reach in.

While the blocks run, the BLAS is held to one thread per block, through
``threadpoolctl`` (which finds the BLAS libraries loaded in the process:
OpenBLAS, MKL, BLIS, on any platform). OpenBLAS's own worker threads keep
spinning for a while after each call, and on two cores they took the second
core from the elementwise passes: on a 2-core Xeon (2026-12-02) one wide
step (2048 x 256, float64) took 4.0 ms as a threaded GEMM followed by
elementwise passes and 3.1 ms as blocks of GEMM plus passes with
single-threaded BLAS. Where no BLAS's thread count can be set, the step
kernels run on the whole arrays, BLAS threading the products.

The same spinning is why the objective's products (``Y_N W`` and the like)
run as row blocks too, though one threaded BLAS call would do them as fast:
after such a call the BLAS's threads kept spinning into the propagation's
blocks that followed it. On a mini-batch of 128 MNIST images (16 layers,
float32, 2-core Xeon, 2026-12-05) the gradient took 140 ms with them and
96 ms with the products in blocks. An inner product of long vectors wakes
them too (OpenBLAS threads ``dot`` from 10,000 entries): the norm of each
mini-batch gradient (47,000 classifier weights) made Adam's next mini-batch
on MNIST 40 ms slower (143 ms against 105 ms), hence :func:`vdot`.
"""

from __future__ import annotations

import contextvars
import os
import threading

import numpy as np

from ._workspace import run_kernel, temporaries
from .backend import get_array_module, usable_cpus

__all__ = ["map_blocks", "row_blocks", "vdot"]

#: Most entries per row block, about; the blocks are as many as a multiple of
#: the threads. Large blocks keep the fixed cost per call small (Conv2d's:
#: blocks of 2^17 entries made the convolutional benchmark 5-10% slower),
#: and W2's states (2^19 entries) get one block per thread.
_BLOCK_ELEMENTS = 1 << 20
#: From this many entries :func:`vdot` holds the BLAS to one thread (OpenBLAS
#: threads its level-1 products from 10,000; below, the limit costs more than the product).
_VDOT_HELD_ENTRIES = 1 << 13
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
    return usable_cpus()


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


# -- the BLAS's thread count (threadpoolctl) -----------------------------------
_blas_selection = (None, None)  # (threadpoolctl's cached controller, its BLAS libraries)


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded in the process.

    ``get_cached_controller`` finds the libraries again only when a module
    has been imported since its last call; the selection of the BLAS among
    them is kept as long as that controller is, so a call costs about a
    microsecond.
    """
    from threadpoolctl import get_cached_controller

    global _blas_selection
    controller = get_cached_controller()
    cached, blas = _blas_selection
    if cached is not controller:
        blas = controller.select(user_api="blas")
        _blas_selection = (controller, blas)
    return blas


def blas_threads_settable() -> bool:
    """Whether a BLAS whose thread count can be set is loaded."""
    return len(_blas()) > 0


def single_threaded_blas():
    """A context manager that holds every loaded BLAS to one thread inside it, then restores it.

    ``threadpoolctl``'s own limit (it nests). Where the BLAS has one thread
    pool for the whole process (OpenBLAS on pthreads) the count is the
    process's, so :func:`in_parallel` holds it from one Python thread at a
    time. Where no BLAS is found it does nothing.
    """
    return _blas().limit(limits=1)


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
#: Held by the threaded call in progress: the pool's threads and the BLAS's thread count are
#: the process's, so calls from several Python threads take turns (each would use every core).
_threaded_call = threading.Lock()


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
    inline (no deadlock, no oversubscription). Threaded calls from several
    Python threads run one after another.
    """
    pool = _executor() if threaded and n > 1 and not _nested.active else False
    if not pool:
        return [task(i) for i in range(n)]
    batch = _Batch(task, n)
    with _threaded_call, single_threaded_blas():
        for _ in range(min(pool._max_workers, n - 1)):
            pool.submit(contextvars.copy_context().run, _nested_run, batch.work)
        _nested_run(batch.work)
        batch.finished.wait()
    if batch.error is not None:
        raise batch.error
    return batch.results


# -- the kernel interface --------------------------------------------------------
def _large(X) -> bool:
    """Whether ``X`` is a NumPy array big enough to share its work among threads."""
    return type(X) is np.ndarray and X.size >= _THREADED_ELEMENTS


def map_blocks(task, n_blocks: int, data) -> list:
    """``[task(i) for i in range(n_blocks)]``, shared among the threads when ``data`` is large.

    ``data`` is the array the blocks cut (``Conv2d``'s images): a NumPy array
    of at least ``_THREADED_ELEMENTS`` entries gets the threads, each block
    with a single-threaded BLAS; otherwise (smaller arrays, CuPy) the blocks
    run one after another on the calling thread.
    """
    return in_parallel(task, n_blocks, _large(data))


def row_blocks(kernel, *arrays) -> list:
    """Run ``kernel(*blocks)`` over row blocks of ``arrays`` (equal first dimensions; ``None`` passes through).

    ``kernel`` must act on rows alone: each output row depends only on the
    same rows of the inputs (a time step's product ``Y K`` and elementwise
    passes). NumPy arrays the largest of which has at least
    ``_THREADED_ELEMENTS`` entries, where the BLAS can be held to one thread,
    are cut into blocks of about ``_BLOCK_ELEMENTS`` entries (of the largest)
    shared among the threads; otherwise (smaller arrays, CuPy) ``kernel``
    gets the whole arrays in one call. Returns the
    kernel's return values, one per block. The buffers a kernel takes and
    does not return are given back when it returns
    (:func:`ocdl._workspace.run_kernel`).
    """
    X = largest = arrays[0]
    for a in arrays:  # a loop: max() with a key costs W1 (1,024 steps of 4,000 x 8) 1-2% of its gradient
        if a is not None and a.size > largest.size:
            largest = a
    if type(largest) is np.ndarray and largest.size * largest.itemsize < temporaries.min_bytes:
        return [kernel(*arrays)]  # its temporaries are not pooled (temporaries.min_bytes): nothing to give back
    if X.ndim == 0 or not _large(largest) or not blas_threads_settable():
        return [run_kernel(kernel, *arrays)]
    size = largest.size
    pool = _executor()
    rows, threads = X.shape[0], pool._max_workers + 1 if pool else 1
    step = -(-rows // (threads * -(-size // (threads * _BLOCK_ELEMENTS))))

    def run(k):
        i = k * step
        return run_kernel(kernel, *(a[i : i + step] if a is not None else None for a in arrays))

    return in_parallel(run, -(-rows // step), True)


def vdot(u, v):
    """``xp.vdot(u, v)``, with the BLAS held to one thread for host vectors of ``_VDOT_HELD_ENTRIES`` or more.

    A threaded ``dot`` is no faster on the vectors ocdl takes inner products
    of (parameters, classifier weights: memory-bound, microseconds), and the
    BLAS's threads keep spinning after it, into the propagation's blocks that
    follow (see the module's docstring). Holding the limit costs about 15
    microseconds. CuPy arrays and short vectors: ``xp.vdot`` as is. The test
    is on the memory, not the module: any ``np.ndarray`` (a subclass too) is
    multiplied by the host's BLAS.
    """
    xp = get_array_module(u, v)
    if not isinstance(u, np.ndarray) or u.size < _VDOT_HELD_ENTRIES or not blas_threads_settable():
        return xp.vdot(u, v)
    with single_threaded_blas():
        return xp.vdot(u, v)
