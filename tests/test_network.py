"""Generic propagation: user-defined dynamics, the Jacobian operator, bad input, the checks themselves."""

import numpy as np
import pytest

import ocdl
from ocdl.checks import dot_test_operator, taylor_test


class Cubic(ocdl.LayerStepper):
    """A user's new dynamics, Y_{j+1} = Y_j + h * sigma(Y_j K_j + b_j)**3, with nothing but one-step methods."""

    def step(self, state, theta, h):
        (Y,) = state
        A, dA = self.layer.step(theta, Y, None, 1.0)  # sigma and sigma' (X = 0, c = 1)
        return (Y + h * A**3,), (A, dA)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y,), (dY,), (A, dA) = state, dstate, cache
        return (dY + h * 3 * A**2 * self.layer.step_jvp(theta, Y, dA, dY, dtheta, None),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,), (A, dA) = state, lam, cache
        gY, gtheta = self.layer.step_vjp(theta, Y, dA, 3 * A**2 * L, None)
        return (L + h * gY,), h * gtheta


def test_user_subclass_gets_correct_gradients(rng):
    stepper = Cubic(ocdl.Layer(ocdl.Dense(3), "tanh"))
    assert ocdl.check_stepper(stepper, rng.standard_normal((4, 3))).passed
    net = ocdl.Network(stepper, n_steps=6, final_time=1.5)
    theta = net.init_params(rng, scale=2.0)
    Y0 = rng.standard_normal((5, 3))

    def loss(t):
        return 0.5 * np.sum(net.forward(t, Y0) ** 2)

    grad = net.vjp(theta, Y0, net.forward(theta, Y0))
    fd = np.empty_like(theta)  # independent: central finite differences
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        fd[i] = (loss(theta + e) - loss(theta - e)) / 2e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_checks_detect_a_wrong_derivative(rng):
    class Wrong(ocdl.ResNet):
        def step_vjp(self, state, theta, h, lam, cache):
            lam_state, g = super().step_vjp(state, theta, h, lam, cache)
            return lam_state, 1.01 * g

        def step_jvp(self, state, theta, h, dstate, dtheta, cache):
            return (super().step_jvp(state, theta, h, dstate, 0.9 * dtheta, cache)[0],)

    report = ocdl.check_stepper(Wrong(ocdl.Layer(ocdl.Dense(3))), rng.standard_normal((4, 3)))
    assert not report.passed
    assert not report.results["step: theta"].passed
    assert report.results["step: state"].passed
    r = taylor_test(np.sin, np.ones(3), np.ones(3), 1.001 * np.cos(np.ones(3)))
    assert r.rate1 < 1.5 and not r.passed


def test_check_stepper_detects_an_advance_that_disagrees_with_step(rng):
    class Drifting(ocdl.ResNet):  # advance adds 1e-6: nothing the Taylor tests through forward would see
        def advance(self, state, theta, h):
            return (super().advance(state, theta, h)[0] + 1e-6,)

    Y0 = rng.standard_normal((4, 3))
    report = ocdl.check_stepper(Drifting(ocdl.Layer(ocdl.Dense(3))), Y0)
    assert not report.passed and not report.results["advance = step"].passed
    assert "advance = step" in str(report)
    assert report.results["network: theta"].passed  # the drift cancels in the network's Taylor test
    assert ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(ocdl.Dense(3))), Y0).results["advance = step"].rel_error < 1e-14


def test_a_subclass_that_changes_the_step_advances_and_reverses_by_its_own_step(rng):
    """A ResNet (Verlet) subclass that changed step, step_jvp and step_vjp kept the parent's advance: forward
    and predict computed the parent's dynamics (check_stepper: "advance = step" failed, with no hint); a
    Verlet one stayed reversible with the parent's reverse_step (Reversible memory: wrong gradients)."""
    from test_checkpoint import Damped

    Y0 = rng.standard_normal((4, 3))
    net = ocdl.Network(Damped(ocdl.Layer(ocdl.Dense(3)), gamma=0.5), 4, 2.0)
    theta = net.init_params(0)
    Y, h = Y0, net.h
    for theta_j in theta.reshape(4, -1):  # the damped step, independently: (1 - h gamma) Y + h tanh(Y K + b)
        K, b = theta_j[:9].reshape(3, 3), theta_j[9]
        Y = (1 - h * 0.5) * Y + h * np.tanh(Y @ K + b)
    np.testing.assert_allclose(net.forward(theta, Y0), Y, rtol=1e-14)
    with net.trajectory(theta, Y0) as traj:
        np.testing.assert_array_equal(traj.final_state[0], net.forward(theta, Y0))
    assert ocdl.check_stepper(net.stepper, Y0).passed

    class Rescaled(ocdl.Verlet):
        def step(self, state, theta, h):
            (Y, Z), cache = super().step(state, theta, h)
            return (0.5 * Y, Z), cache

    assert ocdl.Verlet.reversible and not Rescaled.reversible
    rescaled = ocdl.Network(Rescaled(ocdl.Layer(ocdl.Dense(3))), 4, 1.0, memory=ocdl.Reversible())
    with pytest.raises(ValueError, match=r"Reversible\(\) needs a time-reversible stepper .* but Rescaled\("):
        rescaled.trajectory(rescaled.init_params(0), Y0)


