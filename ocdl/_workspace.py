r"""Buffers with an owner: who takes a NumPy array, who gives it back (private).

Fresh memory costs: the operating system zero-fills each new page at first
touch, which for narrow networks costs more than the propagation itself, and
the C library hands large freed blocks back between steps. So the sweeps
reuse their arrays, and every reused array has exactly one owner at a time:

* A :class:`BufferPool` holds **free** arrays, by shape and dtype; nothing
  else refers to them. :meth:`BufferPool.take` hands one out (or a new one),
  :meth:`BufferPool.give` takes one back.
* A :class:`Workspace` **owns** the arrays it took from its pool until it
  gives them back. :meth:`Workspace.run` runs one step of a sweep: the
  buffers the step asks for (:func:`step_empty`) are taken by the workspace;
  when the step returns, those its result refers to (as an array, a view, or
  inside tuples, lists and dicts) stay owned, the others go back to the pool
  at once. A result the workspace cannot see into (an object of another
  type) keeps every buffer of its step.
* The owner decides when its arrays are dead:

  - a **trajectory** (:class:`~ocdl.memory.StoreAll`) keeps every state and
    cache of its forward sweep; :meth:`~ocdl.memory.Trajectory.close` gives
    them back to the policy's pool (``with`` and :meth:`Workspace.close` do
    the same), so that the next forward sweep writes into them again. The
    final state is handed over to the caller (features are read off it) and
    is never reused; the other states and caches it served are the
    trajectory's, valid until it closes;
  - a **derivative sweep** (:meth:`ocdl.Network.jvp`, ``vjp``) and the
    forward sweep that keeps no state (:func:`ocdl.memory.propagate`) carry
    one state from step to step (:meth:`Workspace.carry`): after each step
    it gives back what the new state no longer refers to, and the sweep's
    result is handed over to the caller (:meth:`Workspace.hand_over`), who
    owns it from then on;
  - the policies that recompute states run each step alone
    (:func:`run_step`): its temporaries go back to the pool, its result is
    the caller's;
  - a row-block kernel inside a step (:func:`run_kernel`) takes its
    temporaries from :data:`temporaries` and gives them back when it
    returns, so the step's next kernel reuses them.

Outside a step run by a workspace (a user calling a transform or a stepper
directly) :func:`step_empty` is ``numpy.empty``: the caller owns the array,
and nothing ever reuses it. Worker threads of :mod:`ocdl.parallel` run in
the context of the step that started them, so their buffers have the same
owner; taking and giving are thread safe (a lock per pool; a workspace's
list of arrays only grows while its step runs). Nothing here counts
references.

GPU arrays: on any array module other than NumPy (CuPy, with its own memory
pool) :func:`step_empty` is that module's ``empty`` and nothing is pooled;
the array module is the one of the array in hand
(:func:`ocdl.backend.get_array_module`).
"""

from __future__ import annotations

import math
import threading
from contextvars import ContextVar
from typing import Any

import numpy as np

#: The workspace whose step is running in this context (none outside a step).
_RUNNING: ContextVar = ContextVar("ocdl_running_workspace", default=None)


