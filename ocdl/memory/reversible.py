r"""Reversible reconstruction: keep :math:`x_0` and :math:`x_N`, rebuild the rest backward.

For a time-reversible stepper (``stepper.reversible``, e.g. Leapfrog and
Verlet) the step can be undone exactly in exact arithmetic,

.. math::  x_j = \Phi^{-1}(x_{j+1}, \theta_j, h), \qquad j = N-1, \dots, 0,

so the adjoint sweep needs no stored states: it runs ``reverse_step`` from
:math:`x_N`, which returns each state with its cache. In floating point
the rebuilt states differ from the forward ones by round-off that the
reversed recursion propagates (and, for unstable dynamics, amplifies); the
benchmark ``benchmarks/memory.py`` reports the gradient error against
:class:`~ocdl.memory.StoreAll` for growing :math:`N`.
"""

from __future__ import annotations

from .base import MemoryPolicy, Trajectory, forward_steps


class ReversibleTrajectory(Trajectory):
    r"""Holds :math:`x_0`, :math:`x_N` and the parameters: memory :math:`O(s n)`, independent of :math:`N`.

    ``reversed_steps`` costs one ``reverse_step`` per step,
    ``steps`` one ``step`` per step (the forward propagation from :math:`x_0`).
    """

    def __init__(self, stepper, theta_steps, h, state0) -> None:
        self._stepper, self._theta, self._h = stepper, theta_steps, h
        self.n_steps = len(theta_steps)
        self._x0 = state0
        state = state0
        for theta_j in theta_steps:
            state = stepper.advance(state, theta_j, h)
        self.final_state = state

    def reversed_steps(self):
        state = self.final_state
        for j in reversed(range(self.n_steps)):
            state, cache = self._stepper.reverse_step(state, self._theta[j], self._h)
            yield j, state, cache

    def steps(self):
        return forward_steps(self._stepper, self._theta, self._h, self._x0)


class Reversible(MemoryPolicy):
    r"""Rebuild the states backward with ``stepper.reverse_step`` (reversible steppers only).

    Memory: :math:`x_0`, :math:`x_N` and :math:`O(1)` working states,
    independent of :math:`N`. Cost of a reversal: :math:`N` reverse steps.
    The gradient agrees with :class:`~ocdl.memory.StoreAll` up to the
    round-off of the reconstruction.

    Raises
    ------
    ValueError
        From :meth:`forward`, when the stepper is not time-reversible.
    """

    def forward(self, stepper, theta_steps, h, state0):
        if not getattr(stepper, "reversible", False):
            raise ValueError(
                f"Reversible() needs a time-reversible stepper (reversible = True with "
                f"reverse_step), but {stepper!r} is not; use StoreAll() or "
                "Recompute(n_checkpoints) for it"
            )
        return ReversibleTrajectory(stepper, theta_steps.copy(), h, state0)

    def __repr__(self) -> str:
        return "Reversible()"
