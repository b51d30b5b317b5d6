"""The heat equation as user-defined dynamics: derivatives, exact solutions, stability, the inverse problem."""

import numpy as np
import pytest
from ocdl.problems.heat import (
    ExplicitHeat,
    ImplicitHeat,
    ObservedTrajectory,
    eigenmode_solution,
    gaussian_profiles,
    grid,
    laplacian_eigenvalue,
    sensor_matrix,
)
from ocdl.problems.heat_inverse import HeatSource, Tikhonov
from ocdl.solvers import discrepancy_principle, gauss_newton_pcg, steepest_descent

import ocdl

SCHEMES = ["forward-euler", "backward-euler", "crank-nicolson"]


def make_stepper(scheme, n, kappa, profiles):
    if scheme == "forward-euler":
        return ExplicitHeat(n, kappa, profiles)
    return ImplicitHeat(n, kappa, profiles, scheme)


def relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# -- derivatives -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_heat_steppers_pass_check_stepper(scheme):
    n, kappa = 31, 0.05
    stepper = make_stepper(scheme, n, kappa, gaussian_profiles(grid(n), [0.3, 0.7], 0.05))
    h = 0.5 * stepper.max_stable_step() if scheme == "forward-euler" else 0.05
    Y0 = np.random.default_rng(0).standard_normal((3, n))  # three right-hand sides, one source
    report = ocdl.check_stepper(stepper, Y0, h=h).raise_if_failed()
    for name, result in report.results.items():
        if isinstance(result, ocdl.checks.TaylorResult):
            # the step is linear: rate1 is inf, i.e. E1 is at round-off while E0 is O(eps)
            assert result.rate1 >= 1.9 and np.all(result.e1 <= 1e-6 * result.e0), name
        else:
            assert result.rel_error <= 1e-10, name


def test_check_stepper_catches_a_wrong_source_derivative():
    class WrongSource(ImplicitHeat):
        def step_vjp(self, state, theta, h, lam, cache):
            lam_state, g = super().step_vjp(state, theta, h, lam, cache)
            return lam_state, 0.5 * g  # half the true parameter gradient

    n = 15
    stepper = WrongSource(n, 0.1, gaussian_profiles(grid(n), [0.5], 0.1))
    report = ocdl.check_stepper(stepper, np.ones((1, n)), h=0.01)
    assert not report.results["step: jvp/vjp adjoint in theta"].passed  # named: the parameters' part
    assert report.results["step: jvp/vjp adjoint in state"].passed
    assert report.results["step: theta"].passed  # the jvp is right, only the transpose is wrong


def _observed(kind):
    rng = np.random.default_rng(3)
    if kind == "heat":
        n = 31
        stepper = ImplicitHeat(n, 0.05, gaussian_profiles(grid(n), [0.3, 0.7], 0.05))
        net = ocdl.Network(stepper, 12, 0.3)
        P = sensor_matrix(grid(n), [0.2, 0.45, 0.9])
    else:  # a nonlinear stepper: the observation operator is generic
        n = 4
        net = ocdl.network("resnet", n, 6, 1.0, activation="tanh")
        P = rng.standard_normal((2, n))
    theta = net.init_params(rng, scale=0.5)
    U0 = rng.standard_normal((2, n))
    return ObservedTrajectory(net, P), theta, U0, rng


@pytest.mark.parametrize("kind", ["heat", "resnet"])
def test_observation_operator_taylor_and_dot_test(kind):
    obs, theta, U0, rng = _observed(kind)
    dtheta = rng.standard_normal(theta.shape)
    traj = obs.trajectory(theta, U0)
    readings = obs.forward(theta, U0, traj)
    assert readings.shape == (2, obs.network.n_steps, obs.P.shape[0])
    taylor = ocdl.taylor_test(lambda t: obs.forward(t, U0), theta, dtheta, obs.jvp(theta, U0, dtheta, traj))
    assert taylor.passed, str(taylor)
    if kind == "resnet":
        assert 1.9 <= taylor.rate1 < 2.1 and 0.9 < taylor.rate0 < 1.1
    W = rng.standard_normal(readings.shape)
    dot = ocdl.dot_test(lambda v: obs.jvp(theta, U0, v, traj), lambda w: obs.vjp(theta, U0, w, traj), dtheta, W)
    assert dot.passed, str(dot)


def test_readings_are_the_sensor_values_of_every_state():
    obs, theta, U0, _ = _observed("heat")
    net, P = obs.network, obs.P
    state, expected = net.stepper.init(U0), []
    for theta_j in net.theta_steps(theta):
        state, _ = net.stepper.step(state, theta_j, net.h)
        expected.append(state[0] @ P.toarray().T)
    np.testing.assert_allclose(obs.forward(theta, U0), np.stack(expected, axis=1), rtol=1e-13, atol=1e-14)