class BufferPool:
    """Free NumPy arrays by ``(shape, dtype)``, handed out again by :meth:`take`.

    Parameters
    ----------
    min_bytes : smaller arrays are not pooled (``take`` returns a new array
        and the workspace does not own it): the C library recycles small
        blocks without page faults.
    max_bytes, max_per_shape : most bytes, and most arrays of one shape and
        dtype, kept free at once (``None``: no bound); an array given back
        beyond a bound is dropped.
    """

    def __init__(self, min_bytes: int = 0, max_bytes: int | None = None, max_per_shape: int | None = None) -> None:
        self.min_bytes = int(min_bytes)
        self.max_bytes = max_bytes
        self.max_per_shape = max_per_shape
        self._free: dict = {}
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the free arrays held."""
        return self._nbytes

    def take(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """A free array of ``shape`` and ``dtype`` (removed from the pool), else a new one."""
        with self._lock:
            free = self._free.get((shape, dtype))
            if free:
                a = free.pop()
                self._nbytes -= a.nbytes
                return a
        return np.empty(shape, dtype=dtype)

    def give(self, arrays) -> None:
        """Take back ``arrays`` (the giver no longer uses them), within the bounds."""
        with self._lock:
            for a in arrays:
                free = self._free.setdefault((a.shape, a.dtype), [])
                if self.max_per_shape is not None and len(free) >= self.max_per_shape:
                    continue
                if self.max_bytes is not None and self._nbytes + a.nbytes > self.max_bytes:
                    continue
                free.append(a)
                self._nbytes += a.nbytes

    def replace(self, arrays) -> None:
        """Drop the free arrays held and keep ``arrays`` instead (a pool that holds one trajectory)."""
        self.clear()
        self.give(arrays)

    def clear(self) -> None:
        """Drop every free array."""
        with self._lock:
            self._free = {}
            self._nbytes = 0


def _roots(value: Any) -> set | None:
    """``id`` of the array owning the memory of every NumPy array in ``value``.

    ``value`` may nest arrays in tuples, lists and dict values; ``None`` when
    it holds any other object, whose arrays cannot be seen.
    """
    # Runs once a step: the common cases (exact ndarrays, tuples) are tested first, by type identity.
    ndarray = np.ndarray
    if type(value) is tuple:  # a state, or (state, cache), of arrays that own their memory: no walk
        found = set()
        plain = True
        for x in value:
            if type(x) is tuple:
                for y in x:
                    if type(y) is not ndarray or y.base is not None:
                        plain = False
                        break
                    found.add(id(y))
            elif type(x) is not ndarray or x.base is not None:
                plain = False
            else:
                found.add(id(x))
            if not plain:
                break
        if plain:
            return found
    found, stack = set(), [value]
    while stack:
        x = stack.pop()
        kind = type(x)
        if kind is ndarray or isinstance(x, ndarray):
            base = x.base
            while isinstance(base, ndarray):
                x, base = base, base.base
            found.add(id(x))
        elif kind is tuple or kind is list or isinstance(x, (tuple, list)):
            stack.extend(x)
        elif x is None:
            pass
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif not isinstance(x, (bool, int, float, complex, str, np.generic)):
            return None
    return found


class Workspace:
    """The arrays one owner (a trajectory, a sweep) holds, taken from ``pool``.

    See the module docstring for who takes and who gives back. Usable as a
    context manager: leaving it gives back every array still owned. One
    thread at a time runs its steps and calls its methods; while a step runs,
    the step's own threads may take from it too (an append to a list is
    atomic).
    """

    __slots__ = ("pool", "_owned")

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self._owned: list = []

    @property
    def arrays(self) -> list:
        """The arrays owned now (a copy of the list)."""
        return list(self._owned)

    def take(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` from the pool, owned by this workspace (if pooled)."""
        pool = self.pool
        if pool.min_bytes and math.prod(shape) * dtype.itemsize < pool.min_bytes:
            return np.empty(shape, dtype=dtype)
        a = pool.take(shape, dtype)
        self._owned.append(a)
        return a

    def run(self, step, *args):
        """``step(*args)``, its buffers (:func:`step_empty`) taken by this workspace.

        Afterwards the workspace keeps those the result refers to and gives
        the others back; the arrays it owned before are untouched (a
        trajectory keeps every step's result). Only the step's own kernels
        (:func:`run_kernel`) may take from the workspace meanwhile.
        """
        mark = len(self._owned)
        result = self._running(step, args)
        if len(self._owned) > mark:
            self._settle(mark, result)
        return result

    def carry(self, step, *args):
        """``step(*args)`` as in :meth:`run`, then the workspace owns only what the result refers to.

        For a sweep that carries one state from step to step: the previous
        state's arrays and the step's temporaries go back together. A result
        that cannot be seen into keeps everything.
        """
        result = self._running(step, args)
        if self._owned:
            self._settle(0, result)
        return result

    def _running(self, step, args: tuple):
        """``step(*args)`` with this workspace as the running one (:func:`step_empty` takes from it)."""
        token = _RUNNING.set(self)
        try:
            return step(*args)
        finally:
            _RUNNING.reset(token)

    def _settle(self, start: int, result: Any) -> None:
        """Give back the owned arrays from position ``start`` on that ``result`` does not refer to."""
        keep = _roots(result)
        if keep is None:
            return
        owned = self._owned
        kept, back = [], []
        for a in owned[start:]:
            (kept if id(a) in keep else back).append(a)
        if back:
            del owned[start:]
            owned += kept
            self.pool.give(back)

    def hand_over(self, value: Any) -> Any:
        """Return ``value``, its arrays no longer owned: the caller owns them and nothing reuses them.

        A value that cannot be seen into takes every array.
        """
        keep = _roots(value)
        self._owned = [] if keep is None else [a for a in self._owned if id(a) not in keep]
        return value

    def release(self) -> list:
        """The owned arrays, no longer owned: the caller decides their fate."""
        owned, self._owned = self._owned, []
        return owned

    def close(self) -> None:
        """Give every owned array back to the pool."""
        self.pool.give(self.release())

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: Temporaries of the derivative sweeps, shared by all threads: at least 1 MiB
#: each (smaller ones the C library recycles without page faults), at most
#: 8 of one shape and 256 MiB in all kept free.
temporaries = BufferPool(min_bytes=1 << 20, max_bytes=1 << 28, max_per_shape=8)


def step_empty(like: Any, shape: tuple | None = None, dtype: Any = None) -> Any:
    """An uninitialised array for the step being run: ``like``'s shape, dtype and array module unless given.

    Inside :meth:`Workspace.run` on NumPy it is taken by that workspace
    (reused once given back); otherwise ``xp.empty``, owned by the caller.
    Steppers, layers and transforms call it for their outputs and temporaries.
    """
    shape = like.shape if shape is None else tuple(shape)
    dtype = like.dtype if dtype is None else np.dtype(dtype)
    if type(like) is not np.ndarray:  # CuPy has its own memory pool
        from .backend import get_array_module

        return get_array_module(like).empty(shape, dtype=dtype)
    workspace = _RUNNING.get()
    return np.empty(shape, dtype=dtype) if workspace is None else workspace.take(shape, dtype)


def run_kernel(kernel, *args):
    """``kernel(*args)`` inside the running step: the buffers it takes and does not return go back at once.

    For the row-block kernels (:func:`ocdl._threads.row_blocks`), which write
    into blocks of their step's outputs: their temporaries (a product, ``D W``)
    come from :data:`temporaries` and die with them, so the next kernel of
    the same step (the second half of a Verlet step) reuses them while they
    are in cache. What the kernel returns passes to the step. Outside a step
    it is ``kernel(*args)``.
    """
    step = _RUNNING.get()
    if step is None:
        return kernel(*args)
    scope = Workspace(temporaries)  # this kernel's: other blocks of the step may run at the same time
    result = scope._running(kernel, args)
    if scope._owned:
        scope._settle(0, result)
        step._owned.extend(scope._owned)  # atomic, as the step's other threads add theirs
    return result


def run_step(step, *args):
    """``step(*args)`` with its temporaries from :data:`temporaries`; the result is the caller's."""
    with Workspace(temporaries) as workspace:
        return workspace.hand_over(workspace.run(step, *args))


def clear_temporaries() -> None:
    """Free the temporaries kept for reuse."""
    temporaries.clear()
