r"""The two derivative tests and what they report (:mod:`ocdl.checks` re-exports them).

:func:`taylor_test` (the residuals :math:`E_0 = O(\varepsilon)` and
:math:`E_1 = O(\varepsilon^2)`) and :func:`dot_test` (:math:`\langle w, A v\rangle
= \langle A^T w, v\rangle`), stated in :mod:`ocdl.checks`.

Arguments and values may be arrays, tuples of arrays (a stepper's state) or
scalars (an objective's value); inner products and norms run over all entries
of all members, in float64. A residual or product that is NaN or Inf fails.

Both tests need float64 to say much: float32 resolves the Taylor residuals
only down to about :math:`10^{-4}` of the values, so a derivative wrong by a
fraction of a percent can still show the second order. The ``check_*``
functions therefore run their derivative tests in float64 and compare the
float32 computations with the float64 ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._threads import vdot
from ..backend import asnumpy, get_array_module
from ..validation import check_above, check_positive, random_generator

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
        total += float(vdot(xp.ravel(u).astype(xp.float64), xp.ravel(v).astype(xp.float64)))
    return total


def dtype_of(x: Arrays) -> np.dtype:
    """The lowest-precision floating dtype among the members of ``x`` (float64 for scalars)."""
    dtypes = [np.dtype(getattr(m, "dtype", np.float64)) for m in _members(x) if m is not None]
    floating = [d for d in dtypes if np.issubdtype(d, np.floating)]
    return min(floating, key=lambda d: d.itemsize) if floating else np.dtype(np.float64)


def check_data(name: str, x: Arrays) -> Arrays:
    """``x`` (array, tuple of arrays or scalar) as data of a derivative test: some entry, and no floating
    member below float32 (float16's round-off floor lies above every residual: each test would pass).

    Raises
    ------
    ValueError
        If ``x`` has no entries (a test of nothing passes).
    TypeError
        If a member is float16.
    """
    members = [m for m in _members(x) if m is not None]
    if sum(int(getattr(m, "size", 1)) for m in members) == 0:
        raise ValueError(f"{name} has no entries: a derivative test of nothing would pass")
    if dtype_of(x).itemsize < 4:
        raise TypeError(f"{name} must be float32 or float64 (float64 to say much), got {dtype_of(x)}")
    return x


def default_tol(dtype: Any) -> float:
    """Dot-test tolerance: ``1e-10`` in float64, ``1e3`` machine epsilons in a lower precision."""
    dtype = np.dtype(dtype)
    return 1e-10 if dtype.itemsize >= 8 else 1e3 * float(np.finfo(dtype).eps)


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
    r"""Outcome of :func:`taylor_test`.

    Attributes
    ----------
    eps : step lengths :math:`\varepsilon_k`.
    e0, e1 : the residuals :math:`E_0, E_1` at each step length.
    rate0, rate1 : observed orders (median of the last three pairs above the
        round-off floor, i.e. at the smallest resolved steps; ``inf``
        for ``rate1`` when :math:`E_1` is at round-off everywhere, i.e. the
        map is linear and its derivative exact).
    resolution : the smallest relative error of ``Jv`` the test can see,
        :math:`\min_k \max(E_1(\epsilon_k), \text{floor}) / (\epsilon_k \|J v\|)`: an error
        :math:`\delta \|J v\|` adds :math:`\epsilon \delta \|J v\|` to :math:`E_1`, which
        shows against the second-order term (and the round-off floor) only where it is
        larger (a small ResNet at the default steps: :math:`5 \cdot 10^{-4}` in float64,
        :math:`3 \cdot 10^{-2}` in float32, where a ``Jv`` off by a percent still passes).
        When the test fails, about the relative error of ``Jv``. ``nan`` when :math:`J v = 0`.
    finite : whether :math:`f(x)`, :math:`J v` and every residual are finite.
    passed : ``finite and rate1 >= min_rate``.
    """

    eps: np.ndarray
    e0: np.ndarray
    e1: np.ndarray
    rate0: float
    rate1: float
    min_rate: float
    resolution: float = float("nan")
    finite: bool = True
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = bool(self.finite and self.rate1 >= self.min_rate)

    def __str__(self) -> str:
        rows = ["      eps          E0 (O(eps))     E1 (O(eps^2))"]
        rows += [f"  {a:10.3e}   {b:14.6e}   {c:14.6e}" for a, b, c in zip(self.eps, self.e0, self.e1)]
        verdict = "passed" if self.passed else "FAILED"
        if not self.finite:
            verdict += " (NaN or Inf in f(x), J v or a residual)"
        rate1 = "at round-off (exact: linear)" if self.rate1 == float("inf") else f"{self.rate1:.3f}"
        rows.append(f"  observed rates: E0 {self.rate0:.3f}, E1 {rate1} -> {verdict}")
        if np.isfinite(self.resolution) and self.passed:
            rows.append(f"  an error of J v below about {self.resolution:.1e} of |J v| would not show")
        elif np.isfinite(self.resolution) and self.finite:
            rows.append(f"  J v is off by about {self.resolution:.1e} of |J v|")
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

    With the step lengths :math:`\\epsilon_k = \\epsilon_0 / \\text{factor}^k`, the errors

    .. math::

       E_0(\\epsilon) = \\|f(x + \\epsilon v) - f(x)\\|, \\qquad
       E_1(\\epsilon) = \\|f(x + \\epsilon v) - f(x) - \\epsilon\\, J v\\|

    decrease as :math:`O(\\epsilon)` and, for the right ``Jv``, :math:`O(\\epsilon^2)`;
    the observed orders are the slopes of :math:`\\log E_0, \\log E_1` against
    :math:`\\log \\epsilon` (:class:`TaylorResult`).

    Parameters
    ----------
    f : callable mapping ``x`` (array or tuple of arrays) to an array or tuple.
    x, v : the point and the direction (same structure).
    Jv : the claimed derivative :math:`f'(x) v` (structure of ``f(x)``).
    eps0, n_eps, factor : step lengths ``eps0 / factor**k``, ``k < n_eps``.
    min_rate : the order :math:`E_1` must show for ``passed`` (default 1.9).

    Returns
    -------
    TaylorResult
        ``eps``, ``e0``, ``e1``, the orders ``rate0``, ``rate1`` and ``passed``.

    Residuals below a round-off floor (``1e3`` machine epsilons of ``f(x)``'s
    dtype times :math:`\\|f(x)\\| + \\|J v\\|`) are not used for the rate; in
    float32 that floor is about :math:`10^{-4}` of the values and leaves only
    the large steps, where :math:`\\epsilon^2` dominates :math:`E_1` even for a
    wrong ``Jv``: a ResNet's ``Jv`` off by 1% passes in float32 (rate 1.94) and
    fails in float64 (rate 1.01). The result's ``resolution`` says how small an
    error of ``Jv`` the test could see (3e-2 there). Run the test in
    float64 (the ``check_*`` functions do). ``f`` may return a scalar (an objective).

    Raises
    ------
    ValueError, TypeError
        For ``x`` or ``v`` without entries or of float16 (:func:`check_data`), ``eps0``
        or ``min_rate`` not positive, ``n_eps`` not an integer >= 2 (a rate needs two
        steps), ``factor`` not above 1.
    """
    check_data("x", x)
    check_data("v", v)
    eps0, min_rate = check_positive("eps0", eps0), check_positive("min_rate", min_rate)
    n_eps = check_above("n_eps", n_eps, 1, integer=True)  # a rate needs two step lengths
    factor = check_above("factor", factor, 1.0)  # the step lengths shrink by it
    fx = f(x)
    eps = eps0 / factor ** np.arange(n_eps)
    e0 = np.empty(n_eps)
    e1 = np.empty(n_eps)
    for k, ek in enumerate(eps.tolist()):  # Python floats keep float32 arguments float32
        fk = f(axpy(ek, v, x))
        d = axpy(-1.0, fx, fk)
        e0[k] = norm(d)
        e1[k] = norm(axpy(-ek, Jv, d))
    Jv_norm = norm(Jv)
    scale = norm(fx) + Jv_norm
    floor = 1e3 * float(np.finfo(dtype_of(fx)).eps) * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        resolution = float(np.min(np.maximum(e1, floor) / (eps * Jv_norm))) if Jv_norm > 0 else float("nan")
    return TaylorResult(
        eps=eps,
        e0=e0,
        e1=e1,
        rate0=_observed_rate(e0, factor, floor),
        rate1=_observed_rate(e1, factor, floor),
        min_rate=min_rate,
        resolution=resolution,
        finite=bool(np.isfinite(scale) and np.isfinite(e0).all() and np.isfinite(e1).all()),
    )


@dataclass
class AgreementResult:
    """Two computations of the same quantity: their relative difference and the tolerance."""

    rel_error: float
    tol: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = bool(self.rel_error <= self.tol)

    def detail(self) -> str:
        """What else decided ``passed`` (empty here; subclasses add to it)."""
        return ""

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"relative difference {self.rel_error:.3e} (tol {self.tol:.0e}){self.detail()} -> {verdict}"


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
    tol: float | None = None,
) -> DotResult:
    """Dot-product (adjoint) test :math:`\\langle w, A v\\rangle = \\langle A^T w, v\\rangle`.

    ``v`` lives in the domain of ``A`` and ``w`` in its range; both may be
    arrays or tuples of arrays. The relative error is
    :math:`|a - b| / \\max(|a|, |b|)`; ``tol`` defaults to
    :func:`default_tol` of the lowest precision among ``v`` and ``w``
    (``1e-10`` in float64). ``v`` and ``w`` without entries, or of float16, are
    refused (:func:`check_data`).

    Parameters
    ----------
    A, AT : callable
        The map and its claimed transpose.
    v, w : array or tuple of arrays
        A point of the domain of ``A`` and one of its range.
    tol : float, optional
        The largest relative error that passes.

    Returns
    -------
    DotResult
        ``forward`` :math:`\\langle w, A v\\rangle`, ``adjoint`` :math:`\\langle A^T w, v\\rangle`,
        ``rel_error``, ``tol`` and ``passed``.
    """
    check_data("v", v)
    check_data("w", w)
    tol = default_tol(min(dtype_of(v), dtype_of(w), key=lambda d: d.itemsize)) if tol is None else tol
    a = inner(w, A(v))
    b = inner(AT(w), v)
    scale = max(abs(a), abs(b), np.finfo(float).tiny)
    return DotResult(forward=a, adjoint=b, rel_error=abs(a - b) / scale, tol=tol)


