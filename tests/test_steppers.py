"""Steppers: derivative checks for every transform x activation x stepper, and the paper's equations."""

import numpy as np
import pytest

import ocdl

#: One name per stepper class (the antisymmetric transform is among the transforms below).
STEPPERS = {name: kind for name, kind in ocdl.KINDS.items() if not kind.antisymmetric}


def make_transform(name, rectangular):
    if name == "dense":
        return ocdl.Dense(3, 2) if rectangular else ocdl.Dense(3)
    if name == "antisymmetric":
        return ocdl.Antisymmetric(ocdl.Dense(3), gamma=0.1)
    if name == "negative-definite":
        return ocdl.NegativeDefinite(ocdl.Dense(2, 3), gamma=0.1)
    return ocdl.Conv2d(2, 1, 3, 3) if rectangular else ocdl.Conv2d(2, 2, 3, 3)


@pytest.mark.parametrize("stepper_name", sorted(STEPPERS))
@pytest.mark.parametrize("transform_name", ["dense", "antisymmetric", "negative-definite", "conv2d"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "smoothrelu", "identity"])
def test_check_stepper_all_combinations(stepper_name, transform_name, activation):
    rng = np.random.default_rng(7)
    kind = STEPPERS[stepper_name]
    transform = make_transform(transform_name, kind.rectangular)
    stepper = kind.stepper(ocdl.Layer(transform, activation))
    Y0 = rng.standard_normal((4, transform.n_in))
    # relu is piecewise linear: keep the steps below the distance to its kink
    eps0 = 1e-4 if activation == "relu" else 1e-1
    report = ocdl.check_stepper(stepper, Y0, h=0.2, rng=rng, eps0=eps0)
    assert report.passed, str(report)


def _paper_forward(kind, Ks, bs, Y0, h):
    """Independent re-computation of each stepper's equation with explicit loops."""
    sig = np.tanh
    if kind in ("resnet", "antisymmetric"):
        Y = Y0.copy()
        for K, b in zip(Ks, bs):
            if kind == "antisymmetric":
                K = 0.5 * (K - K.T)
            Y = Y + h * sig(Y @ K + b)
        return Y
    if kind == "leapfrog":
        Y_prev, Y = Y0.copy(), Y0.copy()
        for K, b in zip(Ks, bs):
            Y_prev, Y = Y, 2 * Y - Y_prev + h**2 * sig(Y @ K + b)
        return Y
    if kind == "verlet":
        Y, Z = Y0.copy(), np.zeros((Y0.shape[0], Ks[0].shape[1]))
        for K, b in zip(Ks, bs):
            Z = Z - h * sig(Y @ K + b)
            Y = Y + h * sig(Z @ K.T + b)
        return Y
    if kind == "rk4":
        Y = Y0.copy()
        for K, b in zip(Ks, bs):
            def f(U, K=K, b=b):
                return sig(U @ K + b)
            k1 = f(Y)
            k2 = f(Y + h / 2 * k1)
            k3 = f(Y + h / 2 * k2)
            k4 = f(Y + h * k3)
            Y = Y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return Y
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ocdl.KINDS)
def test_forward_matches_paper_equation(kind, rng):
    n, m, N, T = 3, (4 if kind == "verlet" else 3), 7, 2.0
    net = ocdl.network(kind, n, N, T, hidden_width=m if kind == "verlet" else None)
    Ks = [rng.standard_normal((n, m)) for _ in range(N)]
    bs = list(rng.standard_normal(N))
    theta = net.pack(Ks, bs)
    Y0 = rng.standard_normal((5, n))
    expected = _paper_forward(kind, Ks, bs, Y0, T / N)
    np.testing.assert_allclose(net.forward(theta, Y0), expected, rtol=1e-13, atol=1e-14)
    Ks2, bs2 = net.unpack(theta)
    np.testing.assert_array_equal(np.stack(Ks2), np.stack(Ks))
    np.testing.assert_array_equal(bs2, bs)


def test_leapfrog_first_step_zero_velocity(rng):
    net = ocdl.network("leapfrog", 2, 1, 0.5)
    K, b, Y0 = rng.standard_normal((2, 2)), 0.3, rng.standard_normal((4, 2))
    Y1 = net.forward(net.pack([K], [b]), Y0)
    np.testing.assert_allclose(Y1, Y0 + 0.25 * np.tanh(Y0 @ K + b), rtol=1e-14)


@pytest.mark.parametrize("kind", ["leapfrog", "verlet"])
def test_reverse_step_inverts_step(kind, rng):
    net = ocdl.network(kind, 3, 1, 1.0)
    theta = net.init_params(rng)
    state = net.stepper.init(rng.standard_normal((4, 3)))
    state = net.stepper.step(state, theta, 0.3)[0]
    forward_next, forward_cache = net.stepper.step(state, theta, 0.3)
    back, back_cache = net.stepper.reverse_step(forward_next, theta, 0.3)
    for a, b in zip(back, state):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    def members(cache):
        return cache if isinstance(cache, tuple) else (cache,)

    for a, b in zip(members(back_cache), members(forward_cache)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ocdl.KINDS)
