"""Keep every state and cache in memory: fastest, memory :math:`O(N s n)`.

The arrays of a closed trajectory are handed back to its :class:`StoreAll`,
whose next forward sweep writes into them again: a training loop then touches
no fresh memory after its first iteration (fresh pages are zero-filled by the
operating system at first touch, which costs more than the propagation itself
for narrow networks). An array is reused only when nothing else refers to it
any more, so an output held by the caller is never overwritten.
"""

from __future__ import annotations

import math
import sys
import threading
from contextvars import ContextVar

import numpy as np

from .base import MemoryPolicy, Trajectory

#: The pool of the StoreAll whose forward sweep is running (none outside one).
_ACTIVE_POOL: ContextVar = ContextVar("ocdl_store_all_pool", default=None)


def trajectory_empty(like, shape=None):
    """An uninitialised array for a state or cache that a trajectory will keep.

    Inside a :class:`StoreAll` forward sweep on NumPy arrays it comes from
    that policy's pool of released arrays; otherwise it is
    ``xp.empty(shape, like.dtype)``. Steppers call it for their outputs.
    """
    shape = like.shape if shape is None else tuple(shape)
    if type(like) is not np.ndarray:  # CuPy has its own memory pool
        from ..backend import get_array_module

        return get_array_module(like).empty(shape, dtype=like.dtype)
    pool = _ACTIVE_POOL.get()
    return np.empty(shape, dtype=like.dtype) if pool is None else pool.take(shape, like.dtype)


def _unreferenced_refcount() -> int:
    """What ``sys.getrefcount`` reports, in :meth:`_ArrayPool.take`, for an array nothing else holds."""
    stack = [np.empty(1)]
    a = stack.pop()
    return sys.getrefcount(a)


_UNREFERENCED = _unreferenced_refcount()


# -- temporaries of the derivative sweeps ----------------------------------
#: Bytes of temporaries kept for reuse, per thread.
_TEMP_BYTES = 1 << 28
#: Arrays of one shape kept for reuse (a step has a handful alive at once).
_TEMP_PER_SHAPE = 8
#: Smaller temporaries come from the C library directly, which recycles them without page faults.
_TEMP_MIN_BYTES = 1 << 20


class _TemporaryCache(threading.local):
    """Per thread: the last temporaries handed out, reused once nothing else refers to them.

    The sweeps allocate a few arrays of the same shapes at every step; reusing
    them avoids the page faults of fresh memory when the C library hands freed
    megabytes back to the operating system between steps.
    """

    def __init__(self) -> None:
        self.arrays: dict = {}  # (shape, dtype) -> arrays handed out
        self.nbytes = 0

    def empty(self, shape, dtype) -> np.ndarray:
        key = (shape, dtype)
        arrays = self.arrays.get(key)
        if arrays is None:
            arrays = self.arrays[key] = []
        for a in arrays:
            if sys.getrefcount(a) <= _UNREFERENCED_IN_LOOP:
                return a
        a = np.empty(shape, dtype=dtype)
        if len(arrays) < _TEMP_PER_SHAPE:
            if self.nbytes + a.nbytes > _TEMP_BYTES:  # start over rather than grow
                self.clear()
                arrays = self.arrays[key] = []
            arrays.append(a)
            self.nbytes += a.nbytes
        return a

    def clear(self) -> None:
        self.arrays = {}
        self.nbytes = 0


def _unreferenced_in_loop() -> int:
    """``sys.getrefcount`` in :meth:`_TemporaryCache.empty`'s loop for an array only the cache holds."""
    arrays = [np.empty(1)]
    for a in arrays:
        return sys.getrefcount(a)


_UNREFERENCED_IN_LOOP = _unreferenced_in_loop()
_temporaries = _TemporaryCache()


def temporary_empty(shape, dtype, like):
    """An uninitialised array for a temporary of a time step (NumPy: reused between steps).

    Arrays handed out stay in a small per-thread cache and are handed out
    again once nothing outside the cache refers to them, so a result kept by
    the caller is never overwritten. On the array module of ``like`` other
    than NumPy (CuPy, with its own memory pool) it is ``xp.empty``.
    """
    if type(like) is not np.ndarray:
        from ..backend import get_array_module

        return get_array_module(like).empty(shape, dtype=dtype)
    dtype = np.dtype(dtype)
    if math.prod(shape) * dtype.itemsize < _TEMP_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    return _temporaries.empty(tuple(shape), dtype)


