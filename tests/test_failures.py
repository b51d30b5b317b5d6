"""Failure modes: blow-ups, failed line searches, negative curvature, NaN objectives and bad input
give clear messages (in the result, the log or the exception) and never an endless loop."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import ocdl.solvers
import pytest
from ocdl.solvers import (
    SGD,
    Adam,
    BlockCoordinateDescent,
    LineSearchResult,
    Params,
    SolverResult,
    Status,
    armijo,
    discrepancy_principle,
    multilevel,
    newton_pcg,
    steepest_descent,
)
from quadratic import Quadratic

import ocdl
from ocdl.learning_problem import LearningProblem

bcd_module = importlib.import_module("ocdl.solvers.block_coordinate_descent")
newton_module = importlib.import_module("ocdl.solvers.newton")


def blobs_problem(kind="verlet", n_steps=2, activation="tanh"):
    rng = np.random.default_rng(0)
    C = np.arange(40) % 2
    Y = rng.standard_normal((40, 2)) * 0.5 + np.where(C[:, None] == 1, 1.0, -1.0)
    net = ocdl.network(kind, 2, n_steps, 2.0, activation=activation)
    return LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y, C), net.init_params(0, scale=0.5)


# -- forward propagation that blows up ----------------------------------------------------


def test_blow_up_names_the_step_and_its_stability_factor():
    net = ocdl.network("resnet", 2, 10, 100.0, activation="identity")  # h = 10, K = diag(-3, -2)
    theta = net.pack([np.diag([-3.0, -2.0])] * 10, [0.0] * 10)
    with pytest.raises(ocdl.PropagationError) as info:
        net.forward(theta, np.ones((3, 2)))
    message = str(info.value)
    # |1 + h lambda| with lambda = -3, -2: 29 and 19 (paper eq. 3.9), the same as ocdl.stability gives
    assert ocdl.euler_factor(np.array([-3.0, -2.0]), 10.0) == 29.0
    assert "step 5 of 10 (ResNet, h = 10)" in message
    assert "max|1 + h lambda| = 29 " in message and "eq. 3.9" in message and "max Re lambda = -2;" in message
    assert "the ODE does not grow here: the step is too long for it, a smaller one helps" in message
    assert "smaller step" in message and "where the layer itself grows, a stable stepper" in message


def test_blow_up_of_growing_dynamics_says_a_smaller_step_alone_will_not_help():
    net = ocdl.network("leapfrog", 2, 40, 400.0, activation="identity")
    theta = net.pack([50 * np.eye(2)] * 40, [0.0] * 40)
    with pytest.raises(ocdl.PropagationError, match=r"max Re sqrt\(lambda\) = 7.07 .*a smaller step alone will not"):
        net.forward(theta, np.ones((3, 2)))


@pytest.mark.parametrize("K, h, says", [
    # y'' = K y with K's eigenvalues +-i: Re lambda = 0, yet the solutions grow like e^{0.71 t} for every step
    # (it said "max Re lambda = 0. Use a smaller step"; 10 times smaller blew up at the same time)
    (np.array([[0.0, 1.0], [-1.0, 0.0]]), 0.2, "max Re sqrt(lambda) = 0.707 (y'' = lambda y grows unless every "
     "lambda is real and <= 0); the second-order dynamics themselves grow, a smaller step alone will not help"),
    (np.array([[0.0, 1.0], [-1.0, 0.0]]), 0.02, "the second-order dynamics themselves grow"),
    # real eigenvalues -4: bounded dynamics, leapfrog unstable for h^2 |lambda| >= 4
    (-4.0 * np.eye(2), 1.5, "max Re sqrt(lambda) = 0 (y'' = lambda y grows unless every lambda is real and <= 0); "
     "they do not grow here, and max h^2 |lambda| = 9 (leapfrog is stable when < 4): the step is too long"),
])
def test_a_leapfrog_blow_up_is_diagnosed_for_second_order_dynamics(K, h, says):
    n_steps = int(round(1000 / h)) if h < 1 else 40
    net = ocdl.network("leapfrog", 2, n_steps, n_steps * h, activation="identity")
    with pytest.raises(ocdl.PropagationError) as info:
        net.forward(net.pack([K] * n_steps, [0.0] * n_steps), np.ones((3, 2)))
    assert says in str(info.value)


class Doubling(ocdl.Stepper):
    """A user's stepper without a layer: Y_{j+1} = theta_j Y_j."""

    n_params = 1

    def step(self, state, theta, h):
        return (theta[0] * state[0],), None