def test_check_stepper_detects_a_transform_that_mixes_examples(rng):
    class Centred(ocdl.Dense):  # Y K minus its mean over the examples: rows no longer step alone
        def apply(self, theta, Y):
            Z = super().apply(theta, Y)
            return Z - Z.mean(axis=0)

    Y0 = rng.standard_normal((6, 3))
    report = ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(Centred(3))), Y0)
    assert not report.results["rows step alone"].passed
    assert "rows step alone" in str(report)
    fine = ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(ocdl.Dense(3))), Y0).results["rows step alone"]
    assert fine.passed and fine.rel_error < 1e-14


@pytest.mark.parametrize("kind", ocdl.KINDS)
def test_network_forward_equals_trajectory_output(kind, rng):
    # forward advances without caches; trajectory steps with them: the same outputs
    net = ocdl.network(kind, 3, 5, 1.0)
    theta, Y0 = net.init_params(rng), rng.standard_normal((4, 3))
    with net.trajectory(theta, Y0) as traj:
        np.testing.assert_allclose(net.forward(theta, Y0), net.stepper.output(traj.final_state), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kind", ocdl.KINDS)
def test_jacobian_operator(kind, rng):
    net = ocdl.network(kind, 2, 4, 1.0)
    theta = net.init_params(rng)
    Y0 = rng.standard_normal((3, 2))
    J = net.jacobian(theta, Y0)
    assert J.shape == (6, net.n_params)
    assert dot_test_operator(J, rng).rel_error <= 1e-10
    Jdense = J.matmat(np.eye(net.n_params))
    fd = np.column_stack([
        (net.forward(theta + 1e-6 * e, Y0) - net.forward(theta - 1e-6 * e, Y0)).ravel() / 2e-6
        for e in np.eye(net.n_params)
    ])
    np.testing.assert_allclose(Jdense, fd, rtol=1e-6, atol=1e-8)


def test_kinds_registry_gives_the_paper_networks():
    """The one registry of names: its entries build the networks of ocdl.network and answer for them."""
    assert list(ocdl.KINDS) == ["resnet", "antisymmetric", "leapfrog", "verlet", "rk4"]
    classes = {"resnet": ocdl.ResNet, "antisymmetric": ocdl.ResNet, "leapfrog": ocdl.Leapfrog,
               "verlet": ocdl.Verlet, "rk4": ocdl.RK4}
    for name, kind in ocdl.KINDS.items():
        net = ocdl.network(name, 3, 2, 1.0, hidden_width=2 if kind.rectangular else None)
        assert kind.stepper is classes[name] and type(net.stepper) is classes[name]
        assert isinstance(net.stepper.layer.transform, ocdl.Antisymmetric) == kind.antisymmetric == (
            name == "antisymmetric")
        assert net.stepper.layer.transform.n_out == (2 if name == "verlet" else 3)
        assert kind.reversible == (name in ("leapfrog", "verlet")) == net.stepper.reversible
        assert f'``"{name}"``' in ocdl.network.__doc__ and kind.dynamics in ocdl.network.__doc__
    built = ocdl.KINDS["antisymmetric"].build(ocdl.Conv2d(2, 2, 3, 3), "relu", gamma=0.5)
    assert repr(built) == repr(ocdl.ResNet(ocdl.Layer(ocdl.Antisymmetric(ocdl.Conv2d(2, 2, 3, 3), 0.5), "relu")))
    with pytest.raises(TypeError):
        ocdl.KINDS["euler"] = ocdl.KINDS["resnet"]  # read-only
    with pytest.raises(ValueError, match="hidden_width is only used by kind='verlet', got kind='rk4'"):
        ocdl.network("rk4", 3, 4, 1.0, hidden_width=2)
    with pytest.raises(ValueError, match="gamma is only used by kind='antisymmetric', got kind='verlet'"):
        ocdl.network("verlet", 3, 4, 1.0, gamma=0.1)


def test_the_experiments_names_are_the_registrys():
    from ocdl.experiments import PAPER_STEPPERS, paper_settings

    assert set(PAPER_STEPPERS) <= set(ocdl.KINDS) and len(PAPER_STEPPERS) == 3
    with pytest.raises(ValueError, match="stepper must be one of resnet, antisymmetric, leapfrog, verlet, rk4"):
        paper_settings("ellipses", "euler")
    with pytest.raises(ValueError, match=r"reversible stepper \(leapfrog, verlet, or one of yours .*\), not 'rk4'"):
        paper_settings("ellipses", "rk4", memory="reversible")


def test_bad_input(rng):
    net = ocdl.network("resnet", 3, 4, 1.0)
    theta = net.init_params(rng)
    Y0 = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="kind must be one of"):
        ocdl.network("resnett", 3, 4, 1.0)
    with pytest.raises(ValueError, match="theta must have n_params = 4 steps x 10 = 40"):
        net.forward(theta[:-1], Y0)
    with pytest.raises(ValueError, match="Y0 must have shape"):
        net.forward(theta, rng.standard_normal((5, 4)))
    with pytest.raises(ValueError, match="Y0 must be 2-D"):
        net.forward(theta, rng.standard_normal(5))
    bad = Y0.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="Y0 contains NaN"):
        net.forward(theta, bad)
    with pytest.raises(TypeError, match="floating-point"):
        net.forward(theta, np.ones((5, 3), dtype=int))
    with pytest.raises(ValueError, match="lam must have shape"):
        net.vjp(theta, Y0, rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="dtheta must have n_params = 4 steps x 10 = 40"):
        net.jvp(theta, Y0, theta[:-1])
    nan_theta = theta.copy()
    nan_theta[7] = np.nan
    with pytest.raises(ValueError, match="dtheta contains NaN"):
        net.jvp(theta, Y0, nan_theta)
    for call in (lambda: net.jvp(nan_theta, Y0, theta), lambda: net.vjp(nan_theta, Y0, Y0)):
        with pytest.raises(ValueError, match="^theta contains NaN"):  # checked by the forward sweep
            call()
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
        ocdl.network("resnet", 3, 0, 1.0)
    with pytest.raises(ValueError, match="final_time must be a finite number > 0"):
        ocdl.network("resnet", 3, 4, -1.0)
    with pytest.raises(TypeError, match="same dtype"):
        net.forward(theta.astype(np.float32), Y0)
    with pytest.raises(ValueError, match="hidden_width is only used"):
        ocdl.network("resnet", 3, 4, 1.0, hidden_width=2)


