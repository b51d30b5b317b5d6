r"""Checkpointing with recomputation: the optimal binomial (revolve) schedule.

Reversing a chain of :math:`l` steps :math:`x_{j+1} = \Phi(x_j, \theta_j, h)`
means serving :math:`x_{l-1}, x_{l-2}, \dots, x_0` in that order. With room
for :math:`c` states (*checkpoints*, one of which holds :math:`x_0`) the
minimal number of forward steps that have to be (re)computed is
(Griewank 1992; Griewank & Walther 2000, *Algorithm 799: revolve*)

.. math::

   t(l, c) = r\,l - \beta(c + 1, r - 1), \qquad
   \beta(c, r) = \binom{c + r}{c},

where the *repetition number* :math:`r` is the integer with
:math:`\beta(c, r - 1) < l \le \beta(c, r)`: no step is advanced more than
:math:`r` times. The count includes the first sweep :math:`x_0 \to x_{l-1}`
and excludes the :math:`l` steps that recompute each served state's cache.
It satisfies the dynamic programme

.. math::

   t(1, c) = 0, \quad t(l, 1) = \tfrac{l(l-1)}{2}, \quad
   t(l, c) = \min_{1 \le m < l}\ m + t(l - m, c - 1) + t(m, c):

advance :math:`m` steps and store :math:`x_m` in a free checkpoint, reverse
the right part with one checkpoint fewer, free it, reverse the left part
from :math:`x_0`. A split :math:`m` is optimal when

.. math::

   \max\big(1,\ \beta(c, r-2),\ l - \beta(c-1, r)\big) \;\le\; m \;\le\;
   \min\big(\beta(c, r-1),\ l - \beta(c-1, r-1)\big),

(:math:`\beta(c, -1) = 0`); :func:`binomial_schedule` takes the largest.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import comb

from .._workspace import run_step
from ..validation import check_positive
from .base import MemoryPolicy, Trajectory, forward_steps


def _beta(c: int, r: int) -> int:
    r""":math:`\beta(c, r) = \binom{c + r}{c}`, zero for :math:`r < 0`."""
    return comb(c + r, c) if r >= 0 else 0


def repetition_number(n_steps: int, n_checkpoints: int) -> int:
    r"""The smallest :math:`r` with :math:`n_{\text{steps}} \le \beta(c, r)`, :math:`c` = ``n_checkpoints``."""
    r = 0
    while _beta(n_checkpoints, r) < n_steps:
        r += 1
    return r


def optimal_recomputations(n_steps: int, n_checkpoints: int) -> int:
    r"""The revolve optimum :math:`t(l, c) = r l - \beta(c + 1, r - 1)` (see the module docstring)."""
    r = repetition_number(n_steps, n_checkpoints)
    return r * n_steps - _beta(n_checkpoints + 1, r - 1)


def _split(length: int, n_checkpoints: int) -> int:
    """Largest optimal advance ``m`` for a segment of ``length >= 2`` steps and ``>= 2`` checkpoints."""
    r = repetition_number(length, n_checkpoints)
    return min(_beta(n_checkpoints, r - 1), length - _beta(n_checkpoints - 1, r - 1))


def binomial_schedule(n_steps: int, n_checkpoints: int) -> list[tuple]:
    r"""The actions of the optimal binomial schedule reversing ``n_steps`` steps.

    Parameters
    ----------
    n_steps : :math:`N \ge 1`, the length of the chain.
    n_checkpoints : :math:`c \ge 1`, the states that may be stored at once,
        :math:`x_0` included.

    Returns
    -------
    actions : list of tuple
        Executed in order on one *working state*, initially :math:`x_0`:

        * ``("store", j)``: keep the working state :math:`x_j` in a checkpoint;
        * ``("advance", i, k)``: step the working state from :math:`x_i` to
          :math:`x_k` (:math:`k - i` forward steps);
        * ``("reverse", j)``: serve :math:`x_j` (the working state) to the
          adjoint, which recomputes its cache with one step;
        * ``("free", j)``: drop the checkpoint of :math:`x_j` (step ``j`` has
          been served);
        * ``("restore", j)``: the working state becomes the checkpoint :math:`x_j`.

        ``reverse`` comes for :math:`j = N-1, \dots, 0`, once each; at most
        :math:`c` checkpoints are held at once, :math:`x_0` is never freed, and
        the ``advance`` steps add up to :func:`optimal_recomputations`.
    """
    n_steps = check_positive("n_steps", n_steps, integer=True)
    n_checkpoints = check_positive("n_checkpoints", n_checkpoints, integer=True)
    return list(_actions(n_steps, n_checkpoints))


def _actions(n_steps: int, n_checkpoints: int) -> Iterator[tuple]:
    """Generate the actions of :func:`binomial_schedule` (arguments validated)."""
    yield ("store", 0)
    stack, position, end = [0], 0, n_steps  # checkpoints, working state, steps left to serve
    while end > 0:
        base = stack[-1]
        if position != base:
            yield ("restore", base)
            position = base
        # descend: split the segment [base, end) while there is a free checkpoint
        while end - base > 1 and len(stack) < n_checkpoints:
            m = _split(end - base, n_checkpoints - len(stack) + 1)
            yield ("advance", base, base + m)
            base += m
            yield ("store", base)
            stack.append(base)
        if end - 1 > base:
            yield ("advance", base, end - 1)
        position = end = end - 1
        yield ("reverse", end)
        if stack[-1] == end and end > 0:
            yield ("free", stack.pop())


class RecomputedTrajectory(Trajectory):
    r"""Checkpoints of one propagation; states recomputed by the binomial schedule.

    Held between sweeps: :math:`x_0`, :math:`x_N` (``final_state``), the
    parameters, and, until the first :meth:`reversed_steps`, the checkpoints
    of the forward sweep and :math:`x_{N-1}`, so that the first reversal
    continues where the forward propagation stopped. Every later reversal
    replays the whole schedule from :math:`x_0`.

    State accounting during a reversal: at most ``n_checkpoints`` stored
    states (:math:`x_0` included), plus one working state that is not a
    checkpoint (the state being advanced or served), and transiently the
    output of the step in progress and the cache being served; plus
    :math:`x_N`. Before the first reversal: the forward sweep's checkpoints,
    :math:`x_{N-1}` and :math:`x_N`. :meth:`close` drops the forward sweep's
    checkpoints; sweeps keep working after it.
    """

    def __init__(self, stepper, theta_steps, h, state0, n_checkpoints: int) -> None:
        self._stepper, self._theta, self._h = stepper, theta_steps, h
        self.n_steps = len(theta_steps)
        self._x0 = state0
        self._schedule = binomial_schedule(self.n_steps, n_checkpoints)
        # the forward propagation is the schedule's first sweep x_0 -> x_{N-1}, then one step
        first_reverse = next(i for i, action in enumerate(self._schedule) if action[0] == "reverse")
        checkpoints: dict = {}
        state = state0
        for action in self._schedule[:first_reverse]:
            state = self._apply(action, state, checkpoints)
        self.final_state = run_step(stepper.advance, state, theta_steps[-1], h)
        self._resume: tuple | None = (first_reverse, state, checkpoints)

    def _apply(self, action: tuple, state: tuple, checkpoints: dict) -> tuple:
        """Execute one non-serving action; return the new working state."""
        kind, j = action[0], action[1]
        if kind == "advance":
            for i in range(j, action[2]):
                state = run_step(self._stepper.advance, state, self._theta[i], self._h)
        elif kind == "store":
            checkpoints[j] = state
        elif kind == "restore":
            state = checkpoints[j]
        else:  # "free"
            del checkpoints[j]
        return state

    def reversed_steps(self):
        if self._resume is None:
            start, state, checkpoints = 0, self._x0, {}
        else:
            (start, state, checkpoints), self._resume = self._resume, None
        for action in self._schedule[start:]:
            if action[0] == "reverse":
                j = action[1]
                _, cache = run_step(self._stepper.step, state, self._theta[j], self._h)
                yield j, state, cache
            else:
                state = self._apply(action, state, checkpoints)

    def steps(self):
        return forward_steps(self._stepper, self._theta, self._h, self._x0)

    def close(self) -> None:
        self._resume = None


class Recompute(MemoryPolicy):
    r"""Keep ``n_checkpoints`` states, recompute the others (optimal binomial checkpointing).

    Parameters
    ----------
    n_checkpoints : :math:`c \ge 1`, states stored at once, :math:`x_0` included.

    Costs per reversal of :math:`N` steps: :math:`t(N, c)` recomputed forward
    steps (:func:`optimal_recomputations`; :math:`N - 1` of them are the
    forward propagation itself on the first reversal) plus the :math:`N`
    steps that rebuild the caches; an ascending sweep (``steps()``, for the
    sensitivities) reruns the :math:`N` steps from :math:`x_0`. With
    :math:`c = \lceil\sqrt N\,\rceil`, :math:`r \le 3` for every :math:`N`
    (:math:`\beta(c, 3) \ge c^2`), so :math:`t(N, c) < 3N`.
    The states are recomputed by the same operations on the same numbers,
    so the products equal those under :class:`~ocdl.memory.StoreAll`.
    """

    def __init__(self, n_checkpoints: int) -> None:
        self.n_checkpoints = check_positive("n_checkpoints", n_checkpoints, integer=True)

    def forward(self, stepper, theta_steps, h, state0):
        return RecomputedTrajectory(stepper, theta_steps.copy(), h, state0, self.n_checkpoints)

    def __repr__(self) -> str:
        return f"Recompute(n_checkpoints={self.n_checkpoints})"