@pytest.mark.parametrize(
    "net",
    [
        ocdl.Network(Doubling(), 40, 1.0),
        ocdl.network("verlet", 2, 40, 400.0, activation="identity", hidden_width=3),  # a 2 x 3 transform
    ],
    ids=["no layer", "not square"],
)
def test_blow_up_without_a_square_layer_skips_the_factor(net):
    theta = np.full(net.n_params, 10.0)
    with pytest.raises(ocdl.PropagationError) as info:
        net.forward(theta, np.ones((3, 2)))
    message = str(info.value)
    assert "blew up: step" in message and "smaller step" in message and "lambda" not in message


class DoublingExplained(Doubling):
    """A user's stepper that explains its own blow-up from what diagnose is given."""

    def diagnose(self, state, theta, h):
        return f"Doubling by {theta[0]:g} per step: {state[0].shape[0]} examples at {state[0][:, 0].tolist()}."


def test_a_users_stepper_explains_its_own_blow_up():
    net = ocdl.Network(DoublingExplained(), 40, 1.0, blow_up=100.0)
    Y0 = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]])  # the zero example never blows up
    with pytest.raises(ocdl.PropagationError) as info:
        net.forward(np.full(net.n_params, 10.0), Y0)
    message = str(info.value)
    # max|Y0| = 2, limit 200: step 2 takes the third example from 200 (at the limit) to 2000, the first to 1000
    assert "blew up: step 2 of 40 (DoublingExplained" in message
    assert message.endswith("Doubling by 10 per step: 2 examples at [100.0, 200.0].")
    assert "smaller step" not in message  # the override replaces the default advice


def test_a_users_resnet_can_override_the_explanation():
    class Quiet(ocdl.ResNet):
        def diagnose(self, state, theta, h):
            return None

    net = ocdl.Network(Quiet(ocdl.Layer(ocdl.Dense(2), "identity")), 10, 100.0)
    theta = net.pack([np.diag([-3.0, -2.0])] * 10, [0.0] * 10)
    with pytest.raises(ocdl.PropagationError) as info:
        net.forward(theta, np.ones((3, 2)))
    assert str(info.value).endswith("(blow_up = 100000000.0 times max(1, max|Y0|)).")


# -- Newton-PCG: NaN, line search, negative curvature ----------------------------------------


def test_newton_stops_on_a_nan_objective():
    problem = Quadratic(np.eye(2), np.ones(2), nan_outside=0.5)
    result = newton_pcg(problem, np.ones(2), max_iter=50)
    assert not result.success and result.nit == 0 and "NaN" in result.message
    assert result.status is Status.NOT_FINITE


class InfiniteAt:
    """A quadratic whose objective (or gradient) is infinite from iteration ``k`` on."""

    def __init__(self, k, what):
        self.quadratic, self.k, self.what, self.calls = Quadratic(np.diag([1.0, 10.0]), np.ones(2)), k, what, 0

    def value(self, x):
        return self.quadratic.value(x)

    def model(self, x):
        model, self.calls = self.quadratic.model(x), self.calls + 1
        if self.calls > self.k:
            if self.what == "value":
                model.value = np.inf
            else:
                model.gradient = np.array([np.inf, 1.0])
        return model


@pytest.mark.parametrize("solver", [newton_pcg, steepest_descent])
@pytest.mark.parametrize("what", ["value", "gradient"])
@pytest.mark.parametrize("k", [0, 1])
def test_an_infinite_objective_or_gradient_is_not_finite_never_converged(solver, what, k):
    # inf <= gtol * inf held for an infinite first gradient (CONVERGED, success); an Inf later failed the
    # line search (LINE_SEARCH_FAILED, which multilevel takes for a stalled level and goes on)
    with np.errstate(invalid="ignore"):
        result = solver(InfiniteAt(k, what), np.zeros(2), max_iter=10)
    assert result.status is Status.NOT_FINITE and not result.success, result.message
    assert result.nit == k and "NaN or Inf" in result.message


def test_newtons_steepest_descent_fallback_reaches_a_steep_gradients_short_steps():
    class Steep:
        """f(x) = sqrt(1 + x0^2) + 5e6 x1^2 from (1e4, 1e-7): the Newton step in x0 is far too long and
        a step along -g of length ~1 overshoots x1's valley; only t < 2e-7 decreases f."""

        def value(self, x):
            return float(np.sqrt(1 + x[0] ** 2) + 5e6 * x[1] ** 2)

        def model(self, x):
            problem = self

            class Model:
                value = problem.value(x)
                gradient = np.array([x[0] / np.sqrt(1 + x[0] ** 2), 1e7 * x[1]])

                def hessian_matvec(self, v):
                    return np.array([v[0] / (1 + x[0] ** 2) ** 1.5, 1e7 * v[1]])

            return Model()

    x0, problem = np.array([1e4, 1e-7]), Steep()
    result = newton_pcg(problem, x0, max_iter=1)
    record = result.history[-1]
    assert record["gradient_fallback"] and 0.0 < record["step"] < 1e-6, record  # 2^-22: 23 trials from t = 1
    assert result.status is Status.MAX_ITER and result.fun < problem.value(x0)