def clear_temporaries() -> None:
    """Free the temporaries this thread keeps for reuse."""
    _temporaries.clear()


class _ArrayPool:
    """NumPy arrays of the last closed trajectory, reused while nothing else refers to them."""

    def __init__(self) -> None:
        self._free: dict = {}

    def take(self, shape, dtype) -> np.ndarray:
        stack = self._free.get((shape, dtype))
        while stack:
            a = stack.pop()
            if sys.getrefcount(a) <= _UNREFERENCED:  # nothing outside the pool holds it
                return a
        return np.empty(shape, dtype=dtype)

    def give(self, records) -> None:
        """Adopt the NumPy arrays found in ``records`` (nested tuples/lists), replacing what the pool held."""
        free, seen = {}, set()
        stack = list(records)
        while stack:
            x = stack.pop()
            if type(x) is np.ndarray:
                if x.base is None and id(x) not in seen:
                    seen.add(id(x))
                    free.setdefault((x.shape, x.dtype), []).append(x)
            elif isinstance(x, (tuple, list)):
                stack.extend(x)
        for arrays in free.values():  # only arrays that can be written in place
            arrays[:] = [a for a in arrays if a.flags.c_contiguous and a.flags.writeable]
        self._free = free

    def clear(self) -> None:
        self._free = {}


def propagate(stepper, theta_steps, h, state0) -> tuple:
    r"""The final state :math:`x_N` of the forward sweep from ``state0``, keeping no other state.

    For the output alone (prediction, a line search's trial): whatever the
    memory policy, no state outlives the step after it, and no cache is
    computed (:meth:`~ocdl.steppers.Stepper.advance`). On NumPy the
    arrays of step :math:`j` are recycled for step :math:`j + 2` (once
    nothing refers to them), so a sweep touches the memory of two steps and
    no fresh pages after its first steps.
    """
    pool = _ArrayPool()
    token = _ACTIVE_POOL.set(pool)
    try:
        state = state0
        for theta_j in theta_steps:
            state_next = stepper.advance(state, theta_j, h)
            pool.give([state])
            state = state_next
    finally:
        _ACTIVE_POOL.reset(token)
    return state


class StoredTrajectory(Trajectory):
    """All :math:`(x_j, \\text{cache}_j)` held in a list."""

    def __init__(self, records: list, final_state: tuple, pool: _ArrayPool | None = None) -> None:
        self._records = records
        self.final_state = final_state
        self.n_steps = len(records)
        self._pool = pool

    def steps(self):
        for j, (state, cache) in enumerate(self._records):
            yield j, state, cache

    def reversed_steps(self):
        for j in reversed(range(self.n_steps)):
            state, cache = self._records[j]
            yield j, state, cache

    def close(self) -> None:
        records, self._records = self._records, []
        if self._pool is not None and records:
            self._pool.give(records + [self.final_state])


class StoreAll(MemoryPolicy):
    """Store every forward state and its cache (the default for small problems).

    ``reuse`` (default ``True``): closed trajectories hand their arrays back
    for the next forward sweep (see the module docstring); the policy then
    holds up to one trajectory's memory between sweeps, which :meth:`release`
    frees.
    """

    def __init__(self, reuse: bool = True) -> None:
        self.reuse = bool(reuse)
        self._pool = _ArrayPool()

    def forward(self, stepper, theta_steps, h, state0):
        records, state = [], state0
        token = _ACTIVE_POOL.set(self._pool if self.reuse else None)
        try:
            for theta_j in theta_steps:
                state_next, cache = stepper.step(state, theta_j, h)
                records.append((state, cache))
                state = state_next
        finally:
            _ACTIVE_POOL.reset(token)
        return StoredTrajectory(records, state, self._pool if self.reuse else None)

    def release(self) -> None:
        """Free the arrays kept for reuse (and this thread's cached step temporaries)."""
        self._pool.clear()
        clear_temporaries()

    def __repr__(self) -> str:
        return "StoreAll()"
