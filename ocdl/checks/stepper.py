""":func:`check_stepper`: a stepper's linearisation, one step and through a short network."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import PropagationError, check_array, check_positive, random_generator
from .components import kink_notes
from .core import AgreementResult, CheckReport, agreement, check_data, dot_test, random_like, rows_alone, taylor_test
from .precision import as_dtype, precision_rows


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
      blocks on several threads);
    * Taylor tests of ``step`` against ``step_jvp`` in the state and in
      ``theta``;
    * the dot tests of ``step_jvp`` against ``step_vjp``, in the state and
      in the parameters apart (a failure names the wrong part), and those of ``init`` and ``output`` against
      ``init_vjp`` and ``output_vjp``;
    * for a ``reversible`` stepper, ``reverse_step`` against ``step``: it
      rebuilds the state and the cache (within :math:`\\sqrt{\\epsilon}`), and
      the gradient under :class:`~ocdl.memory.Reversible` memory equals the
      one from stored states;
    * the Taylor and dot tests for the whole propagation over ``n_steps``
      steps (:meth:`ocdl.Network.jvp` / :meth:`~ocdl.Network.vjp`),
      including the derivative with respect to ``Y0``;
    * where the stepper runs the whole sweep in one piece on these arrays
      (:meth:`~ocdl.steppers.Stepper.sweep`: ResNet, leapfrog, Verlet and RK4 with a small
      dense layer on the GPU, or a user's), that the output, final state,
      gradients and sensitivity agree with stepping (within ``1e4`` eps).

    The four layer steppers take every step with their layer's
    :meth:`~ocdl.Layer.step`, ``step_jvp`` and ``step_vjp``, so these tests
    cover the layer's public step too; :func:`~ocdl.checks.check_layer`
    checks a layer alone (both orientations, ``X`` and the cotangents
    ``None``).

    The derivative tests run in float64 (``Y0`` and ``theta`` are promoted
    on their device). For a float32 ``Y0`` the report adds ``float32: ...``
    rows: ``step``, ``step_jvp`` and ``step_vjp`` computed in float32 keep
    float32 and agree with float64 within ``1e3`` float32 epsilons.

    Parameters
    ----------
    stepper : the :class:`~ocdl.steppers.Stepper` to check.
    Y0 : input features, ``s x n`` (a few rows suffice); its dtype decides
        whether the lower-precision rows are added.
    theta : one step's parameters; default ``stepper.init_params(rng)``.
    h : the step size.
    n_steps : steps of the short network. The reversal's round-off grows with the
        steps and, for dynamics that contract, exponentially: where a network is
        to run with :class:`~ocdl.memory.Reversible` memory, check with its ``h``
        and ``n_steps``.
    rng : seed or generator of the random states, directions and parameters.
    eps0, min_rate : the Taylor tests' first step length and required order
        (:func:`taylor_test`); for a piecewise linear activation keep ``eps0``
        below the distance to its kinks.
    tol : the dot tests' tolerance (float64).

    Returns
    -------
    CheckReport
        One row per test; call ``raise_if_failed()`` in a unit test. A Taylor
        row reads ``exact: linear`` where the step is linear in that argument
        (the linearisation error is at round-off for every step length).

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``Y0`` not a 2-D float32/float64 array with the
        stepper's ``n_features`` columns, ``theta`` not a 1-D array of
        ``stepper.n_params`` entries, ``h`` not a positive number, ``n_steps`` not an integer >= 1.
    TypeError
        Naming the method: ``init``, ``step``, ``step_jvp`` or ``step_vjp``
        returning another form than the contract's (a bare array for a state
        tuple, a ``gtheta`` of another shape); a stepper without
        ``init_params`` and no ``theta``.
    """
    from ..memory import Recompute, Reversible
    from ..propagation import Network

    rng = random_generator("rng", rng)
    h = check_positive("h", h)  # a Python float, as a Network's h (a NumPy float64 would promote float32 steps)
    n_steps = check_positive("n_steps", n_steps, integer=True)
    Y0 = _checked_features(stepper, Y0)
    xp = get_array_module(Y0)
    dtype = Y0.dtype
    if theta is not None:
        theta = _checked_step_params(stepper, theta)
    else:
        try:
            theta = xp.asarray(stepper.init_params(rng, dtype=np.float64))
        except NotImplementedError as error:
            raise TypeError(f"{error}; or pass check_stepper one step's parameters as theta=") from None
    Y0, theta = as_dtype(Y0, np.float64), as_dtype(theta, np.float64)
    eps = float(np.finfo(np.float64).eps)
    kw = dict(eps0=eps0, min_rate=min_rate)
    results: dict = {}

    # a generic state: one step away from init(Y0), so that all members are non-trivial; the forms first
    name = type(stepper).__name__
    state0 = stepper.init(Y0)
    _returns(f"{name}.init(Y0)", "the state, a tuple of arrays with one row per example such as (Y0,)", state0,
             isinstance(state0, tuple) and state0 and all(getattr(x, "shape", ())[:1] == Y0.shape[:1] for x in state0))
    shapes = [x.shape for x in state0]
    like = f"a tuple of {len(shapes)} array(s) of shapes {', '.join(map(str, shapes))}"

    def step(x: tuple, t: Any) -> tuple:
        value = stepper.step(x, t, h)
        return _returns(f"{name}.step", f"(state, cache), the state {like} such as (Y_next,)", value,
                        isinstance(value, tuple) and len(value) == 2 and _is_state(value[0], shapes))

    state = step(state0, theta)[0]
    # the forms of the tangent and the transpose, on copies and a cache of their own (a method may update
    # its direction, cotangent or cache in place, as the sweeps allow)
    def copies() -> tuple[tuple, Any]:
        return tuple(x.copy() for x in state), theta.copy()

    (x, t), (dx, dt) = copies(), copies()
    tangent = stepper.step_jvp(x, t, h, dx, dt, step(x, t)[1])
    _returns(f"{name}.step_jvp", f"the tangent state, {like}", tangent, _is_state(tangent, shapes))
    (x, t), (lam, _) = copies(), copies()
    adjoint = stepper.step_vjp(x, t, h, lam, step(x, t)[1])
    _returns(f"{name}.step_vjp", f"(lam_prev, gtheta), lam_prev {like} and gtheta an array of shape {theta.shape}",
             adjoint, isinstance(adjoint, tuple) and len(adjoint) == 2 and _is_state(adjoint[0], shapes)
             and getattr(adjoint[1], "shape", None) == theta.shape)
    state_next, cache = step(state, theta)
    # advance (the step without its cache) is the same map; 100 eps allows for reordered arithmetic
    results["advance = step"] = agreement(stepper.advance(state, theta, h), state_next, 100 * eps)
    if Y0.shape[0] >= 2:
        results["rows step alone"] = rows_alone(lambda x: stepper.advance(x, theta, h), state, state_next, 100 * eps)
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
    # the transposes in the state and in theta apart, so that a failure says which part of step_vjp is wrong
    results["step: jvp/vjp adjoint in state"] = dot_test(
        lambda v: stepper.step_jvp(state, theta, h, v, zero_theta, cache),
        lambda w: stepper.step_vjp(state, theta, h, w, cache)[0], dstate, lam, tol,
    )
    results["step: jvp/vjp adjoint in theta"] = dot_test(
        lambda v: stepper.step_jvp(state, theta, h, zero_state, v, cache),
        lambda w: stepper.step_vjp(state, theta, h, w, cache)[1], dtheta, lam, tol,
    )
    results["init/init_vjp"] = dot_test(
        stepper.init, stepper.init_vjp, random_like(Y0, rng), random_like(state, rng), tol
    )
    results["output/output_vjp"] = dot_test(
        stepper.output, lambda w: stepper.output_vjp(state, w), random_like(state, rng),
        random_like(stepper.output(state), rng), tol,
    )
    if stepper.reversible:
        state_back, cache_back = stepper.reverse_step(state_next, theta, h)
        results["reverse_step: state"] = agreement(state_back, state, np.sqrt(eps))
        results["reverse_step: cache"] = agreement(cache_back, cache, np.sqrt(eps))

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
    lam_N = random_like(net.stepper.output(traj.final_state), rng)  # a cotangent of the features
    results["network: jvp/vjp adjoint"] = dot_test(
        lambda v: net.jvp(theta_all, Y0, v[0], dY0=v[1], trajectory=traj),
        lambda w: net.vjp(theta_all, Y0, w, trajectory=traj, return_dY0=True),
        (dtheta_all, dY0),
        lam_N,
        tol,
    )
    stored = net.vjp(theta_all, Y0, lam_N, trajectory=traj, return_dY0=True)
    if traj.sweep is not None:  # the sweep ran in one piece (Stepper.sweep): it must agree with stepping
        swept = (net.forward(theta_all, Y0), traj.final_state, stored,
                 net.jvp(theta_all, Y0, dtheta_all, dY0=dY0, trajectory=traj))
        stepping = Network(stepper, n_steps, h * n_steps, memory=Recompute(n_steps))
        with stepping.trajectory(theta_all, Y0) as steps:
            stepped = (stepper.output(steps.final_state), steps.final_state,
                       stepping.vjp(theta_all, Y0, lam_N, trajectory=steps, return_dY0=True),
                       stepping.jvp(theta_all, Y0, dtheta_all, dY0=dY0, trajectory=steps))
        # the sums over rows are grouped otherwise: rounding, far below any error of the equations
        results["network: sweep = stepping"] = agreement(swept, stepped, 1e4 * eps)
    traj.close()
    reversal_note: list = []
    if stepper.reversible:
        reversed_net = Network(stepper, n_steps, h * n_steps, memory=Reversible())
        try:
            reversed_result = agreement(reversed_net.vjp(theta_all, Y0, lam_N, return_dY0=True), stored, np.sqrt(eps))
        except PropagationError as error:  # Reversible's own check: the rebuilt x_0 drifted (a wrong
            # reverse_step, or a reversal that amplifies round-off)
            reversed_result = AgreementResult(rel_error=float("inf"), tol=np.sqrt(eps))
            reversal_note = [f"Reversible = stored: {error}"]
        results["network: Reversible = stored"] = reversed_result

    maps = {
        "step": lambda s, t, ds, dt, w: stepper.step(s, t, h)[0],
        "step_jvp": lambda s, t, ds, dt, w: stepper.step_jvp(s, t, h, ds, dt, stepper.step(s, t, h)[1]),
        "step_vjp": lambda s, t, ds, dt, w: stepper.step_vjp(s, t, h, w, stepper.step(s, t, h)[1]),
    }
    notes = precision_rows(results, dtype, maps, (state, theta, dstate, dtheta, lam))
    activation = getattr(getattr(stepper, "layer", None), "activation", None)
    return CheckReport(f"check_stepper({stepper!r})", results, notes + reversal_note + kink_notes(activation))