def test_a_flat_objective_still_fails_the_line_search():
    """Backtracking far enough (t ~ 2^-40) makes x + t p round to x and Armijo's test, rounded, accept it: a
    fallback of 60 halvings turned this stall into 50 'successful' steps of no decrease."""
    class Flat:
        evaluations = 0

        def value(self, x):
            Flat.evaluations += 1
            return 1.0

        def model(self, x):
            class Model:
                value, gradient = 1.0, np.array([0.3, 0.4])

                def hessian_matvec(self, v):
                    return 1e-12 * v

            return Model()

    result = newton_pcg(Flat(), np.zeros(2), max_iter=50)
    assert result.status is Status.LINE_SEARCH_FAILED and result.nit == 1 and Flat.evaluations <= 40


def test_armijo_refuses_a_tie_with_f0():
    """Where c t g'p is below the rounding of f0 (1e-4 times -1e-13 next to 1.0), Armijo's test rounds to
    f(x + t p) <= f0 and took a step of no decrease; a decrease finer than that term (the next float below 1)
    still passes."""
    f0, slope, x, p = 1.0, -1e-13, np.zeros(2), np.ones(2)
    assert f0 + 1e-4 * slope == f0  # the Armijo term is lost in f0's rounding
    tie = armijo(lambda x: 1.0, x, p, f0, slope)
    assert (tie.success, tie.step, tie.nfev) == (False, 0.0, 20)
    below = np.nextafter(1.0, 0.0)
    decrease = armijo(lambda x: below, x, p, f0, slope)
    assert (decrease.success, decrease.step, decrease.value) == (True, 1.0, below)


def test_steepest_descent_on_a_flat_objective_fails_its_line_search():
    """A constant objective whose model claims a gradient: no step decreases it. Steepest descent's 60 halvings
    from t = 2 / |g| reach t ~ 2^-40, where the Armijo term falls below the rounding of f = 1, and the tie was
    accepted: 5 'steps' of no decrease and MAX_ITER."""
    from types import SimpleNamespace

    gradient = np.array([0.3, 0.4])
    flat = SimpleNamespace(value=lambda x: 1.0, model=lambda x: SimpleNamespace(value=1.0, gradient=gradient))
    result = steepest_descent(flat, np.zeros(2), max_iter=5)
    assert (result.status, result.nit, result.history[-1]["step"]) == (Status.LINE_SEARCH_FAILED, 1, 0.0)


def test_steepest_descent_at_a_stationary_point_and_without_metrics():
    problem = Quadratic(np.eye(2), np.ones(2))  # a model without metrics(): optional in the protocol
    at_minimum = steepest_descent(problem, np.ones(2))
    assert at_minimum.status is Status.CONVERGED and at_minimum.success and at_minimum.nit == 0
    result = steepest_descent(problem, np.zeros(2), max_iter=3)
    assert result.nit == 3 and result.fun < problem.value(np.zeros(2))


def test_steepest_descent_keeps_the_record_of_a_failed_line_search():
    problem = Quadratic(np.eye(2), np.ones(2))
    problem.value = lambda x: 0.0 if not x.any() else np.nan
    result = steepest_descent(problem, np.zeros(2), max_iter=5)
    newton = newton_pcg(problem, np.zeros(2), max_iter=5)
    assert result.status is newton.status is Status.LINE_SEARCH_FAILED
    assert result.nit == newton.nit == 1 and result.history[-1]["step"] == 0.0


def test_newton_reports_a_failed_line_search():
    # the objective is NaN everywhere but at x0: no step is accepted
    problem = Quadratic(np.eye(2), np.ones(2), nan_outside=0.0)
    problem.value = lambda x: 0.0 if not x.any() else np.nan
    result = newton_pcg(problem, np.zeros(2), max_iter=50)
    assert not result.success and result.nit == 1 and result.status is Status.LINE_SEARCH_FAILED
    assert result.message == "line search failed along the Newton and the steepest-descent directions"
    assert result.history[-1]["step"] == 0.0 and result.history[-1]["gradient_fallback"]


