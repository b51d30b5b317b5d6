r"""Derivative checks, public so that users run them on their own dynamics.

* :func:`taylor_test` verifies a directional derivative :math:`J v` of a map
  :math:`f` by the two Taylor residuals

  .. math::

     E_0(\varepsilon) = \|f(x + \varepsilon v) - f(x)\| = O(\varepsilon), \qquad
     E_1(\varepsilon) = \|f(x + \varepsilon v) - f(x) - \varepsilon J v\|
                      = O(\varepsilon^2),

  for :math:`\varepsilon = \varepsilon_0, \varepsilon_0/2, \dots`, and reports
  the observed convergence rates :math:`\log_2 E(\varepsilon)/E(\varepsilon/2)`.
* :func:`dot_test` verifies that a map :math:`A^T` is the adjoint of a linear
  map :math:`A`: :math:`\langle w, A v\rangle = \langle A^T w, v\rangle`.

Arguments and values may be arrays or tuples of arrays (a stepper's state);
inner products and norms run over all entries of all members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import asnumpy, get_array_module

Arrays = Any  # an array or a tuple of arrays


def _members(x: Arrays) -> tuple:
    """The arrays of ``x``, flattening nested tuples and lists."""
    if isinstance(x, (tuple, list)):
        return tuple(a for member in x for a in _members(member))
    return (x,)


def inner(a: Arrays, b: Arrays) -> float:
    """Euclidean inner product over all entries of two (tuples of) arrays."""
    total = 0.0
    for u, v in zip(_members(a), _members(b), strict=True):
        if u is None or v is None:
            continue
        xp = get_array_module(u, v)
        total += float(xp.vdot(xp.ravel(u).astype(xp.float64), xp.ravel(v).astype(xp.float64)))
    return total


def norm(a: Arrays) -> float:
    """Euclidean norm over all entries of a (tuple of) array(s)."""
    return float(np.sqrt(max(inner(a, a), 0.0)))


def axpy(alpha: float, x: Arrays, y: Arrays) -> Arrays:
    """``y + alpha * x`` member by member (tuples stay tuples)."""
    if isinstance(y, (tuple, list)):
        return tuple(axpy(alpha, u, v) for u, v in zip(x, y, strict=True))
    return y + alpha * x


def random_like(x: Arrays, rng: np.random.Generator) -> Arrays:
    """Standard normal entries with the shapes, dtypes and devices of ``x`` (nested tuples kept)."""
    if isinstance(x, (tuple, list)):
        return tuple(random_like(u, rng) for u in x)
    xp = get_array_module(x)
    return xp.asarray(rng.standard_normal(x.shape)).astype(x.dtype)


@dataclass
class TaylorResult:
    """Outcome of :func:`taylor_test`.

    Attributes
    ----------
    eps : step lengths :math:`\\varepsilon_k`.
    e0, e1 : the residuals :math:`E_0, E_1` at each step length.
    rate0, rate1 : observed orders (median of the last three pairs above the
        round-off floor, i.e. at the smallest resolved steps; ``inf``
        for ``rate1`` when :math:`E_1` is at round-off everywhere, i.e. the
        map is linear and its derivative exact).
    passed : ``rate1 >= min_rate``.
    """

    eps: np.ndarray
    e0: np.ndarray
    e1: np.ndarray
    rate0: float
    rate1: float
    min_rate: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = bool(self.rate1 >= self.min_rate)

    def __str__(self) -> str:
        rows = ["      eps          E0 (O(eps))     E1 (O(eps^2))"]
        rows += [f"  {a:10.3e}   {b:14.6e}   {c:14.6e}" for a, b, c in zip(self.eps, self.e0, self.e1)]
        verdict = "passed" if self.passed else "FAILED"
        rows.append(f"  observed rates: E0 {self.rate0:.3f}, E1 {self.rate1:.3f} -> {verdict}")
        return "\n".join(rows)


def _observed_rate(e: np.ndarray, factor: float, floor: float) -> float:
    """Median of the last three resolved consecutive rates: the asymptotic order."""
    rates = [
        np.log(e[k] / e[k + 1]) / np.log(factor)
        for k in range(len(e) - 1)
        if e[k + 1] > floor and e[k] > floor
    ]
    if not rates:
        return float("inf")
    return float(np.median(rates[-3:]))


def taylor_test(
    f: Callable[[Arrays], Arrays],
    x: Arrays,
    v: Arrays,
    Jv: Arrays,
    eps0: float = 1e-1,
    n_eps: int = 10,
    factor: float = 2.0,
    min_rate: float = 1.9,
) -> TaylorResult:
    """Taylor test of the directional derivative ``Jv`` of ``f`` at ``x`` along ``v``.

    Parameters
    ----------
    f : callable mapping ``x`` (array or tuple of arrays) to an array or tuple.
    x, v : the point and the direction (same structure).
    Jv : the claimed derivative :math:`f'(x) v` (structure of ``f(x)``).
    eps0, n_eps, factor : step lengths ``eps0 / factor**k``, ``k < n_eps``.
    min_rate : the order :math:`E_1` must show for ``passed``.

    Residuals below a round-off floor (``1e3`` machine epsilons times
    :math:`\\|f(x)\\| + \\|J v\\|`) are not used for the rate.
    """
    fx = f(x)
    eps = eps0 / factor ** np.arange(n_eps)
    e0 = np.empty(n_eps)
    e1 = np.empty(n_eps)
    for k, ek in enumerate(eps):
        fk = f(axpy(ek, v, x))
        d = axpy(-1.0, fx, fk)
        e0[k] = norm(d)
        e1[k] = norm(axpy(-ek, Jv, d))
    dtype = _members(fx)[0].dtype
    unit = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 1e-16
    floor = 1e3 * unit * (norm(fx) + norm(Jv))
    return TaylorResult(
        eps=eps,
        e0=e0,
        e1=e1,
        rate0=_observed_rate(e0, factor, floor),
        rate1=_observed_rate(e1, factor, floor),
        min_rate=min_rate,
    )


@dataclass
class AgreementResult:
    """Two computations of the same quantity: their relative difference and the tolerance."""

    rel_error: float
    tol: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = bool(self.rel_error <= self.tol)

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"relative difference {self.rel_error:.3e} (tol {self.tol:.0e}) -> {verdict}"


@dataclass
class DotResult(AgreementResult):
    """Outcome of :func:`dot_test`: ``<w, A v>``, ``<A^T w, v>`` and their relative gap."""

    forward: float
    adjoint: float

    def __str__(self) -> str:
        return f"<w, A v> = {self.forward:.16e}\n<A^T w, v> = {self.adjoint:.16e}\n" + super().__str__()


def dot_test(
    A: Callable[[Arrays], Arrays],
    AT: Callable[[Arrays], Arrays],
    v: Arrays,
    w: Arrays,
    tol: float = 1e-10,
) -> DotResult:
    """Dot-product (adjoint) test :math:`\\langle w, A v\\rangle = \\langle A^T w, v\\rangle`.

    ``v`` lives in the domain of ``A`` and ``w`` in its range; both may be
    arrays or tuples of arrays. The relative error is
    :math:`|a - b| / \\max(|a|, |b|)`.
    """
    a = inner(w, A(v))
    b = inner(AT(w), v)
    scale = max(abs(a), abs(b), np.finfo(float).tiny)
    return DotResult(forward=a, adjoint=b, rel_error=abs(a - b) / scale, tol=tol)


def dot_test_operator(op: Any, rng: np.random.Generator | None = None, tol: float = 1e-10) -> DotResult:
    """:func:`dot_test` for a ``scipy.sparse.linalg.LinearOperator`` (``matvec``/``rmatvec``)."""
    rng = np.random.default_rng(0) if rng is None else rng
    v = rng.standard_normal(op.shape[1])
    w = rng.standard_normal(op.shape[0])
    return dot_test(lambda u: asnumpy(op.matvec(u)), lambda u: asnumpy(op.rmatvec(u)), v, w, tol)


def agreement(a: Arrays, b: Arrays, tol: float) -> AgreementResult:
    r""":math:`\|a - b\| / \max(\|a\|, \|b\|)` (arrays or tuples of arrays) against ``tol``."""
    scale = max(norm(a), norm(b), np.finfo(float).tiny)
    return AgreementResult(rel_error=norm(axpy(-1.0, b, a)) / scale, tol=tol)


@dataclass
class CheckReport:
    """A named collection of Taylor and dot-test results; ``passed`` if all passed."""

    title: str
    results: dict

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results.values())

    def __str__(self) -> str:
        lines = [f"{self.title}: {'passed' if self.passed else 'FAILED'}"]
        for name, r in self.results.items():
            if isinstance(r, TaylorResult):
                lines.append(f"  {name:<28} Taylor rate {r.rate1:6.3f}  {'ok' if r.passed else 'FAILED'}")
            else:
                kind = "dot test" if isinstance(r, DotResult) else "difference"
                lines.append(f"  {name:<28} {kind} {r.rel_error:9.2e}  {'ok' if r.passed else 'FAILED'}")
        return "\n".join(lines)

    def raise_if_failed(self) -> CheckReport:
        if not self.passed:
            raise AssertionError(str(self))
        return self


def check_stepper(
    stepper: Any,
    Y0: Any,
    theta: Any = None,
    h: float = 0.1,
    n_steps: int = 3,
    rng: np.random.Generator | int | None = 0,
    eps0: float = 1e-1,
    min_rate: float = 1.9,
    tol: float = 1e-10,
) -> CheckReport:
    """Check a stepper's linearisation, one step and through a short network.

    Runs, at a random state reached from ``Y0`` and random step parameters:

    * ``advance`` against ``step`` (the same next state, within 100 eps);
    * each example (row) stepping alone: ``advance`` on two halves of the
      rows against ``step`` on all of them (large states are stepped in row
      blocks on several threads, :mod:`ocdl.parallel`);
    * Taylor tests of ``step`` against ``step_jvp`` in the state and in
      ``theta``;
    * the dot test of ``step_jvp`` against ``step_vjp`` (state and
      parameters jointly);
    * the same two for the whole propagation over ``n_steps`` steps
      (:meth:`ocdl.Network.jvp` / :meth:`~ocdl.Network.vjp`), including the
      derivative with respect to ``Y0``.

    ``theta`` (one step's parameters) defaults to ``stepper.init_params``.
    Returns a :class:`CheckReport`; call ``raise_if_failed()`` in a test.
    """
    from .network import Network

    rng = np.random.default_rng(rng)
    xp = get_array_module(Y0)
    if theta is None:
        theta = xp.asarray(stepper.init_params(rng, dtype=Y0.dtype))
    kw = dict(eps0=eps0, min_rate=min_rate)
    results: dict = {}

    # a generic state: one step away from init(Y0), so that all members are non-trivial
    state = stepper.step(stepper.init(Y0), theta, h)[0]
    state_next, cache = stepper.step(state, theta, h)
    # advance (the step without its cache) is the same map; 100 eps allows for reordered arithmetic
    results["advance = step"] = agreement(stepper.advance(state, theta, h), state_next, 100 * np.finfo(Y0.dtype).eps)
    if Y0.shape[0] >= 2:
        k = Y0.shape[0] // 2
        halves = [stepper.advance(tuple(x[rows] for x in state), theta, h) for rows in (slice(k), slice(k, None))]
        joined = tuple(xp.concatenate(parts) for parts in zip(*halves))
        results["rows step alone"] = agreement(joined, state_next, 100 * np.finfo(Y0.dtype).eps)
    dstate, dtheta = random_like(state, rng), random_like(theta, rng)
    zero_state = tuple(xp.zeros_like(x) for x in state)
    zero_theta = xp.zeros_like(theta)

    def step_of_state(x):
        return stepper.step(tuple(x), theta, h)[0]

    def step_of_theta(t):
        return stepper.step(state, t, h)[0]

    results["step: state"] = taylor_test(
        step_of_state, state, dstate, stepper.step_jvp(state, theta, h, dstate, zero_theta, cache), **kw
    )
    results["step: theta"] = taylor_test(
        step_of_theta, theta, dtheta, stepper.step_jvp(state, theta, h, zero_state, dtheta, cache), **kw
    )
    lam = random_like(state, rng)
    results["step: jvp/vjp adjoint"] = dot_test(
        lambda v: stepper.step_jvp(state, theta, h, v[0], v[1], cache),
        lambda w: stepper.step_vjp(state, theta, h, w, cache),
        (dstate, dtheta),
        lam,
        tol,
    )

    net = Network(stepper, n_steps, h * n_steps)
    theta_all = xp.concatenate([theta + 0.1 * random_like(theta, rng) for _ in range(n_steps)])
    dtheta_all, dY0 = random_like(theta_all, rng), random_like(Y0, rng)
    traj = net.trajectory(theta_all, Y0)
    results["network: theta"] = taylor_test(
        lambda t: net.forward(t, Y0), theta_all, dtheta_all, net.jvp(theta_all, Y0, dtheta_all, trajectory=traj), **kw
    )
    results["network: Y0"] = taylor_test(
        lambda y: net.forward(theta_all, y),
        Y0,
        dY0,
        net.jvp(theta_all, Y0, xp.zeros_like(theta_all), dY0=dY0, trajectory=traj),
        **kw,
    )
    W = random_like(net.stepper.output(traj.final_state), rng)
    results["network: jvp/vjp adjoint"] = dot_test(
        lambda v: net.jvp(theta_all, Y0, v[0], dY0=v[1], trajectory=traj),
        lambda w: net.vjp(theta_all, Y0, w, trajectory=traj, return_dY0=True),
        (dtheta_all, dY0),
        W,
        tol,
    )
    traj.close()
    return CheckReport(f"check_stepper({stepper!r})", results)
