r"""Memory policies: where the derivative sweeps get the forward states.

The sensitivity (``jvp``) sweep needs :math:`(x_j, \text{cache}_j)` for
:math:`j = 0, \dots, N-1` in order, the adjoint (``vjp``) sweep in reverse.
A policy runs the forward propagation once and returns a :class:`Trajectory`
that serves both sweeps, however it keeps the states (all in memory,
checkpoints and recomputation, HDF5 on disk, reversible reconstruction).
The generic solvers never know which policy is in use. The policies that
recompute states (``Recompute``, ``HDF5``, ``Reversible``) keep a copy of the
:math:`N p` parameters, so that changing ``theta`` in place afterwards does not
change the trajectory; their memory bounds count states, not parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..validation import missing_method


class Trajectory:
    """The forward states of one propagation, served to the derivative sweeps.

    Attributes
    ----------
    final_state : the state :math:`x_N`.
    n_steps : :math:`N`.
    """

    final_state: tuple
    n_steps: int

    def steps(self) -> Iterator[tuple[int, tuple, Any]]:
        """``(j, state_j, cache_j)`` for ``j = 0, ..., N-1``."""
        raise NotImplementedError(missing_method(self, "steps()"))

    def reversed_steps(self) -> Iterator[tuple[int, tuple, Any]]:
        """``(j, state_j, cache_j)`` for ``j = N-1, ..., 0``."""
        raise NotImplementedError(missing_method(self, "reversed_steps()"))

    def close(self) -> None:
        """Release what the trajectory holds (files, buffers)."""

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def forward_steps(stepper: Any, theta_steps: Any, h: float, state0: tuple) -> Iterator[tuple[int, tuple, Any]]:
    """Run the forward sweep from ``state0``: ``(j, state_j, cache_j)`` for ``j = 0, ..., N-1``."""
    state = state0
    for j, theta_j in enumerate(theta_steps):
        state_next, cache = stepper.step(state, theta_j, h)
        yield j, state, cache
        state = state_next


class MemoryPolicy:
    """Strategy object: runs the forward sweep and returns a :class:`Trajectory`."""

    def forward(self, stepper: Any, theta_steps: Any, h: float, state0: tuple) -> Trajectory:
        """Propagate ``state0`` through ``len(theta_steps)`` steps of ``stepper``."""
        raise NotImplementedError(missing_method(self, "forward(stepper, theta_steps, h, state0) -> Trajectory"))