def test_newton_reports_negative_curvature_and_still_descends():
    problem = Quadratic(np.diag([1.0, -1.0]), np.array([1.0, 1.0]))
    result = newton_pcg(problem, np.zeros(2), max_iter=3)
    assert result.history[0]["negative_curvature"]
    assert result.fun < problem.value(np.zeros(2))


def test_nonpositive_curvature_on_the_first_cg_direction_is_the_gradient_fallback():
    """f(x) = x1^2 / 2 - x2 from 0: g = (0, -1), H g = 0, so CG stops on its first direction with no Newton
    direction. The step is the fallback's: along -g from the Cauchy step, 1 at zero curvature (not from step0),
    and the record says so (block coordinate descent's next line search then starts from 1, not 2 t)."""
    problem = Quadratic(np.diag([1.0, 0.0]), np.array([0.0, 1.0]))
    result = newton_pcg(problem, np.zeros(2), max_iter=1, step0=0.25)
    record = result.history[-1]
    assert record["negative_curvature"] and record["cg_iters"] == 0
    assert record["gradient_fallback"] and record["step"] == 1.0
    np.testing.assert_array_equal(result.x, [0.0, 1.0])  # x0 - 1 * g
    assert result.fun == -1.0


# -- training loops: stop with a message, never continue silently -----------------------------


def test_bcd_stops_when_the_line_search_fails(monkeypatch, caplog):
    lp, theta0 = blobs_problem()
    monkeypatch.setattr(newton_module, "armijo", lambda f, x, p, f0, slope, **_: LineSearchResult(0.0, f0, 20, False))
    with caplog.at_level(logging.WARNING, logger="ocdl.solvers.training_loop"):
        result = BlockCoordinateDescent(max_iter=50).minimize(lp, theta0, progress=False)
    assert not result.success and result.nit == 1 and result.status is Status.LINE_SEARCH_FAILED
    assert result.message.startswith("stopped at iteration 0: the line search in theta failed")
    assert result.history[-1]["line_search_failed"] and "failure" in result.history[-1]
    np.testing.assert_array_equal(result.x.theta, theta0)  # no iteration completed: the start
    assert "line search in theta failed" in caplog.text


def test_bcd_stops_on_a_nan_objective(monkeypatch):
    lp, theta0 = blobs_problem()
    calls = [0]
    real = bcd_module.gauss_newton_pcg

    def nan_at_third(problem, x0, **options):
        calls[0] += 1
        result = real(problem, x0, **options)
        if calls[0] == 3:
            return SolverResult(x=x0 * np.nan, fun=np.nan, nit=0, status=Status.NOT_FINITE, success=False,
                                message="objective or gradient is NaN; stopped")
        return result

    monkeypatch.setattr(bcd_module, "gauss_newton_pcg", nan_at_third)
    result = BlockCoordinateDescent(max_iter=50).minimize(lp, theta0, progress=False)
    assert not result.success and result.nit == 3 and result.status is Status.NOT_FINITE
    assert "stopped at iteration 2: the objective is nan" in result.message
    assert result.history[0].get("failure") is None and np.isfinite(result.x.theta).all()


def test_bcd_logs_negative_curvature(monkeypatch, caplog):
    lp, theta0 = blobs_problem()
    real = newton_module.pcg

    def negative(*args, **kwargs):
        out = real(*args, **kwargs)
        out.negative_curvature = True
        return out

    monkeypatch.setattr(newton_module, "pcg", negative)
    with caplog.at_level(logging.INFO, logger="ocdl.solvers.block_coordinate_descent"):
        result = BlockCoordinateDescent(max_iter=2).minimize(lp, theta0, progress=False)
    assert result.success and all(rec["negative_curvature"] for rec in result.history)
    assert "PCG met negative curvature" in caplog.text


@pytest.mark.parametrize(("activation", "learning_rate", "cause"), [
    ("identity", 1e4, "stopped at iteration 1: forward propagation blew up: step 0 of 4"),
    ("tanh", 1e150, "stopped at iteration 2: the objective is inf"),
])
def test_sgd_that_diverges_stops_with_the_best_parameters(activation, learning_rate, cause):
    lp, theta0 = blobs_problem("resnet", n_steps=4, activation=activation)
    with np.errstate(all="ignore"):
        result = SGD(max_epochs=20, batch_size=40, learning_rate=learning_rate, momentum=0.0).minimize(
            lp, theta0, progress=False)
    assert not result.success and cause in result.message and "failure" in result.history[-1]
    assert result.status is Status.NOT_FINITE
    assert all(np.isfinite(x).all() for x in result.x) and np.isfinite(result.fun)


@pytest.mark.parametrize("solver", [SGD(max_epochs=3, batch_size=10, learning_rate=1e307, momentum=0.0),
                                    Adam(max_epochs=3, batch_size=10, learning_rate=1e307)])