def _checked_features(stepper: Any, Y0: Any) -> Any:
    """``Y0`` if it is ``s x n`` with ``s >= 1``, ``n`` the stepper's ``n_features`` (any width where that is
    ``None``)."""
    Y0 = check_data("Y0", check_array("Y0", Y0, ndim=2))
    n = getattr(stepper, "n_features", None)
    if n is not None and Y0.shape[1] != n:
        raise ValueError(f"Y0 must have the stepper's n_features = {n} columns (s x {n}, one example per row), "
                         f"got shape {Y0.shape}")
    return Y0


def _checked_step_params(stepper: Any, theta: Any) -> Any:
    """``theta`` if it is one step's parameters: 1-D, ``stepper.n_params`` entries."""
    theta = check_array("theta", theta)
    p = getattr(stepper, "n_params", None)
    if theta.ndim != 1 or (p is not None and theta.shape[0] != p):
        entries = f"stepper.n_params = {p} entries" if p is not None else "the stepper's n_params entries"
        raise ValueError(f"theta must be one step's parameters, a 1-D array of {entries}, got shape {theta.shape}")
    return theta


def _form(value: Any) -> str:
    """What ``value`` is, for an error: an array's shape, a tuple's members' forms, or its type."""
    if isinstance(value, tuple):
        return f"a tuple ({', '.join(_form(x) for x in value)}{',' if len(value) == 1 else ''})"
    shape = getattr(value, "shape", None)
    return f"an array of shape {shape}" if shape is not None else type(value).__name__


def _returns(what: str, expected: str, value: Any, ok: bool) -> Any:
    """``value``, which ``what`` returned, if ``ok``; else a TypeError saying the ``expected`` form."""
    if not ok:
        raise TypeError(f"{what} must return {expected}; got {_form(value)}")
    return value


def _is_state(value: Any, shapes: list) -> bool:
    """Whether ``value`` is a state of arrays of these ``shapes`` (a tuple, one per member)."""
    return isinstance(value, tuple) and [getattr(x, "shape", None) for x in value] == shapes