def test_blow_up_names_the_step(rng):
    net = ocdl.network("leapfrog", 2, 40, 400.0, activation="identity")
    K = 50 * np.eye(2)
    theta = net.pack([K] * 40, [0.0] * 40)
    with pytest.raises(ocdl.PropagationError, match=r"step \d+ of 40 .*smaller step"):
        net.forward(theta, np.ones((3, 2)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_without_a_growth_limit_inf_still_blows_up():
    """blow_up=None is documented to check finiteness: Y_N = Inf was returned (Inf <= an infinite limit), only
    NaN was caught."""
    net = ocdl.Network(ocdl.ResNet(ocdl.Layer(ocdl.Dense(1), "identity")), 2, 2.0, blow_up=None)
    theta = net.pack([np.array([[1e300]])] * 2, [0.0] * 2)  # Y_1 = 1e300, Y_2 = Inf
    for sweep in (net.forward, net.trajectory):
        with pytest.raises(ocdl.PropagationError, match=r"step 1 of 2 \(ResNet, h = 1\) produced NaN or Inf\. "):
            sweep(theta, np.ones((2, 1)))
    finite = net.pack([np.array([[1e100]])] * 2, [0.0] * 2)  # 1e200 at the end: no limit, finite
    assert net.forward(finite, np.ones((2, 1)))[0, 0] > 1e199


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_blow_up_message_gives_the_euler_factor_for_resnet_only():
    """RK4 gets max Re lambda, leapfrog (y'' = F(y)) max Re sqrt(lambda), not forward Euler's factor; Verlet
    gets neither."""
    Y0 = np.ones((3, 2))
    cases = {"resnet": (True, "max Re lambda = 50"), "rk4": (False, "max Re lambda = 50"),
             "leapfrog": (False, "max Re sqrt(lambda) = 7.07"), "verlet": (False, None)}
    for kind, (euler, eigen) in cases.items():
        net = ocdl.network(kind, 2, 40, 400.0, activation="identity")
        theta = net.pack([50 * np.eye(2)] * 40, [0.0] * 40)
        with pytest.raises(ocdl.PropagationError) as info:
            net.forward(theta, Y0)
        message = str(info.value)
        assert ("max|1 + h lambda|" in message) == euler and ("stable stepper" in message) == euler, kind
        assert ("max Re" in message) == (eigen is not None) and (eigen is None or eigen in message), kind


def test_directions_must_have_the_data_dtype(rng):
    net = ocdl.network("resnet", 2, 3, 1.0)
    theta, Y0 = net.init_params(rng), rng.standard_normal((4, 2))
    with pytest.raises(TypeError, match=r"dY0 \(float32\) must have the dtype of Y0 \(float64\)"):
        net.jvp(theta, Y0, theta, dY0=Y0.astype(np.float32))
    with pytest.raises(TypeError, match=r"dtheta \(float32\) must have the dtype of theta \(float64\)"):
        net.jvp(theta, Y0, theta.astype(np.float32))
    with pytest.raises(TypeError, match=r"lam \(float32\) must have the dtype of Y_N \(float64\)"):
        net.vjp(theta, Y0, Y0.astype(np.float32))
    with pytest.raises(TypeError, match="theta must be a NumPy or CuPy array, got list"):
        net.jvp(list(theta), Y0, theta)


def test_memory_and_pack_arguments_are_checked(rng):
    with pytest.raises(TypeError, match="memory must be an ocdl memory policy"):
        ocdl.Network(ocdl.ResNet(ocdl.Layer(ocdl.Dense(2))), 3, 1.0, memory="storeall")
    net = ocdl.network("resnet", 2, 2, 1.0)
    with pytest.raises(ValueError, match=r"Ks\[0\] must have shape \(2, 2\) and bs\[0\] be a scalar"):
        net.pack([np.eye(2)] * 2, [np.zeros(2)] * 2)
    with pytest.raises(ValueError, match=r"Ks\[1\] must have shape \(2, 2\)"):
        net.pack([np.eye(2), np.ones(4)], [0.0, 0.0])


def test_hdf5_file_policy_serves_trajectories_held_at_once(rng, tmp_path):
    """A named HDF5 file keeps the first open trajectory; the others go to temporary files beside it."""
    path = tmp_path / "states.h5"
    net = ocdl.Network(ocdl.Leapfrog(ocdl.Layer(ocdl.Dense(3))), 4, 1.0, memory=ocdl.HDF5(path))
    theta, Y0, W = net.init_params(rng), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    stored = ocdl.Network(net.stepper, 4, 1.0).vjp(theta, Y0, W)
    J = net.jacobian(theta, Y0)  # holds states.h5 open
    np.testing.assert_array_equal(net.vjp(theta, Y0, W), stored)
    np.testing.assert_array_equal(J.rmatvec(W.ravel()), stored)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states.h5"]  # the temporary one is gone


def test_a_mixins_advance_and_reverse_step_are_kept():
    """Only an advance (reverse_step) written beside a step that the subclass replaces is dropped: a mixin's
    advance (or reversibility) without a step was replaced by the default, too."""
    calls = []

    class FastAdvance:
        def advance(self, state, theta, h):
            calls.append(1)
            return self.step(state, theta, h)[0]

    class Reversible:
        reversible = True

        def reverse_step(self, state_next, theta, h):
            return (state_next[0] / (1 + h * theta[0]),), None

    class Scaling(FastAdvance, Reversible, ocdl.Stepper):
        n_params, n_features = 1, 2

        def step(self, state, theta, h):
            return (state[0] * (1 + h * theta[0]),), None

    assert Scaling.advance is FastAdvance.advance and Scaling.reversible
    net = ocdl.Network(Scaling(), 3, 1.0)
    np.testing.assert_allclose(net.forward(np.full(3, 0.3), np.ones((2, 2))), (1 + 0.3 / 3) ** 3)
    assert calls


def test_a_plain_steppers_layer_attribute_is_in_its_repr():
    """Only a LayerStepper shows its layer apart; a plain Stepper's `layer` attribute was left out of its repr
    (two layers of other activations looked the same to checkpoints and to the ranks of a run)."""
    class Two(ocdl.Stepper):
        def __init__(self, activation):
            self.layer, self.n_params = ocdl.Layer(ocdl.Dense(3), activation), 1

    assert repr(Two("tanh")) != repr(Two("relu")) and "layer=Layer(Dense(n_in=3, n_out=3), ReLU())" in repr(Two("relu"))


def test_pack_refuses_matrices_of_different_dtypes():
    """A float32 and a float64 matrix were packed into a float64 theta in silence."""
    net = ocdl.network("resnet", 2, 2, 1.0)
    with pytest.raises(TypeError, match=r"Ks\[1\] \(float64\) must have the dtype of Ks\[0\] \(float32\)"):
        net.pack([np.eye(2, dtype=np.float32), np.eye(2)], [0.0, 0.0])
    assert net.pack([np.eye(2, dtype=np.float32)] * 2, [0.0, 0.0]).dtype == np.float32