@pytest.mark.parametrize(("scale", "cause"), [
    (100.0, "step on mini-batch 1 of 4 made parameters NaN or Inf: lower learning_rate (now 1e+307)"),
    (1.0, "the objective is inf and its gradient's norm inf on mini-batch 2 of 4 (not finite)"),
])
def test_a_first_order_step_that_overflows_stops_not_finite_with_the_best_parameters(solver, scale, cause):
    """A step that overflows the parameters (large inputs: gradients ~ 50) or makes the next mini-batch's
    objective overflow stops the run (it used to raise "W contains NaN or Inf entries" or "lam contains ...",
    losing the best parameters)."""
    lp, theta0 = blobs_problem("resnet", n_steps=4)
    lp = LearningProblem(lp.network, ocdl.SoftmaxCrossEntropy(), scale * lp.Y0, lp.C)
    with np.errstate(all="ignore"):
        result = solver.minimize(lp, theta0, progress=False)
    assert result.status is Status.NOT_FINITE and not result.success
    assert result.message.startswith("stopped at iteration 0: ") and cause in result.message, result.message
    assert all(np.isfinite(x).all() for x in result.x) and np.isfinite(result.fun)


def test_an_overflowing_data_term_has_a_nan_gradient_in_theta_not_an_error():
    """The classifier W = 1e308 overflows the logits: the value is not finite and so is the gradient (the
    adjoint sweep used to refuse the NaN dS/dY_N, naming lam); Newton-PCG stops NOT_FINITE."""
    lp, theta0 = blobs_problem("resnet", n_steps=4)
    W, mu = np.full((2, 2), 1e308), np.zeros(2)
    W[:, 1] *= -1
    with np.errstate(all="ignore"):
        value, (g_theta, g_W, g_mu) = lp.value_and_gradient(theta0, W, mu)
        assert not np.isfinite(value) and np.isnan(g_theta).all()
        result = newton_pcg(lp.theta_problem(W, mu), theta0, max_iter=5)
    assert result.status is Status.NOT_FINITE and result.nit == 0


def test_multilevel_goes_on_past_levels_whose_line_search_stalls(monkeypatch):
    lp, theta0 = blobs_problem()
    monkeypatch.setattr(newton_module, "armijo", lambda f, x, p, f0, slope, **_: LineSearchResult(0.0, f0, 20, False))
    result = multilevel(lp, theta0, max_layers=8, solver=BlockCoordinateDescent(max_iter=3), progress=False)
    assert [rec["iterations"] for rec in result.history] == [1, 1, 1]  # each level ends at its first iteration
    assert all("line search in theta failed" in rec["result"].message for rec in result.history)
    assert all(rec["result"].status is Status.LINE_SEARCH_FAILED for rec in result.history)
    assert result.success and "stalled (level ended early) at 2, 4, 8 layers" in result.message
    assert result.status is Status.MAX_ITER and result.network.n_steps == 8


# -- bad numbers at the constructors: errors, never silent truncation ----------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"width": 2.5}, r"width must be an integer >= 1, got 2.5"),
        ({"width": "2"}, r"width must be an integer >= 1, got '2'"),
        ({"width": 0}, r"width must be an integer >= 1, got 0"),
        ({"kind": "verlet", "hidden_width": 3.0}, r"hidden_width must be an integer >= 1, got 3.0"),
        ({"kind": "antisymmetric", "gamma": float("nan")}, r"gamma must be a finite number >= 0, got nan"),
        ({"kind": "antisymmetric", "gamma": -1.0}, r"gamma must be a finite number >= 0, got -1.0"),
        ({"kind": "antisymmetric", "gamma": float("inf")}, r"gamma must be a finite number >= 0, got inf"),
    ],
)
def test_network_factory_rejects_bad_numbers(options, match):
    arguments = {"kind": "resnet", "width": 2, "n_steps": 4, "final_time": 1.0, **options}
    with pytest.raises(ValueError, match=match):
        ocdl.network(**arguments)


@pytest.mark.parametrize(("arguments", "error", "match"), [
    ((2.5, 2, 4, 4), TypeError, "c_in must be an integer >= 1, got 2.5"),  # truncated to 2 before
    ((True, 2, 4, 4), TypeError, "c_in must be an integer >= 1, got True"),
    (("2", 2, 4, 4), TypeError, "c_in must be an integer >= 1, got '2'"),
    ((2, 2, 0, 4), ValueError, "height must be an integer >= 1, got 0"),
    ((2, 2, 4, 4, 3.5), TypeError, "kernel_size must be an integer >= 1, got 3.5"),
    ((2, 2, 4, 4, 4), ValueError, "kernel_size must be odd and positive, got 4"),
])
def test_conv2d_sizes_are_integers(arguments, error, match):
    with pytest.raises(error, match=match):
        ocdl.Conv2d(*arguments)


