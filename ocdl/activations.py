r"""Activation functions :math:`\sigma` with their derivatives.

Each activation is applied entry by entry and returns, in one pass, the value
:math:`\sigma(x)` and the derivative :math:`\sigma'(x)` that the layer's
linearisation reuses.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from .backend import get_array_module

# -- elementwise work in row blocks, on threads for large NumPy arrays (private) --
#: Elements per block of a fused chain: its operands stay in cache, and each
#: pass is long enough that two threads seldom wait for the GIL between passes
#: (2^15 gains 1.15x on two threads, 2^17 1.9x for float64 tanh chains).
_BLOCK_ELEMENTS = 1 << 17
#: Below this many elements a chain runs on whole arrays on the calling thread.
#: Measured between the GEMMs of whole sweeps (2 cores, AMD EPYC, 2026-12-02):
#: on the benchmarks' W2 states (2^19 entries) whole arrays were 0-20% faster
#: than threaded blocks, on W3's (2.4 x 2^20) threaded blocks 10-45% faster.
_THREADED_ELEMENTS = 1 << 20
_pool_lock = threading.Lock()
_pool = None


def _num_threads() -> int:
    """Threads for elementwise chains: the BLAS/OpenMP setting, else the usable CPUs."""
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

            _pool = (ThreadPoolExecutor(_num_threads() - 1, thread_name_prefix="ocdl")
                     if _num_threads() > 1 else False)
            if hasattr(os, "register_at_fork"):  # a forked child starts without the threads
                os.register_at_fork(after_in_child=_reset_executor)
        return _pool


def _reset_executor() -> None:
    global _pool
    _pool = None


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


def _in_parallel(task, n: int, threaded: bool) -> list:
    """``[task(i) for i in range(n)]``, the items shared among the threads if ``threaded``."""
    pool = _executor() if threaded and n > 1 and not _nested.active else False
    if not pool:
        return [task(i) for i in range(n)]
    batch = _Batch(task, n)
    for _ in range(min(pool._max_workers, n - 1)):
        pool.submit(_as_worker, batch.work)
    _nested.active = True  # a task that parallelises again runs inline (no deadlock)
    try:
        batch.work()
    finally:
        _nested.active = False
    batch.finished.wait()
    if batch.error is not None:
        raise batch.error
    return batch.results


class _Nested(threading.local):
    active = False


_nested = _Nested()


def _as_worker(work) -> None:
    _nested.active = True
    try:
        work()
    finally:
        _nested.active = False


def _elementwise(kernel, *arrays) -> list:
    """Run ``kernel(*blocks)`` over row blocks of ``arrays`` (equal first dimensions).

    ``kernel`` must be elementwise (each output row depends on the same rows
    of the inputs). NumPy arrays of at least ``_THREADED_ELEMENTS`` entries
    are cut into blocks of about ``_BLOCK_ELEMENTS`` entries, so that a chain
    of several passes runs in cache, and the blocks are shared among the
    threads (NumPy's loops release the GIL). Smaller arrays and other array
    modules (CuPy) get one call on the whole arrays. Returns the kernel's
    return values, one per block.
    """
    X = arrays[0]
    size = X.size
    if type(X) is not np.ndarray or size < _THREADED_ELEMENTS or X.ndim == 0:
        return [kernel(*arrays)]
    rows = X.shape[0]
    step = max(1, (_BLOCK_ELEMENTS * rows) // size)

    def run(k):
        i = k * step
        return kernel(*(a[i : i + step] for a in arrays))

    return _in_parallel(run, -(-rows // step), True)


class Activation:
    """Base class: subclasses implement :meth:`value_and_derivative`."""

    name = "activation"

    def value_and_derivative(self, x: Any) -> tuple[Any, Any]:
        """Return :math:`(\\sigma(x), \\sigma'(x))` entry by entry."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.value_and_derivative(x)[0]

    def derivative(self, x: Any) -> Any:
        """:math:`\\sigma'(x)` entry by entry."""
        return self.value_and_derivative(x)[1]

    def _axpy_into(self, z: Any, b: Any, c: float, X: Any, out: Any, d_out: Any = None) -> None:
        """``out = X + c sigma(z + b)`` and, unless ``d_out`` is ``None``, ``d_out = c sigma'(z + b)``.

        The kernel of a time step (``z`` is left unchanged): one call per row
        block (see :func:`_elementwise`); subclasses fuse it into fewer passes
        and skip the derivative's passes when it is not wanted.
        """
        xp = get_array_module(z)
        value, deriv = self.value_and_derivative(z + b)
        xp.multiply(value, c, out=out)
        xp.add(out, X, out=out)
        if d_out is not None:
            xp.multiply(deriv, c, out=d_out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Tanh(Activation):
    r""":math:`\sigma(x) = \tanh x`, :math:`\sigma'(x) = 1 - \tanh^2 x`."""

    name = "tanh"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        t = xp.tanh(x)
        d = xp.multiply(t, t)
        xp.subtract(1, d, out=d)
        return t, d

    def _axpy_into(self, z, b, c, X, out, d_out=None):
        # t = tanh(z + b) (in d_out, else in out); out = c t; [d_out = c t^2 -> c (1 - t^2)]; out = X + c t
        xp = get_array_module(z)
        t = out if d_out is None else d_out
        xp.add(z, b, out=t)
        xp.tanh(t, out=t)
        xp.multiply(t, c, out=out)
        if d_out is not None:
            xp.multiply(out, d_out, out=d_out)
            xp.subtract(c, d_out, out=d_out)
        xp.add(out, X, out=out)


class ReLU(Activation):
    r""":math:`\sigma(x) = \max(x, 0)`, :math:`\sigma'(x) = [x > 0]`.

    Not differentiable at 0; Taylor tests hold for step lengths that do not
    move a pre-activation across 0.
    """

    name = "relu"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        positive = x > 0
        return xp.where(positive, x, 0).astype(x.dtype), positive.astype(x.dtype)


class SmoothReLU(Activation):
    r"""A smooth (:math:`C^\infty`) ReLU of width :math:`\eta`:

    .. math::

       \sigma(x) = \tfrac12\big(x + \sqrt{x^2 + \eta^2}\big), \qquad
       \sigma'(x) = \tfrac12\big(1 + x / \sqrt{x^2 + \eta^2}\big).

    It tends to :math:`\max(x, 0)` as :math:`\eta \to 0` (the error is at
    most :math:`\eta/2`, at 0) and, being smooth, keeps the second-order
    Taylor behaviour that Gauss-Newton and the derivative checks rely on.
    """

    name = "smoothrelu"

    def __init__(self, eta: float = 0.1) -> None:
        if not eta > 0:
            raise ValueError(f"eta must be positive, got {eta}")
        self.eta = float(eta)

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        root = xp.sqrt(x * x + self.eta**2)
        return 0.5 * (x + root), 0.5 * (1 + x / root)

    def __repr__(self) -> str:
        return f"SmoothReLU(eta={self.eta})"


class Identity(Activation):
    r""":math:`\sigma(x) = x`, :math:`\sigma'(x) = 1`."""

    name = "identity"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        return x, xp.ones_like(x)


ACTIVATIONS = {cls.name: cls for cls in (Tanh, ReLU, SmoothReLU, Identity)}


def get_activation(activation: str | Activation) -> Activation:
    """An :class:`Activation` from an instance or one of the names in ``ACTIVATIONS``."""
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]()
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be an Activation or one of {sorted(ACTIVATIONS)}, got {activation!r}"
        ) from None