def dot_test_operator(op: Any, rng: np.random.Generator | None = None, tol: float | None = None) -> DotResult:
    """:func:`dot_test` for a ``scipy.sparse.linalg.LinearOperator`` (``matvec``/``rmatvec``)."""
    rng = random_generator("rng", 0 if rng is None else rng)
    v = rng.standard_normal(op.shape[1]).astype(op.dtype)
    w = rng.standard_normal(op.shape[0]).astype(op.dtype)
    return dot_test(lambda u: asnumpy(op.matvec(u)), lambda u: asnumpy(op.rmatvec(u)), v, w, tol)


def agreement(a: Arrays, b: Arrays, tol: float) -> AgreementResult:
    r""":math:`\|a - b\| / \max(\|a\|, \|b\|)` (arrays or tuples of arrays) against ``tol``."""
    scale = max(norm(a), norm(b), np.finfo(float).tiny)
    return AgreementResult(rel_error=norm(axpy(-1.0, b, a)) / scale, tol=tol)


@dataclass
class CheckReport:
    """A named collection of Taylor and dot-test results; ``passed`` if all passed.

    ``notes`` are printed under the results: how the checks were run and what
    a failure may mean.
    """

    title: str
    results: dict
    notes: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check of the report passed."""
        return all(r.passed for r in self.results.values())

    def __str__(self) -> str:
        lines = [f"{self.title}: {'passed' if self.passed else 'FAILED'}"]
        for name, r in self.results.items():
            if isinstance(r, TaylorResult):
                rate = "exact: linear" if r.rate1 == float("inf") else f"rate {r.rate1:6.3f}"
                lines.append(f"  {name:<28} Taylor {rate}  {'ok' if r.passed else 'FAILED'}")
            else:
                kind = "dot test" if isinstance(r, DotResult) else "difference"
                lines.append(f"  {name:<28} {kind} {r.rel_error:9.2e}{r.detail()}  {'ok' if r.passed else 'FAILED'}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def raise_if_failed(self) -> CheckReport:
        """The report itself if every check passed, else an ``AssertionError`` whose message is the report
        (for a unit test: ``ocdl.check_stepper(...).raise_if_failed()``)."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


def rows_alone(f: Callable[[Arrays], Arrays], x: Arrays, reference: Arrays, tol: float) -> AgreementResult:
    """``f`` on the first and on the second half of the rows of ``x`` (an array or a tuple), joined,
    against ``reference = f(x)``: each example (row) must map alone."""
    k = _members(x)[0].shape[0] // 2

    def half(rows):
        return f(tuple(m[rows] for m in x) if isinstance(x, tuple) else x[rows])

    parts = [half(slice(k)), half(slice(k, None))]
    xp = get_array_module(*_members(reference))
    joined = tuple(xp.concatenate(p) for p in zip(*parts)) if isinstance(reference, tuple) else xp.concatenate(parts)
    return agreement(joined, reference, tol)