def test_parameters_are_float32_or_float64_from_the_start():
    """float16, integer and complex parameters were made and failed only at the forward pass; integer Ks
    truncated the biases."""
    net = ocdl.network("resnet", 3, 4, 1.0)
    for dtype in (np.float16, int, complex):
        with pytest.raises(TypeError, match=f"dtype must be float32 or float64, got {np.dtype(dtype)}"):
            net.init_params(dtype=dtype)
    theta = net.pack([np.eye(3, dtype=int)] * 4, [0.5] * 4)
    assert theta.dtype == np.float64 and net.unpack(theta)[1] == [0.5] * 4
    with pytest.raises(TypeError, match=r"Ks\[0\] must be a floating-point array .*, got dtype float16"):
        net.pack([np.eye(3, dtype=np.float16)] * 4, [0.5] * 4)
    for make in (ocdl.Antisymmetric, ocdl.NegativeDefinite):
        with pytest.raises(TypeError, match="base must be an ocdl Transform .*, got NoneType"):
            make(None)


def test_network_factory_accepts_numpy_integers():
    net = ocdl.network("verlet", np.int64(3), np.int32(4), 1.0, hidden_width=np.int16(5))
    assert net.n_steps == 4 and "Dense(n_in=3, n_out=5)" in repr(net)
    assert ocdl.network("antisymmetric", 2, 4, 1.0, gamma=np.float32(0.5)).n_steps == 4


def test_float16_is_rejected_before_it_overflows():
    net = ocdl.network("resnet", 2, 4, 1.0)
    theta = net.init_params(0)
    expected = r"must be a floating-point array \(float32 or float64\), got dtype float16"
    with pytest.raises(TypeError, match="Y0 " + expected):
        net.forward(theta, np.ones((3, 2), dtype=np.float16))
    with pytest.raises(TypeError, match="theta " + expected):
        net.forward(theta.astype(np.float16), np.ones((3, 2), dtype=np.float16))


# -- input validation at the solvers' entry points ----------------------------------------------


