"""Training solvers on the learning problem: Gauss-Newton, block coordinate descent, multilevel, SGD, Adam."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import ocdl.solvers
import pytest
from ocdl.solvers import (
    SGD,
    Adam,
    BlockCoordinateDescent,
    Params,
    SolverResult,
    Status,
    TrainingState,
    gauss_newton_pcg,
    multilevel,
    newton_pcg,
    prolongate,
    steepest_descent,
)
from quadratic import Quadratic

import ocdl
from ocdl.learning_problem import LearningProblem


def blobs(s=80, seed=0):
    """Two Gaussian blobs in 2-D, labels 0/1."""
    rng = np.random.default_rng(seed)
    C = np.arange(s) % 2
    Y = rng.standard_normal((s, 2)) * 0.5 + np.where(C[:, None] == 1, 1.0, -1.0)
    return Y, C


def small_problem(kind="verlet", n_steps=4, s=80):
    Y, C = blobs(s)
    net = ocdl.network(kind, 2, n_steps, 2.0)
    lp = LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y, C, alpha_theta=1e-3, alpha_W=1e-3)
    Y_val, C_val = blobs(40, seed=1)
    return lp, net.init_params(0, scale=0.5), (Y_val, C_val)


# -- prolongation -----------------------------------------------------------------


def test_prolongate_is_piecewise_linear_interpolation_in_time():
    net = ocdl.network("resnet", 3, 5, 2.0)
    theta = np.random.default_rng(0).standard_normal(net.n_params)
    fine_net = net.with_steps(10)
    fine = fine_net.theta_steps(prolongate(theta, net))
    coarse = net.theta_steps(theta)
    t, t_fine = np.arange(5) * net.h, np.arange(10) * fine_net.h
    # the piecewise linear interpolant at t_j = j h, constant after t_{N-1} (np.interp extrapolates so)
    expected = np.column_stack([np.interp(t_fine, t, coarse[:, k]) for k in range(coarse.shape[1])])
    np.testing.assert_allclose(fine, expected, rtol=0, atol=1e-15)
    # a theta linear in time is reproduced exactly up to t_{N-1}; then constant
    a, b = np.random.default_rng(1).standard_normal((2, net.stepper.n_params))
    linear = (a + t[:, None] * b).ravel()
    fine = fine_net.theta_steps(prolongate(linear, net))
    np.testing.assert_allclose(fine[:-1], a + t_fine[:-1, None] * b, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(fine[-1], fine[-2])
    with pytest.raises(ValueError, match="theta must have n_params"):
        prolongate(theta[:-1], net)


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_prolongated_network_output_differs_by_order_h(kind):
    rng = np.random.default_rng(2)
    Y0 = rng.standard_normal((20, 2))
    base = ocdl.network(kind, 2, 8, 2.0)
    A, B = rng.standard_normal((2, base.stepper.n_params))
    diffs = []
    for N in (8, 16, 32):
        net = base.with_steps(N)
        theta = (A + np.sin(np.arange(N) * net.h)[:, None] * B).ravel()  # smooth in time
        fine = net.with_steps(2 * N).forward(prolongate(theta, net), Y0)
        diffs.append(np.linalg.norm(net.forward(theta, Y0) - fine) / np.linalg.norm(fine))
    ratios = np.array(diffs[:-1]) / np.array(diffs[1:])
    assert diffs[0] < 0.2
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)  # halves when N doubles: O(h)


# -- Gauss-Newton on a synthetic inverse problem -------------------------------------


def test_gauss_newton_recovers_synthetic_network():
    rng = np.random.default_rng(0)
    net = ocdl.network("resnet", 3, 4, 1.0)
    theta_true = net.init_params(rng)
    Y0 = rng.standard_normal((100, 3))
    W, mu = rng.standard_normal((3, 2)), rng.standard_normal(2)
    targets = net.forward(theta_true, Y0) @ W + mu  # outputs of the known network
    lp = LearningProblem(net, ocdl.LeastSquares(), Y0, targets, alpha_theta=0.0, alpha_W=0.0, regression=True)
    theta0 = theta_true + 0.05 * rng.standard_normal(theta_true.size)
    result = ocdl.solvers.gauss_newton_pcg(
        lp.theta_problem(W, mu), theta0, max_iter=8, gtol=1e-6, cg_maxiter=100, cg_rtol=1e-6
    )
    assert result.success and result.status is Status.CONVERGED, result.message
    assert result.nit <= 6
    assert result.history[-1]["rel_grad_norm"] > 1e-6  # the last recorded one precedes the stop
    misfit = np.linalg.norm(net.forward(result.x, Y0) @ W + mu - targets) / np.linalg.norm(targets)
    assert misfit < 1e-6
    np.testing.assert_allclose(result.x, theta_true, atol=1e-4)
    assert result.fun < 1e-12


# -- block coordinate descent ---------------------------------------------------------


def test_block_coordinate_descent_improves_and_returns_best():
    lp, theta0, validation = small_problem()
    solver = BlockCoordinateDescent(max_iter=8, batch_size=40, hessian_batch_size=20)
    result = solver.minimize(lp, theta0, validation=validation, progress=False)
    assert isinstance(result, SolverResult) and result.nit == 8 and result.success
    assert result.status is Status.MAX_ITER and isinstance(result.x, Params)
    keys = {"iteration", "objective", "grad_norm", "step", "cg_iters", "classifier_cg_iters",
            "train_accuracy", "val_accuracy", "time"}
    assert keys <= set(result.history[0])
    val = result.trace("val_accuracy")
    assert val.max() >= 0.95
    best = int(np.flatnonzero(val == val.max())[-1])
    theta, W, mu = result.x
    assert lp.accuracy(theta, W, mu, *validation) == val[best]
    assert result.fun == pytest.approx(lp.value(theta, W, mu))
    assert np.all(np.diff(result.trace("time")) > 0)
    assert "best validation accuracy" in result.message


def test_block_coordinate_descent_resumes_exactly():
    lp, theta0, validation = small_problem()
    solver = BlockCoordinateDescent(max_iter=6, batch_size=30, hessian_batch_size=10)
    options = dict(validation=validation, progress=False)
    full = solver.minimize(lp, theta0, rng=7, **options)
    saved = []

    def stop_at_3(k, state):
        assert isinstance(state, TrainingState) and state.iteration == k + 1
        if k == 2:
            saved.append(copy.deepcopy(state))
            return True
        return None

    first = solver.minimize(lp, theta0, rng=7, callback=stop_at_3, **options)
    assert first.nit == 3 and "stopped by callback" in first.message
    assert first.success and first.status is Status.CALLBACK
    resumed = solver.minimize(lp, None, state=saved[0], **options)
    assert resumed.nit == 6
    for a, b in zip(full.history, resumed.history):
        assert {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in b.items() if k != "time"}
    for a, b in zip(full.x, resumed.x):
        np.testing.assert_array_equal(a, b)


def test_params_and_a_theta_alone_start_the_same_run():
    lp, theta0, validation = small_problem()
    solver = BlockCoordinateDescent(max_iter=2, batch_size=30)
    from_theta = solver.minimize(lp, theta0, validation=validation, progress=False)
    from_params = solver.minimize(lp, Params(theta0, *lp.initial_classifier()), validation=validation,
                                  progress=False)
    for a, b in zip(from_theta.x, from_params.x):
        np.testing.assert_array_equal(a, b)
    theta, W, mu = from_theta.x
    assert W.shape == (2, 2) and mu.shape == (2,)
    with pytest.raises(AttributeError):  # frozen: a result's parameters never change under the caller
        from_theta.x.theta = theta0


def test_training_solvers_record_their_options_in_their_repr():
    assert repr(BlockCoordinateDescent(max_iter=np.int64(3), cg_rtol=np.float32(0.5))) == (
        "BlockCoordinateDescent(max_iter=3, batch_size=None, hessian_batch_size=None, classifier_newton_steps=2, "
        "classifier_cg_maxiter=2, cg_maxiter=20, cg_rtol=0.5)"
    )
    assert repr(SGD(momentum=0)) == "SGD(max_epochs=50, batch_size=32, learning_rate=0.01, momentum=0.0)"
    assert repr(Adam(betas=[0.5, 0.25])) == (
        "Adam(max_epochs=50, batch_size=32, learning_rate=0.01, betas=(0.5, 0.25), eps=1e-08)"
    )
    assert Adam(betas=[0.5, 0.25]) == Adam(betas=(0.5, 0.25)) != Adam()


def test_block_coordinate_descent_bad_input():
    lp, theta0, (Y_val, C_val) = small_problem()
    solver = BlockCoordinateDescent()
    with pytest.raises(ValueError, match="params0 is required"):
        solver.minimize(lp, None, progress=False)
    with pytest.raises(ValueError, match="validation labels must hold one label per row of Y_val"):
        solver.minimize(lp, theta0, validation=(Y_val, C_val[:-1]), progress=False)
    with pytest.raises(ValueError, match="C must be integer class indices"):
        solver.minimize(lp, theta0, validation=(Y_val, C_val + 0.5), progress=False)


# -- multilevel ---------------------------------------------------------------------


def test_multilevel_warm_starts_finer_levels():
    lp, theta0, validation = small_problem(n_steps=2)
    result = multilevel(
        lp, theta0, max_layers=8, solver=BlockCoordinateDescent(max_iter=3, batch_size=40), validation=validation,
        progress=False,
    )
    assert [rec["n_layers"] for rec in result.history] == [2, 4, 8]
    assert isinstance(result, ocdl.solvers.MultilevelResult) and isinstance(result.x, Params)
    assert result.network.n_steps == 8 and result.x.theta.size == result.network.n_params
    assert result.nit == 9 and result.success and result.status is Status.MAX_ITER
    for rec in result.history:
        assert {"train_accuracy", "best_val_accuracy", "time_s", "iterations"} <= set(rec)
    assert result.history[-1]["best_val_accuracy"] >= 0.95
    # the finer level starts where the coarser one ended (prolongated): its first objective is no worse
    coarse, fine = result.history[1]["result"], result.history[2]["result"]
    assert fine.history[0]["objective"] < coarse.history[0]["objective"]
    with pytest.raises(ValueError, match="max_layers must be an integer >= the network's 2 layers"):
        multilevel(lp, theta0, max_layers=1)


def test_multilevel_builds_each_level_under_its_memory_policy():
    lp, theta0, validation = small_problem("resnet", n_steps=2)
    solver = BlockCoordinateDescent(max_iter=2, batch_size=40)
    stored = multilevel(lp, theta0, max_layers=8, solver=solver, validation=validation, progress=False)
    policies = {2: ocdl.memory.StoreAll(), 4: ocdl.memory.Recompute(2), 8: ocdl.memory.Recompute(3)}
    used = []

    @dataclass(frozen=True)
    class Recording(BlockCoordinateDescent):
        def minimize(self, problem, params0, **options):
            used.append((problem.network.n_steps, problem.network.memory))
            return super().minimize(problem, params0, **options)

    result = multilevel(lp, theta0, max_layers=8, solver=Recording(max_iter=2, batch_size=40),
                        validation=validation, progress=False, memory=policies.__getitem__)
    assert used == list(policies.items()) and result.network.memory is policies[8]
    for a, b in zip(result.x, stored.x):  # recomputed states: the same operations on the same numbers
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="memory must be a function of the number of layers"):
        multilevel(lp, theta0, max_layers=8, memory=ocdl.memory.StoreAll())
    with pytest.raises(TypeError, match=r"memory\(2\) must return an ocdl memory policy"):
        multilevel(lp, theta0, max_layers=8, memory=lambda n: "store-all")


def _level_ending_with(record, status):
    """A solver that runs block coordinate descent, then reports ``record`` as its last iteration and ``status``."""

    @dataclass(frozen=True)
    class Ending(BlockCoordinateDescent):
        def minimize(self, problem, params0, **options):
            result = super().minimize(problem, params0, **options)
            result.history.append(dict(result.history[-1], **record))
            result.success, result.status = False, status
            return result

    return Ending(max_iter=2)


def test_multilevel_goes_on_after_a_stalled_line_search_and_stops_after_a_failure():
    lp, theta0, validation = small_problem(n_steps=2)
    stalled = _level_ending_with({"line_search_failed": True, "failure": "the line search in theta failed"},
                                 Status.LINE_SEARCH_FAILED)
    result = multilevel(lp, theta0, validation=validation, max_layers=8, solver=stalled, progress=False)
    assert [rec["n_layers"] for rec in result.history] == [2, 4, 8]
    assert result.success and "stalled (level ended early) at 2, 4, 8 layers" in result.message
    assert result.status is Status.MAX_ITER
    # each level starts from the previous level's best parameters, prolongated
    theta2, W2, mu2 = result.history[0]["result"].x
    first4 = result.history[1]["result"].history[0]
    assert first4["objective"] <= lp.with_network(lp.network.with_steps(4)).value(
        prolongate(theta2, lp.network), W2, mu2
    ) + 1e-12
    blown_up = _level_ending_with({"failure": "the propagation blew up"}, Status.NOT_FINITE)
    result = multilevel(lp, theta0, validation=validation, max_layers=8, solver=blown_up, progress=False)
    assert [rec["n_layers"] for rec in result.history] == [2]
    assert not result.success and "; the 2-layer level completed max_iter" in result.message  # named by its layers
    assert result.status is Status.NOT_FINITE


# -- first-order baselines ----------------------------------------------------------------


@pytest.mark.parametrize("method", [SGD, Adam])
def test_first_order_baselines_train_and_resume(method):
    lp, theta0, validation = small_problem()
    solver = method(max_epochs=4, batch_size=16)
    options = dict(validation=validation, progress=False)
    result = solver.minimize(lp, theta0, **options)
    assert result.nit == 4 and result.history[0]["n_batches"] == 5
    assert result.success and result.status is Status.MAX_ITER and isinstance(result.x, Params)
    obj = result.trace("objective")
    assert obj[-1] < obj[0]
    assert result.trace("val_accuracy").max() >= 0.9
    saved = []
    solver.minimize(lp, theta0, callback=lambda k, state: saved.append(copy.deepcopy(state)) or k == 1, **options)
    resumed = solver.minimize(lp, None, state=saved[-1], **options)
    np.testing.assert_array_equal(resumed.trace("objective"), obj)
    np.testing.assert_array_equal(resumed.x.theta, result.x.theta)


def test_a_batch_size_above_the_examples_is_said():
    """BCD, SGD, Adam and multilevel took a batch_size above the training examples without a word (ocdl train
    said it): a UserWarning, against the examples of all workers of a data-parallel problem (two here, of 40)."""
    import warnings

    from ocdl.reduction import Reduction

    lp, theta0, _ = small_problem(s=80)
    said = "batch_size 100 is more than the 80 training examples: every batch takes all 80"
    for solver in (BlockCoordinateDescent(max_iter=1, batch_size=100), SGD(max_epochs=1, batch_size=100),
                   Adam(max_epochs=1, batch_size=100)):
        with pytest.warns(UserWarning) as record:
            solver.minimize(lp, theta0, progress=False)
        assert [str(w.message) for w in record] == [said]
    with pytest.warns(UserWarning) as record:
        multilevel(lp, theta0, max_layers=4, solver=BlockCoordinateDescent(max_iter=1, batch_size=100), progress=False)
    assert [str(w.message) for w in record] == [said]

    class TwoWorkers(Reduction):  # this process holds the first half; the other the same number of examples
        size = 2

        def gather(self, value):
            return [value, value]

    Y, C = blobs(80)
    shared = LearningProblem(lp.network, ocdl.SoftmaxCrossEntropy(), Y[:40], C[:40], alpha_theta=1e-3,
                             alpha_W=1e-3, n_classes=2, reduction=TwoWorkers())
    assert (shared.Y0.shape[0], shared.n_examples) == (40, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 60 and 80 are not above the 80 examples, nor None (all)
        for batch_size in (60, 80, None):
            BlockCoordinateDescent(max_iter=1, batch_size=batch_size).minimize(shared, theta0, progress=False)
    with pytest.warns(UserWarning) as record:
        SGD(max_epochs=1, batch_size=100).minimize(shared, theta0, progress=False)
    assert [str(w.message) for w in record] == [said]
    with pytest.warns(UserWarning) as record:  # the Gauss-Newton matrix's sub-sample of a batch of 60
        BlockCoordinateDescent(max_iter=1, batch_size=60, hessian_batch_size=70).minimize(lp, theta0, progress=False)
    assert [str(w.message) for w in record] == ["hessian_batch_size 70 is more than the 60 examples of a batch: the "
                                                "Gauss-Newton matrix takes all 60"]
    small, theta_small, _ = small_problem(s=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SGD's and Adam's default 32 on 20 examples: not the user's choice
        SGD(max_epochs=1).minimize(small, theta_small, progress=False)
        Adam(max_epochs=1).minimize(small, theta_small, progress=False)


def test_first_order_bad_options():
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        SGD(learning_rate=0.0)
    with pytest.raises(ValueError, match="momentum must lie in"):
        SGD(momentum=1.0)
    with pytest.raises(ValueError, match="betas must lie in"):
        Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        Adam(betas=0.9)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        Adam(max_epochs=0)


def test_newton_falls_back_to_steepest_descent_when_the_newton_step_is_too_long():
    class Flat:
        """f(x) = sum sqrt(1 + x^2): far out the curvature ~ |x|^-3 makes the Newton step far too long."""

        def value(self, x):
            return float(np.sqrt(1 + x**2).sum())

        def model(self, x):
            problem = self

            class Model:
                value = problem.value(x)
                gradient = x / np.sqrt(1 + x**2)

                def hessian_matvec(self, v):
                    return v / (1 + x**2) ** 1.5

            return Model()

    x0 = np.array([1e4, -2e4])
    result = ocdl.solvers.newton_pcg(Flat(), x0, max_iter=1)
    record = result.history[-1]
    assert record["gradient_fallback"] and record["step"] == 1.0
    assert result.status is Status.MAX_ITER and not result.success
    np.testing.assert_allclose(result.x, x0 - Flat().model(x0).gradient)
    result = ocdl.solvers.newton_pcg(Flat(), np.array([0.5, -0.2]), max_iter=1)
    assert not result.history[-1]["gradient_fallback"] and result.history[-1]["step"] > 0


def test_newton_first_line_search_starts_from_step0():
    q, x0 = Quadratic(np.diag([1.0, 4.0, 9.0]), np.array([1.0, -2.0, 3.0])), np.zeros(3)
    minimum = np.linalg.solve(q.A, q.b)
    result = ocdl.solvers.newton_pcg(q, x0, max_iter=2, cg_rtol=1e-12, step0=0.25)
    # Armijo accepts the first trial on a quadratic for t <= 1: a quarter step, then the full Newton step
    assert [rec["step"] for rec in result.history] == [0.25, 1.0]
    np.testing.assert_allclose(result.x, minimum, rtol=1e-12)
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(ValueError, match="step0"):
            ocdl.solvers.newton_pcg(q, x0, step0=bad)



def _orders(problem, result, floor):
    """Observed orders of convergence, log(g_{k+2}/g_{k+1}) / log(g_{k+1}/g_k), of the relative gradient norms of
    the iterates (the history's and the result's) down to the first below the round-off ``floor`` (2 for
    quadratic convergence, 1 for linear), and those norms."""
    g0 = result.history[0]["grad_norm"]
    g = [rec["rel_grad_norm"] for rec in result.history] + [np.linalg.norm(problem.model(result.x).gradient) / g0]
    g = g[: next((k for k, value in enumerate(g) if value < floor), len(g)) + 1]
    return [np.log(c / b) / np.log(b / a) for a, b, c in zip(g, g[1:], g[2:])], g


def test_newton_pcg_converges_quadratically_on_a_strictly_convex_classifier_problem():
    """The exact Newton direction (CG to 1e-12) on the logistic problem in (W, mu) with weight decay (strictly
    convex): the order of the last steps is 2 (a Hessian off by a constant factor would give order 1). (The
    softmax problem's Hessian is singular along mu + c (1, ..., 1), where CG cannot reach 1e-12.)"""
    rng = np.random.default_rng(0)
    C = np.arange(60) % 2
    Y = rng.standard_normal((60, 3)) + np.where(C[:, None] == 1, 0.5, -0.5)
    net = ocdl.network("resnet", 3, 4, 1.0)
    lp = LearningProblem(net, ocdl.LogisticCrossEntropy(), Y, C)
    problem = lp.classifier_problem(lp.features(net.init_params(0, scale=0.5)))
    result = newton_pcg(problem, np.zeros(3 + 1), max_iter=30, gtol=1e-13, cg_rtol=1e-12, cg_maxiter=100)
    orders, g = _orders(problem, result, floor=1e-13)
    assert result.success and g[-1] < 1e-13 and all(rec["step"] == 1.0 for rec in result.history), g
    assert min(orders[-2:]) > 1.8, (orders, g)


def test_gauss_newton_converges_quadratically_on_a_zero_residual_fit():
    """Fitting a network's own outputs (zero residual, more outputs than parameters): Gauss-Newton is
    Newton's method to first order there, so the order of convergence is 2 and theta is recovered."""
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    net = ocdl.network("resnet", 2, 2, 1.0)  # 10 parameters, 40 outputs
    Y0 = rng.standard_normal((20, 2))
    theta_true = net.init_params(3)
    target = net.forward(theta_true, Y0)

    class Fit:
        def value(self, theta):
            return 0.5 * float(np.sum((net.forward(theta, Y0) - target) ** 2))

        def model(self, theta):
            traj = net.trajectory(theta, Y0)
            r = traj.final_state[0] - target
            return SimpleNamespace(value=0.5 * float(np.sum(r**2)), gradient=net.vjp(theta, Y0, r, trajectory=traj),
                                   hessian_matvec=lambda v: net.vjp(theta, Y0, net.jvp(theta, Y0, v, trajectory=traj),
                                                                    trajectory=traj))

    start = theta_true + 0.3 * rng.standard_normal(theta_true.size)
    fit = Fit()
    result = gauss_newton_pcg(fit, start, max_iter=20, gtol=1e-11, cg_rtol=1e-14, cg_maxiter=100)
    orders, g = _orders(fit, result, floor=1e-11)
    assert result.success and orders[-1] > 1.9 and orders[-2] > 1.6, (orders, g)
    np.testing.assert_allclose(result.x, theta_true, atol=1e-10)


def test_the_gradient_test_runs_before_each_step_and_names_a_zero_gradient():
    """One exact Newton step on a quadratic lands on the minimiser (gradient 0.0): with max_iter=1 the last
    iterate's gradient is not evaluated (documented: MAX_ITER), with max_iter=2 the test sees it; a zero gradient
    at the start said "reduced by 1e-06"."""
    from ocdl.solvers import steepest_descent

    A, b = np.diag([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 2.0])
    problem = Quadratic(A, b)
    one = newton_pcg(problem, np.zeros(3), max_iter=1, cg_rtol=0.0)
    assert np.linalg.norm(A @ one.x - b) < 1e-14 and (one.status, one.success) == (Status.MAX_ITER, False)
    result = newton_pcg(problem, np.zeros(3), max_iter=2, cg_rtol=0.0)
    assert (result.status, result.success, result.nit) == (Status.CONVERGED, True, 1), result.message
    minimiser = np.linalg.solve(A, b)
    for solve in (lambda x0: newton_pcg(problem, x0), lambda x0: steepest_descent(problem, x0)):
        at_once = solve(minimiser)
        assert (at_once.status, at_once.success, at_once.nit) == (Status.CONVERGED, True, 0)
        assert at_once.message == "the gradient is zero"
    unfinished = newton_pcg(Quadratic(np.diag([1.0, 1e3]), np.ones(2)), np.zeros(2), max_iter=1, cg_maxiter=1)
    assert (unfinished.status, unfinished.success) == (Status.MAX_ITER, False)  # one CG step: not there yet
    assert newton_pcg(problem, np.zeros(3), max_iter=0).status is Status.MAX_ITER


def test_the_default_gtol_is_one_float32_can_reach():
    """A zero-residual least-squares fit, min |B x - d|^2 / 2 with cond(B) = 100: in float32 its gradient levels
    off at 6e-6 to 2e-5 of the first, so gtol = 1e-6 ran to max_iter; the default there is sqrt(eps) (float32's
    eps from NumPy), also of steepest descent (on a fit with cond(B) = 3), and in float64 still 1e-6, with the
    same iterates as an explicit gtol=1e-6."""
    from types import SimpleNamespace

    from ocdl.solvers import steepest_descent

    rng = np.random.default_rng(0)
    U, V = np.linalg.qr(rng.standard_normal((60, 20)))[0], np.linalg.qr(rng.standard_normal((20, 20)))[0]
    xs = rng.standard_normal(20)

    def fit(dtype, decades=2):
        B = (U * np.logspace(0, decades, 20)) @ V.T
        B_, d_ = B.astype(dtype), (B @ xs).astype(dtype)

        def value(x):
            return 0.5 * float(np.sum((B_ @ x - d_) ** 2))

        return SimpleNamespace(value=value, model=lambda x: SimpleNamespace(
            value=value(x), gradient=B_.T @ (B_ @ x - d_), hessian_matvec=lambda v: B_.T @ (B_ @ v)))

    x0 = np.zeros(20, np.float32)
    assert gauss_newton_pcg(fit(np.float32), x0, gtol=1e-6).status is Status.MAX_ITER
    result = gauss_newton_pcg(fit(np.float32), x0)
    sqrt_eps = float(np.finfo(np.float32).eps) ** 0.5
    assert (result.status, result.success) == (Status.CONVERGED, True), result.message
    assert result.message == f"gradient norm reduced by {sqrt_eps:g}" and result.x.dtype == np.float32
    B = (U * np.logspace(0, 2, 20)) @ V.T  # the gradient there in float64: within a few sqrt(eps) of the first
    x = result.x.astype(np.float64)
    assert np.linalg.norm(B.T @ (B @ (x - xs))) < 3 * sqrt_eps * np.linalg.norm(B.T @ (B @ xs))
    first_order = steepest_descent(fit(np.float32, decades=0.5), x0)
    assert first_order.success and first_order.message == f"gradient norm reduced by {sqrt_eps:g}"
    for solve in (gauss_newton_pcg, steepest_descent):
        default, explicit = solve(fit(np.float64), np.zeros(20)), solve(fit(np.float64), np.zeros(20), gtol=1e-6)
        np.testing.assert_array_equal(default.x, explicit.x)
        assert [rec["objective"] for rec in default.history] == [rec["objective"] for rec in explicit.history]
        assert (default.status, default.message) == (explicit.status, explicit.message)


def test_the_default_gtol_takes_integer_starts():
    """An integer x0 (the iterates become float64) converged before the default gtol depended on x0's dtype, and
    raised after ("not inexact"): its default is 1e-6, and the solvers reach A^{-1} b."""
    from types import SimpleNamespace

    A, b = np.diag([1.0, 4.0]), np.array([1.0, 1.0])

    def value(x):
        return 0.5 * x @ A @ x - b @ x

    problem = SimpleNamespace(value=value, model=lambda x: SimpleNamespace(
        value=value(x), gradient=A @ x - b, hessian_matvec=lambda v: A @ v))
    for solve in (newton_pcg, gauss_newton_pcg, steepest_descent):
        result = solve(problem, np.zeros(2, dtype=int))
        assert result.success, (solve.__name__, result.message)
        np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-5)


def test_a_training_solver_that_is_no_dataclass_minimizes():
    """The batch options' warning read the defaults with dataclasses.fields: a solver of one's own that is a plain
    class raised TypeError in minimize."""
    from ocdl.solvers.training_loop import TrainingSolver

    class Plain(TrainingSolver):
        label = "plain"

        def __init__(self, max_iter=2):
            self.max_iter = max_iter

        @property
        def n_iterations(self):
            return self.max_iter

        def iterate(self, problem, state):
            return {"objective": 0.0}

    lp, theta0, _ = small_problem()
    result = Plain().minimize(lp, theta0, progress=False)
    assert len(result.history) == 2 and result.status is Status.MAX_ITER
