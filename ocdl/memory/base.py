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

from .._workspace import BufferPool, Workspace, run_step, temporaries
from ..validation import missing_method


class Trajectory:
    """The forward states of one propagation, served to the derivative sweeps.

    Attributes
    ----------
    final_state : the state :math:`x_N`.
    n_steps : :math:`N`.
    sweep : where the forward sweep ran in one piece, the stepper's record of it
        (:meth:`~ocdl.steppers.Stepper.sweep`), whose derivative sweeps the
        generic solvers then run in one piece too; else ``None``.
    """

    final_state: tuple
    n_steps: int
    sweep: Any = None

    def steps(self) -> Iterator[tuple[int, tuple, Any]]:
        """``(j, state_j, cache_j)`` for ``j = 0, ..., N-1``.

        The arrays served are the trajectory's: valid until :meth:`close`
        (copy what is kept longer); ``final_state`` stays the caller's.
        """
        raise NotImplementedError(missing_method(self, "steps()"))

    def reversed_steps(self) -> Iterator[tuple[int, tuple, Any]]:
        """``(j, state_j, cache_j)`` for ``j = N-1, ..., 0``."""
        raise NotImplementedError(missing_method(self, "reversed_steps()"))

    def close(self) -> None:
        """Release what the trajectory holds (files, buffers); idempotent, and what ``with`` calls on exit."""

    def __enter__(self) -> Trajectory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def forward_steps(stepper: Any, theta_steps: Any, h: float, state0: tuple) -> Iterator[tuple[int, tuple, Any]]:
    """Run the forward sweep from ``state0``: ``(j, state_j, cache_j)`` for ``j = 0, ..., N-1``."""
    state = state0
    for j, theta_j in enumerate(theta_steps):
        state_next, cache = run_step(stepper.step, state, theta_j, h)
        yield j, state, cache
        state = state_next


def propagate(stepper: Any, theta_steps: Any, h: float, state0: tuple) -> tuple:
    r"""The final state :math:`x_N` of the forward sweep from ``state0``, keeping no other state.

    For the output alone (prediction, a line search's trial): whatever the
    memory policy, no state outlives the step after it, and no cache is
    computed (:meth:`~ocdl.steppers.Stepper.advance`). On NumPy the sweep
    owns the arrays of its current state (a :class:`~ocdl._workspace.Workspace`)
    and gives those of step :math:`j` back once step :math:`j + 1` is
    computed, so step :math:`j + 2` writes into them: a sweep touches the
    memory of two steps and no fresh pages after its first steps. The final
    state is the caller's. A stepper that runs the whole sweep in one piece
    (:meth:`~ocdl.steppers.Stepper.sweep` with ``store=False``) does so.
    """
    swept = stepper.sweep(theta_steps, h, state0, store=False)
    if swept is not None:
        return swept.final_state
    # Arrays under a MiB are not pooled (the C library recycles those without page faults): a narrow
    # network's many small steps then skip the bookkeeping (measured on W1: a few microseconds a step).
    with Workspace(BufferPool(min_bytes=temporaries.min_bytes)) as sweep:
        state = state0
        for theta_j in theta_steps:
            state = sweep.carry(stepper.advance, state, theta_j, h)
        return sweep.hand_over(state)


class MemoryPolicy:
    """Strategy object: runs the forward sweep and returns a :class:`Trajectory`."""

    def forward(self, stepper: Any, theta_steps: Any, h: float, state0: tuple) -> Trajectory:
        """Propagate ``state0`` through ``len(theta_steps)`` steps of ``stepper``."""
        raise NotImplementedError(missing_method(self, "forward(stepper, theta_steps, h, state0) -> Trajectory"))