def test_solvers_check_their_input():
    lp, theta0 = blobs_problem()
    bcd = BlockCoordinateDescent()
    W0, mu0 = lp.initial_classifier()
    with pytest.raises(TypeError, match="problem must be an ocdl LearningProblem"):
        bcd.minimize("lp", theta0)
    with pytest.raises(ValueError, match="params0.theta must have shape 10"):
        bcd.minimize(lp, theta0[:-1])
    with pytest.raises(TypeError, match="params0.theta must be a numpy array of the examples' dtype float64"):
        bcd.minimize(lp, theta0.astype(np.float32))
    with pytest.raises(ValueError, match="params0.W contains NaN"):
        bcd.minimize(lp, Params(theta0, np.full((2, 2), np.nan), mu0))
    with pytest.raises(ValueError, match="params0.mu must have shape 2"):
        SGD().minimize(lp, Params(theta0, W0, np.zeros(3)))
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        BlockCoordinateDescent(max_iter=0)
    with pytest.raises(ValueError, match="hessian_batch_size must be an integer >= 1"):
        BlockCoordinateDescent(hessian_batch_size=0)
    with pytest.raises(ValueError, match="cg_rtol must be a finite number > 0"):
        BlockCoordinateDescent(cg_rtol=-1.0)
    with pytest.raises(TypeError, match="validation must be a pair"):
        bcd.minimize(lp, theta0, validation=np.ones((3, 2)))
    with pytest.raises(ValueError, match="Y_val must have the network's width"):
        bcd.minimize(lp, theta0, validation=(np.ones((3, 3)), np.zeros(3, int)))
    with pytest.raises(TypeError, match="Y_val must be a numpy array of the examples' dtype float64, got a numpy "
                                        "array of dtype float32"):  # it failed after a first iteration, naming Y0
        bcd.minimize(lp, theta0, validation=(np.ones((3, 2), dtype=np.float32), np.zeros(3, int)))
    with pytest.raises(TypeError, match="state must be a TrainingState"):
        bcd.minimize(lp, None, state={"iteration": 0})
    with pytest.raises(TypeError, match=r"solver must be a TrainingSolver such as BlockCoordinateDescent\(...\)"):
        multilevel(lp, theta0, solver="bcd")
    with pytest.raises(TypeError, match="problem must be an ocdl LearningProblem"):
        ocdl.solvers.multilevel(None, theta0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_iter": -1}, r"max_iter must be an integer >= 0, got -1"),
        ({"max_iter": 2.5}, r"max_iter must be an integer >= 0, got 2.5"),
        ({"gtol": -1e-6}, r"gtol must be a finite number >= 0"),
        ({"cg_maxiter": 0}, r"cg_maxiter must be an integer >= 1, got 0"),
        ({"cg_rtol": -1.0}, r"cg_rtol must be a finite number >= 0, got -1.0"),
    ],
)
def test_newton_checks_its_options_by_their_names(options, match):
    with pytest.raises(ValueError, match=match):
        newton_pcg(Quadratic(np.eye(2), np.ones(2)), np.zeros(2), **options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"c": 1.0}, r"c must lie in \(0, 1\), got 1.0"),
        ({"c": 0.0}, r"c must be a finite number > 0, got 0.0"),
        ({"beta": 1.0}, r"beta must lie in \(0, 1\), got 1.0"),
        ({"beta": 2.0}, r"beta must lie in \(0, 1\), got 2.0"),
        ({"t0": 0.0}, r"t0 must be a finite number > 0, got 0.0"),
        ({"max_evals": 0}, r"max_evals must be an integer >= 1, got 0"),
    ],
)
def test_armijo_checks_its_options_by_their_names(options, match):
    with pytest.raises(ValueError, match=match):
        armijo(lambda x: float(x @ x), np.ones(2), -np.ones(2), 2.0, -4.0, **options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"factor": 1.0}, r"factor must be a finite number > 1, got 1.0"),
        ({"factor": 0.5}, r"factor must be a finite number > 1, got 0.5"),
        ({"factor": 0.0}, r"factor must be a finite number > 1, got 0.0"),
        ({"delta": -1.0}, r"delta must be a finite number > 0, got -1.0"),
        ({"tau": 0.0}, r"tau must be a finite number > 1, got 0.0"),
        ({"tau": 1.0}, r"tau must be a finite number > 1, got 1.0"),
        ({"alpha0": -1.0}, r"alpha0 must be a finite number > 0, got -1.0"),
        ({"n_bisect": -1}, r"n_bisect must be an integer >= 0, got -1"),
    ],
)
def test_discrepancy_principle_checks_its_options_before_any_solve(options, match):
    # factor <= 1 looped for ever: alpha never fell (1) or grew (0.5); delta <= 0 cost 14 solves first
    class Unsolvable:
        sigma = 1.0

        def with_alpha(self, alpha):
            raise AssertionError("solved with a bad option")

    arguments = {"delta": 0.1} | options
    with pytest.raises(ValueError, match=match):
        discrepancy_principle(Unsolvable(), **arguments)


def test_wrong_types_are_type_errors_and_wrong_values_value_errors():
    """A string or a float where an integer belongs is an ArgumentTypeError (a TypeError and a ValueError);
    a number out of range is a ValueError only."""
    from ocdl.validation import ArgumentTypeError

    for bad in ("3", 2.5, True, None):
        with pytest.raises(ArgumentTypeError, match=r"n_steps must be an integer >= 1") as info:
            ocdl.Network(ocdl.ResNet(ocdl.Layer(ocdl.Dense(2))), bad, 1.0)
        assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    with pytest.raises(ArgumentTypeError, match="final_time must be a finite number > 0, got '1'"):
        ocdl.Network(ocdl.ResNet(ocdl.Layer(ocdl.Dense(2))), 2, "1")
    for bad_steps, bad_time in ((0, 1.0), (2, 0.0), (2, float("nan")), (2, -1.0)):
        with pytest.raises(ValueError) as info:
            ocdl.Network(ocdl.ResNet(ocdl.Layer(ocdl.Dense(2))), bad_steps, bad_time)
        assert not isinstance(info.value, TypeError)


SEEDED = {
    "Network.init_params": lambda seed: ocdl.network("resnet", 2, 2, 1.0).init_params(seed),
    "check_stepper": lambda seed: ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(ocdl.Dense(2))), np.ones((3, 2)),
                                                        rng=seed),
    "check_layer": lambda seed: ocdl.check_layer(ocdl.Layer(ocdl.Dense(2)), rng=seed),
    "dot_test_operator": lambda seed: ocdl.dot_test_operator(
        __import__("scipy.sparse.linalg").sparse.linalg.aslinearoperator(np.eye(2)), rng=seed),
    "SGD": lambda seed: SGD(max_epochs=1).minimize(*blobs_problem("resnet"), rng=seed, progress=False),
    "multilevel": lambda seed: multilevel(*blobs_problem("resnet"), max_layers=2, solver=SGD(max_epochs=1),
                                          rng=seed, progress=False),
}