def test_sensor_matrix_interpolates_linearly_with_zero_walls():
    x = grid(9)  # nodes 0.1, ..., 0.9
    P = sensor_matrix(x, [0.3, 0.35, 0.05, 0.97]).toarray()
    f = np.sin(3.0 * x)
    np.testing.assert_allclose(P @ f, [f[2], 0.5 * (f[2] + f[3]), 0.5 * f[0], 0.3 * f[8]], rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sensor_matrix(x, [1.5])


# -- forward solution against exact solutions ------------------------------------------------------


@pytest.mark.parametrize("scheme", ["forward-euler", "crank-nicolson"])
def test_eigenmode_solution_second_order_under_refinement(scheme):
    r"""u_0 = sin(2 pi x), no source: error against sin(2 pi x) exp(-4 pi^2 kappa T) is O(dx^2).

    Forward Euler with h = 0.2 dx^2 (time error O(h) = O(dx^2)); Crank-Nicolson
    with h = 0.1 dx (time error O(h^2) = O(dx^2)); the space error is O(dx^2).
    """
    kappa, T, errors = 1.0, 0.1, []
    for m in (16, 32, 64):  # m = n + 1 = 1 / dx
        n = m - 1
        x = grid(n)
        n_steps = m * m // 2 if scheme == "forward-euler" else m
        net = ocdl.Network(make_stepper(scheme, n, kappa, np.zeros((1, n))), n_steps, T)
        U_N = net.forward(np.zeros(n_steps), np.sin(2 * np.pi * x)[None])
        errors.append(np.abs(U_N[0] - eigenmode_solution(x, T, kappa, k=2)).max())
    rates = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all((rates > 1.9) & (rates < 2.1)), (errors, rates)


@pytest.mark.parametrize(("scheme", "order"), [("forward-euler", 1), ("backward-euler", 1), ("crank-nicolson", 2)])
def test_time_order_with_a_source(scheme, order):
    r"""Manufactured semi-discrete solution u_i(t) = phi(t) sin(pi x_i), phi = 1 + sin 2t.

    sin(pi x_i) is an eigenvector of L (eigenvalue mu_1), so with g = sin(pi x) and
    q(t) = phi'(t) - kappa mu_1 phi(t) it solves du/dt = kappa L u + q(t) g exactly:
    the remaining error is the time stepping's, O(h^order), with theta_j = q(t_{j+1/2}).
    """
    n, kappa, T = 15, 0.1, 1.0
    x = grid(n)
    g = np.sin(np.pi * x)
    mu = laplacian_eigenvalue(n, 1)

    def phi(t):
        return 1.0 + np.sin(2.0 * t)

    def q(t):
        return 2.0 * np.cos(2.0 * t) - kappa * mu * phi(t)

    errors = []
    for n_steps in (64, 128, 256):
        t_mid = (np.arange(n_steps) + 0.5) * T / n_steps
        net = ocdl.Network(make_stepper(scheme, n, kappa, g[None]), n_steps, T)
        U_N = net.forward(q(t_mid), g[None])
        errors.append(np.abs(U_N[0] - phi(T) * g).max())
    rates = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all(np.abs(rates - order) < 0.1), (errors, rates)


def test_explicit_blows_up_above_the_stability_limit_implicit_does_not():
    r"""Forward Euler multiplies sin(n pi x) by 1 + h kappa mu_n: below -1 once h > 2/(kappa |mu_n|) ~ dx^2/(2 kappa).

    Backward Euler and Crank-Nicolson damp every mode for every h.
    """
    n, kappa, n_steps = 31, 1.0, 400
    U0 = np.random.default_rng(0).standard_normal((1, n))  # all modes present
    no_source = np.zeros((1, n))
    explicit = ExplicitHeat(n, kappa, no_source)
    h_max = explicit.max_stable_step()
    assert h_max == pytest.approx((1.0 / (n + 1)) ** 2 / (2 * kappa), rel=0.01)
    stable = ocdl.Network(explicit, n_steps, 0.95 * h_max * n_steps).forward(np.zeros(n_steps), U0)
    assert np.abs(stable).max() < np.abs(U0).max()
    with pytest.raises(ocdl.PropagationError, match="blew up"):
        ocdl.Network(explicit, n_steps, 1.05 * h_max * n_steps).forward(np.zeros(n_steps), U0)
    for scheme in ("backward-euler", "crank-nicolson"):  # 100 times the explicit limit
        implicit = ImplicitHeat(n, kappa, no_source, scheme)
        U_N = ocdl.Network(implicit, n_steps, 100 * h_max * n_steps).forward(np.zeros(n_steps), U0)
        assert np.abs(U_N).max() < np.abs(U0).max()


# -- the inverse problem ---------------------------------------------------------------------------


def test_noise_free_recovery_converges_as_alpha_goes_to_zero():
    """Data F(theta_true) exactly: the Tikhonov solutions tend to theta_true, error O(alpha)."""
    setup = HeatSource(n=31, n_steps=50)
    truth = setup.true_theta()
    data, _ = setup.noisy_data(0.0, refine=1)
    problem = Tikhonov(setup, data, alpha=1.0)
    x, errors = np.zeros_like(truth), []
    for alpha in problem.sigma * 10.0 ** np.arange(0, -9, -2):
        x = gauss_newton_pcg(problem.with_alpha(alpha), x, max_iter=5, gtol=1e-6, cg_maxiter=300, cg_rtol=1e-7).x
        errors.append(np.linalg.norm(x - truth) / np.linalg.norm(truth))
    errors = np.array(errors)
    # Tikhonov's bias falls like alpha^nu, nu in [1/2, 1] for a smooth truth (source condition); measured:
    # 21%, 1.9%, 0.19%, 4e-5, 4e-7, i.e. factors 11, 10, 45, 98 per factor 100 in alpha
    assert np.all(errors[1:] < errors[:-1] / 5), errors
    assert errors[-1] < 1e-5, errors


@pytest.mark.parametrize("seed", [0, 1])
def test_discrepancy_principle_with_one_percent_noise(seed):
    setup = HeatSource()
    truth = setup.true_theta()
    data, delta = setup.noisy_data(0.01, rng=seed, refine=8)  # data from 8x finer time steps
    result = discrepancy_principle(Tikhonov(setup, data, alpha=1.0), delta, tau=1.1)
    # the principle: misfit <= tau delta at alpha, and above it for every larger alpha tried
    assert result.misfit <= 1.1 * delta
    assert all(misfit > 1.1 * delta for alpha, misfit, _ in result.path if alpha > result.alpha)
    error = np.linalg.norm(result.theta - truth) / np.linalg.norm(truth)
    errors_on_path = [np.linalg.norm(x - truth) / np.linalg.norm(truth) for _, _, x in result.path]
    # Range of the relative error: 2% <= error <= 8%. The error is the regularisation bias at the chosen
    # alpha plus the propagated noise. Measured over noise seeds 0-7 it is 3.6-5.3%; the bias alone (the
    # same alpha on noise-free data) is 3.8-4.9% (the smoothing of the pulse q_2 and of the last, barely
    # observed steps), the noise adds at most ~1%. The upper bound 8% stays below sqrt(0.01) = 10%,
    # Tikhonov's O(delta^1/2) rate for the discrepancy principle; below 2% would undercut the bias the
    # principle's alpha must carry. With tau = 1.1 > 1 the principle over-smooths a little, so it is
    # quasi-optimal: within a factor 2 of the best alpha it tried (measured factor 1.3-1.6).
    assert 0.02 <= error <= 0.08, error
    assert error <= 2.0 * min(errors_on_path)


def test_gauss_newton_needs_far_fewer_iterations_than_steepest_descent():
    setup = HeatSource()
    data, delta = setup.noisy_data(0.01, rng=0, refine=8)
    problem = Tikhonov(setup, data, alpha=0.2 * Tikhonov(setup, data, 1.0).sigma)  # about the DP's alpha
    x0, gtol = np.zeros(setup.n_params), 1e-4
    gn = gauss_newton_pcg(problem, x0, max_iter=50, gtol=gtol, cg_maxiter=100, cg_rtol=1e-2)
    gn_solves, problem.n_solves = problem.n_solves, 0
    sd = steepest_descent(problem, x0, max_iter=2000, gtol=gtol)
    assert gn.success and sd.success, (gn.message, sd.message)
    # measured: GN 2 iterations (38 forward/tangent/adjoint sweeps), SD 190 iterations (758 sweeps)
    assert 20 * gn.nit < sd.nit and 5 * gn_solves < problem.n_solves, (gn.nit, sd.nit)
    assert relative(sd.x, gn.x) < 0.05


def test_discrepancy_principle_brackets_upward_when_the_first_solve_fits():
    """At 10% noise the misfit at alpha0 = sigma is already below tau delta (0.905 delta): the principle must
    go up to the largest alpha that fits, not return alpha0; from alpha0 = 1e-3 sigma too (it stopped there,
    misfit 0.85 delta, error 61%)."""
    setup = HeatSource()
    data, delta = setup.noisy_data(0.1, rng=1, refine=8)
    problem = Tikhonov(setup, data, alpha=1.0)
    results = [discrepancy_principle(problem, delta, alpha0=alpha0) for alpha0 in (None, 1e-3 * problem.sigma)]
    for result in results:
        assert result.alpha > 2 * problem.sigma and 1.0 * delta < result.misfit <= 1.1 * delta
        assert all(misfit > 1.1 * delta for alpha, misfit, _ in result.path if alpha > result.alpha)
        assert any(1.1 * delta < misfit for alpha, misfit, _ in result.path if alpha < 2 * result.alpha)  # bracketed
    assert results[0].alpha == pytest.approx(results[1].alpha, rel=1e-12)


def test_discrepancy_principle_refuses_a_nan_misfit_and_tau_not_above_one():
    setup = HeatSource(n=15, n_steps=20)
    data, delta = setup.noisy_data(0.01)

    class NaNMisfit(Tikhonov):
        def with_alpha(self, alpha):
            return NaNMisfit(self.setup, self.data[0], alpha, self.sigma)

        def misfit(self, theta):
            return float("nan")

    with pytest.raises(FloatingPointError, match=r"misfit at alpha = .* is nan"):
        discrepancy_principle(NaNMisfit(setup, data, 1.0), delta)
    for tau in (1.0, 0.5):
        with pytest.raises(ValueError, match="tau"):
            discrepancy_principle(Tikhonov(setup, data, 1.0), delta, tau=tau)


def test_float32_heat_steppers_and_inverse_problem():
    """float32 fields stay float32 (check_stepper's float32 rows: they returned float64), and the whole inverse
    problem runs in float32 and agrees with float64."""
    n = 15
    for scheme in SCHEMES:
        stepper = make_stepper(scheme, n, 0.05, gaussian_profiles(grid(n), [0.3, 0.7], 0.05))
        h = 0.5 * stepper.max_stable_step() if scheme == "forward-euler" else 0.05
        Y0 = np.random.default_rng(0).standard_normal((3, n)).astype(np.float32)
        report = ocdl.check_stepper(stepper, Y0, h=h)
        assert report.passed and "float32: step_vjp" in report.results, str(report)
    results = {}
    for dtype in (np.float64, np.float32):
        setup = HeatSource(dtype=dtype)
        data, delta = setup.noisy_data(0.01, rng=0, refine=8)
        assert setup.forward(setup.true_theta()).dtype == data.dtype == dtype
        results[dtype] = discrepancy_principle(Tikhonov(setup, data, alpha=1.0), delta)
        assert results[dtype].theta.dtype == dtype
    assert results[np.float32].alpha == pytest.approx(results[np.float64].alpha, rel=1e-3)
    assert relative(results[np.float32].theta, results[np.float64].theta) < 1e-3


def _small():
    return HeatSource(n=15, n_steps=20)


@pytest.mark.parametrize("build, error, match", [
    (lambda: HeatSource(n=0), ValueError, "n must be"),
    (lambda: HeatSource(n=15.5), TypeError, "n must be an integer"),
    (lambda: HeatSource(sensors=()), ValueError, "sensors must be a non-empty"),
    (lambda: HeatSource(sensors=(np.nan,)), ValueError, "sensors must be a non-empty sequence of finite"),
    (lambda: HeatSource(centres=()), ValueError, "centres must be a non-empty"),
    (lambda: HeatSource(width=0), ValueError, "width must be"),
    (lambda: HeatSource(dtype=np.float16), TypeError, "dtype must be"),
    (lambda: _small().noisy_data(-0.1), ValueError, "level must be"),
    (lambda: _small().noisy_data(np.nan), ValueError, "level must be"),
    (lambda: Tikhonov(_small(), np.zeros((20, 4)), alpha=-1.0), ValueError, "alpha must be"),
    (lambda: Tikhonov(_small(), np.zeros((20, 4)), alpha=np.nan), ValueError, "alpha must be"),
    (lambda: Tikhonov(_small(), np.zeros((4, 20)), alpha=1.0), ValueError, r"data must have shape 20 x 4, got \(4,"),
    (lambda: Tikhonov(_small(), np.full((20, 4), np.nan), 1.0), ValueError, "data .*NaN"),
    (lambda: Tikhonov(_small(), np.zeros((20, 4), np.float32), 1.0), TypeError, "data"),
])
def test_bad_input_is_named(build, error, match):
    with pytest.raises(error, match=match):
        build()