def test_float32_runs_and_agrees(kind, rng):
    net = ocdl.network(kind, 3, 5, 1.0)
    theta = net.init_params(rng)
    Y0 = rng.standard_normal((6, 3))
    W = rng.standard_normal((6, 3))
    YN64, g64 = net.forward(theta, Y0), net.vjp(theta, Y0, W)
    t32, Y32, W32 = theta.astype(np.float32), Y0.astype(np.float32), W.astype(np.float32)
    YN32, g32 = net.forward(t32, Y32), net.vjp(t32, Y32, W32)
    assert YN32.dtype == np.float32 and g32.dtype == np.float32
    assert net.jvp(t32, Y32, t32).dtype == np.float32
    np.testing.assert_allclose(YN32, YN64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)


def test_convergence_orders_in_h():
    """Against solve_ivp at T = 1: forward Euler order 1, RK4 order 4, and leapfrog and Verlet order 1.

    Leapfrog and Verlet are second order inside, but the paper's start values (Y_{-1} = Y_0 and
    Z_{-1/2} = 0) are O(h^2) off in the first step, an O(h) error in the velocity.
    """
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(0)
    n, b, T = 2, 0.2, 1.0
    K, Y0 = rng.standard_normal((n, n)), rng.standard_normal((1, n))
    second_order = lambda t, u: np.concatenate([u[n:], np.tanh(u[:n] @ K + b)])  # noqa: E731
    hamiltonian = lambda t, u: np.concatenate([np.tanh(u[n:] @ K.T + b), -np.tanh(u[:n] @ K + b)])  # noqa: E731
    first_order = lambda t, u: np.tanh(u @ K + b)  # noqa: E731
    at_rest = np.concatenate([Y0[0], np.zeros(n)])
    odes = {"resnet": (first_order, Y0[0], 1), "rk4": (first_order, Y0[0], 4),
            "leapfrog": (second_order, at_rest, 1), "verlet": (hamiltonian, at_rest, 1)}
    for kind, (f, u0, order) in odes.items():
        exact = solve_ivp(f, (0, T), u0, rtol=1e-13, atol=1e-13).y[:n, -1]
        errors = []
        for N in (16, 32, 64):
            net = ocdl.network(kind, n, N, T)
            errors.append(np.abs(net.forward(net.pack([K] * N, [b] * N), Y0)[0] - exact).max())
        rates = np.log2(np.array(errors[:-1]) / errors[1:])
        np.testing.assert_allclose(rates, order, atol=0.1, err_msg=kind)


@pytest.mark.parametrize("kind", [ocdl.ResNet, ocdl.Leapfrog, ocdl.RK4])
def test_steppers_whose_state_passes_through_k_need_a_square_transform(kind):
    """They accepted Dense(3, 2) and failed at the first forward pass with NumPy's broadcasting error."""
    with pytest.raises(ValueError, match=rf"{kind.__name__} needs a square transform \(n_in = n_out: its state "
                                         r"passes through K\), got Dense\(n_in=3, n_out=2\) of 3 x 2"):
        kind(ocdl.Layer(ocdl.Dense(3, 2)))
    assert ocdl.Verlet(ocdl.Layer(ocdl.Dense(3, 2))).n_features == 3  # Verlet's state has a part of each width


def test_verlet_step_preserves_volume_and_is_symplectic_only_for_a_hamiltonian_force():
    """The step's Jacobian M on one example's (Y, Z), from step_jvp: det M = 1 always (two shears);
    M^T J M = J for the identity activation with a symmetric K (forces from H = (Y K Y^T + Z K Z^T) / 2 + b sum(Y + Z)),
    not for a general K or tanh (what the docstring says)."""
    rng = np.random.default_rng(0)
    J = np.block([[np.zeros((2, 2)), np.eye(2)], [-np.eye(2), np.zeros((2, 2))]])
    A = rng.standard_normal((2, 2))
    for activation, K, hamiltonian in [("identity", A + A.T, True), ("identity", A, False), ("tanh", A, False)]:
        stepper = ocdl.Verlet(ocdl.Layer(ocdl.Dense(2), activation))
        theta, state = np.append(K.ravel(), 0.2), (rng.standard_normal((1, 2)), rng.standard_normal((1, 2)))
        cache = stepper.step(state, theta, 0.3)[1]
        M = np.column_stack([np.concatenate(stepper.step_jvp(state, theta, 0.3, (e[None, :2], e[None, 2:]),
                                                             np.zeros_like(theta), cache), axis=1)[0]
                             for e in np.eye(4)])
        assert np.linalg.det(M) == pytest.approx(1.0, abs=1e-13)
        assert (np.abs(M.T @ J @ M - J).max() < 1e-14) == hamiltonian, (activation, hamiltonian)