@pytest.mark.parametrize("where", SEEDED)
@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                             ("0", TypeError)])
def test_a_bad_seed_is_named(where, seed, error):
    """NumPy's own messages ("expected non-negative integer", "SeedSequence expects int ...") named no
    argument, and a bool seeded as 0 or 1."""
    with pytest.raises(error, match=r"rng must be None, an integer >= 0 or a numpy.random.Generator, got "):
        SEEDED[where](seed)


@pytest.mark.parametrize("make", ["ellipses", "swiss_roll", "peaks"])
def test_a_bad_problem_seed_is_named(make):
    import ocdl.problems

    maker = {"ellipses": ocdl.problems.concentric_ellipses, "swiss_roll": ocdl.problems.swiss_roll,
             "peaks": ocdl.problems.peaks}[make]
    with pytest.raises(ValueError, match=r"seed must be None, an integer >= 0 .*, got -2"):
        maker(seed=-2)
    assert np.array_equal(maker(seed=3).Y_train, maker(seed=np.random.default_rng(3)).Y_train)


def test_input_sensitivity_names_a_bad_tol_and_Y0():
    net = ocdl.network("resnet", 2, 2, 1.0)
    with pytest.raises(ValueError, match=r"tol must be a finite number >= 0, got -1"):
        ocdl.input_sensitivity(net, net.init_params(0), np.ones((3, 2)), tol=-1)
    with pytest.raises(TypeError, match=r"Y0 must be a NumPy or CuPy array, got list"):
        ocdl.input_sensitivity(net, net.init_params(0), [[1.0, 2.0]])


def test_params0_may_be_the_tuple_theta_W_mu():
    """theta, W, mu = result.x is documented; passing the tuple back said "params0.theta must be a NumPy or
    CuPy array, got tuple"."""
    lp, theta0 = blobs_problem("resnet")
    W0, mu0 = np.full((2, 2), 0.1), np.array([0.2, -0.2])
    solver = SGD(max_epochs=2, batch_size=10)
    as_tuple = solver.minimize(lp, (theta0, W0, mu0), progress=False)
    as_params = solver.minimize(lp, Params(theta0, W0, mu0), progress=False)
    for a, b in zip(as_tuple.x, as_params.x):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"params0 must be Params\(theta, W, mu\), a tuple \(theta, W, mu\) or "
                                         r"theta alone, got a tuple of 2"):
        solver.minimize(lp, (theta0, W0), progress=False)


@pytest.mark.parametrize(("solver", "limit"), [(SGD(max_epochs=2), "max_epochs = 2"),
                                               (Adam(max_epochs=2), "max_epochs = 2"),
                                               (BlockCoordinateDescent(max_iter=2), "max_iter = 2")])
def test_the_message_names_the_option_that_ended_the_run(solver, limit):
    """SGD and Adam, which have no max_iter, said "completed max_iter = 2 iterations"."""
    result = solver.minimize(*blobs_problem("resnet"), progress=False)
    assert result.message.startswith(f"completed {limit} iterations"), result.message


def test_multilevel_says_when_max_layers_is_no_level(caplog):
    """multilevel(max_layers=6) from 2 layers trained 2 and 4 layers without a word (the CLI warned)."""
    lp, theta0 = blobs_problem("resnet")
    with caplog.at_level(logging.WARNING, logger="ocdl.solvers.multilevel"):
        result = multilevel(lp, theta0, max_layers=6, solver=SGD(max_epochs=1), progress=False)
    assert result.network.n_steps == 4
    assert "max_layers = 6: the levels double from the network's 2 layers, so the finest has 4; pass " \
           "max_layers=4, or 8 for one more level" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ocdl.solvers.multilevel"):
        multilevel(lp, theta0, max_layers=4, solver=SGD(max_epochs=1), progress=False)
    assert "max_layers" not in caplog.text


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("kind", ["resnet", "leapfrog"])
def test_a_blow_up_whose_eigenvalues_overflow_is_still_a_propagation_error(kind):
    """Matrices near the largest float give Inf eigenvalues: euler_factor refuses them, and the diagnosis leaves
    its sentence out instead of turning the PropagationError into a ValueError."""
    net = ocdl.network(kind, 2, 4, 4.0, activation="identity")
    with pytest.raises(ocdl.PropagationError, match="step 0 of 4") as info:
        net.forward(net.pack([np.full((2, 2), 1.5e308)] * 4, [0.0] * 4), np.ones((3, 2)))
    assert "eigenvalues must be finite" not in str(info.value)
