"""Keep every state and cache in memory: fastest, memory :math:`O(N s n)`."""

from __future__ import annotations

from .base import MemoryPolicy, Trajectory


class StoredTrajectory(Trajectory):
    """All :math:`(x_j, \\text{cache}_j)` held in a list."""

    def __init__(self, records: list, final_state: tuple) -> None:
        self._records = records
        self.final_state = final_state
        self.n_steps = len(records)

    def steps(self):
        for j, (state, cache) in enumerate(self._records):
            yield j, state, cache

    def reversed_steps(self):
        for j in reversed(range(self.n_steps)):
            state, cache = self._records[j]
            yield j, state, cache

    def close(self) -> None:
        self._records = []


class StoreAll(MemoryPolicy):
    """Store every forward state and its cache (the default for small problems)."""

    def forward(self, stepper, theta_steps, h, state0):
        records, state = [], state0
        for theta_j in theta_steps:
            state_next, cache = stepper.step(state, theta_j, h)
            records.append((state, cache))
            state = state_next
        return StoredTrajectory(records, state)

    def __repr__(self) -> str:
        return "StoreAll()"
