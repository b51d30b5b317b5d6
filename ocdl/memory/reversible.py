r"""Reversible reconstruction: keep :math:`x_0` and :math:`x_N`, rebuild the rest backward.

For a time-reversible stepper (``stepper.reversible``, e.g. Leapfrog and
Verlet) the step can be undone exactly in exact arithmetic,

.. math::  x_j = \Phi^{-1}(x_{j+1}, \theta_j, h), \qquad j = N-1, \dots, 0,

so the adjoint sweep needs no stored states: it runs ``reverse_step`` from
:math:`x_N`, which returns each state with its cache. In floating point
the rebuilt states differ from the forward ones by round-off that the
reversed recursion propagates (and, for unstable dynamics, amplifies).
Measured against :class:`~ocdl.memory.StoreAll` at :math:`N = 4096`
(2026-12-03, tanh): Verlet's rebuilt states are off by
:math:`2\cdot10^{-16}` (:math:`T = 4`) and :math:`5\cdot10^{-13}` (:math:`T = 409.6`);
leapfrog's by :math:`9\cdot10^{-13}` and, on dynamics that grow to
:math:`\max|Y_N| \approx 2.7\cdot10^3`, by :math:`10^{-4}` (gradient
:math:`10^{-5}` relative). ``benchmarks/memory.py`` reports Verlet's gradient
error for growing :math:`N`.
"""

from __future__ import annotations

from .._workspace import run_step
from ..backend import get_array_module
from ..validation import PropagationError
from .base import MemoryPolicy, Trajectory, forward_steps

#: The largest drift of the rebuilt :math:`x_0` (relative) that :class:`Reversible` accepts. Round-off in a stable
#: reversal stays far below it (Verlet 1e-15 in float64 and 4e-7 in float32; leapfrog at N = 1024 7e-12 and 3e-3);
#: reversing dissipative dynamics amplifies it by about :math:`e^{\gamma T}` (a damped Verlet at
#: :math:`\gamma T = 48`: 9e3 in float64, gradient off by 99%; at :math:`\gamma T = 32`: 1e-3, gradient off by 3e-5).
MAX_DRIFT = 1e-2


class ReversibleTrajectory(Trajectory):
    r"""Holds :math:`x_0`, :math:`x_N` and the parameters: states :math:`O(s n)`, independent of :math:`N`.

    ``reversed_steps`` costs one ``reverse_step`` per step,
    ``steps`` one ``step`` per step (the forward propagation from :math:`x_0`).
    ``drift`` is the relative distance of the rebuilt :math:`x_0` from the kept one after
    the last completed reversal (``None`` before):
    :math:`\|\tilde x_0 - x_0\| / \max(\|x_0\|, \|x_N\|)`.
    """

    drift: float | None = None

    def __init__(self, stepper, theta_steps, h, state0) -> None:
        self._stepper, self._theta, self._h = stepper, theta_steps, h
        self.n_steps = len(theta_steps)
        self._x0 = state0
        state = state0
        for theta_j in theta_steps:
            state = run_step(stepper.advance, state, theta_j, h)
        self.final_state = state

    def reversed_steps(self):
        state = self.final_state
        for j in reversed(range(self.n_steps)):
            state, cache = run_step(self._stepper.reverse_step, state, self._theta[j], self._h)
            yield j, state, cache
        self._check_drift(state)

    def _check_drift(self, rebuilt: tuple) -> None:
        """Compare the rebuilt :math:`x_0` with the kept one: the reversal amplifies round-off where the
        forward dynamics contract, and the adjoint sweep just run used states that far off."""
        xp = get_array_module(*self._x0)

        def norm(arrays) -> float:  # in float64: a float32 drift of 1e20 must not overflow to inf
            return sum(float(xp.linalg.norm(xp.ravel(a).astype(xp.float64))) ** 2 for a in arrays) ** 0.5

        distance = norm(u.astype(xp.float64) - v for u, v in zip(rebuilt, self._x0, strict=True))
        scale = max(norm(self._x0), norm(self.final_state), float(xp.finfo(xp.float64).tiny))
        self.drift = distance / scale
        if not self.drift <= MAX_DRIFT:  # NaN too
            raise PropagationError(
                f"Reversible(): the states rebuilt backward by {type(self._stepper).__name__}.reverse_step drifted "
                f"from the forward ones (x_0 off by {self.drift:.1e} relative, more than {MAX_DRIFT:g}): reversing "
                "these dynamics amplifies round-off, so the gradient would be wrong. Use StoreAll() or "
                "Recompute(n_checkpoints) (exact) for them"
            )

    def steps(self):
        return forward_steps(self._stepper, self._theta, self._h, self._x0)


class Reversible(MemoryPolicy):
    r"""Rebuild the states backward with ``stepper.reverse_step`` (reversible steppers only).

    Memory: :math:`x_0`, :math:`x_N` and :math:`O(1)` working states,
    independent of :math:`N`, plus a copy of the :math:`N p` parameters (as
    every policy keeps). Cost of a reversal: :math:`N` reverse steps.
    The gradient agrees with :class:`~ocdl.memory.StoreAll` up to the
    round-off of the reconstruction, which the reversal propagates and, where
    the forward dynamics contract (damping, :math:`\operatorname{Re}\lambda < 0`),
    amplifies: each reversal compares the rebuilt :math:`x_0` with the kept one
    and raises beyond a relative drift of :data:`MAX_DRIFT` (``1e-2``), where the
    gradient can be wholly wrong.

    Raises
    ------
    ValueError
        From :meth:`forward`, when the stepper is not time-reversible.
    PropagationError
        From a reversal (an adjoint sweep) whose rebuilt :math:`x_0` drifted by more than
        :data:`MAX_DRIFT`; a training solver then stops with ``NOT_FINITE``.
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
