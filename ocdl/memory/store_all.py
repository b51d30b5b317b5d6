"""Keep every state and cache in memory: fastest, memory :math:`O(N s n)`.

A trajectory owns the arrays of its forward sweep (a
:class:`~ocdl._workspace.Workspace` on its policy's pool) and gives them back
when it closes, so the policy's next forward sweep writes into them again: a
training loop then touches no fresh memory after its first iteration (fresh
pages are zero-filled by the operating system at first touch, which costs
more than the propagation itself for narrow networks). The final state is
handed over to the caller and never reused; the states and caches served by
:meth:`~StoredTrajectory.steps` are the trajectory's until it closes.
"""

from __future__ import annotations

from .._workspace import BufferPool, Workspace, clear_temporaries, temporaries
from .base import MemoryPolicy, Trajectory


class StoredTrajectory(Trajectory):
    """All :math:`(x_j, \\text{cache}_j)` held in a list, their arrays owned by ``workspace``.

    :meth:`close` hands ``final_state`` over to the caller and the other
    arrays back to ``pool`` (which then holds this trajectory's arrays and
    nothing else); without a ``pool`` they are dropped.
    """

    def __init__(self, records: list, final_state: tuple, workspace: Workspace, pool: BufferPool | None) -> None:
        self._records = records
        self.final_state = final_state
        self.n_steps = len(records)
        self._workspace = workspace
        self._pool = pool

    def steps(self):
        for j, (state, cache) in enumerate(self._records):
            yield j, state, cache

    def reversed_steps(self):
        for j in reversed(range(self.n_steps)):
            state, cache = self._records[j]
            yield j, state, cache

    def close(self) -> None:
        self._records, self.n_steps = [], 0
        self._workspace.hand_over(self.final_state)
        arrays = self._workspace.release()
        if self._pool is not None and arrays:
            self._pool.replace(arrays)


class SweptTrajectory(Trajectory):
    """The trajectory of a forward sweep run in one piece (:meth:`~ocdl.steppers.Stepper.sweep`): its
    record serves the states and caches, and its derivative sweeps (:attr:`Trajectory.sweep`)."""

    def __init__(self, sweep) -> None:
        self.sweep, self.final_state, self.n_steps = sweep, sweep.final_state, sweep.n_steps

    def steps(self):
        for j in range(self.n_steps):
            yield (j, *self.sweep.record(j))

    def reversed_steps(self):
        for j in reversed(range(self.n_steps)):
            yield (j, *self.sweep.record(j))

    def close(self) -> None:
        self.sweep, self.n_steps = None, 0


class StoreAll(MemoryPolicy):
    """Store every forward state and its cache (the default for small problems).

    ``reuse`` (default ``True``): closed trajectories hand their arrays back
    for the next forward sweep (see the module docstring); the policy then
    holds up to one trajectory's memory between sweeps, which :meth:`release`
    frees. Trajectories open at the same time never share an array. Where
    the stepper runs the whole sweep in one piece
    (:meth:`~ocdl.steppers.Stepper.sweep`, a fused GPU kernel), the
    trajectory is that sweep's record (:class:`SweptTrajectory`).
    """

    def __init__(self, reuse: bool = True) -> None:
        self.reuse = bool(reuse)
        self._pool = BufferPool()

    def forward(self, stepper, theta_steps, h, state0):
        swept = stepper.sweep(theta_steps, h, state0)
        if swept is not None:
            return SweptTrajectory(swept)
        workspace = Workspace(self._pool if self.reuse else temporaries)
        records, state = [], state0
        for theta_j in theta_steps:
            state_next, cache = workspace.run(stepper.step, state, theta_j, h)
            records.append((state, cache))
            state = state_next
        return StoredTrajectory(records, state, workspace, self._pool if self.reuse else None)

    def release(self) -> None:
        """Free the arrays kept for reuse (and the derivative sweeps' temporaries)."""
        self._pool.clear()
        clear_temporaries()

    def __repr__(self) -> str:
        return "StoreAll()"
