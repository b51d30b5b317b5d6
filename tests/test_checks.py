"""The public derivative checks: they pass on correct pieces and fail on planted bugs, in float64 and float32."""

import numpy as np
import pytest

import ocdl
from ocdl.checks import dot_test, taylor_test

# -- taylor_test and dot_test ------------------------------------------------------------------------


def test_taylor_test_fails_on_nan_and_inf():
    x, v = np.array([0.3, -0.2]), np.array([1.0, 2.0])
    assert taylor_test(np.sin, x, v, np.cos(x) * v).passed
    for bad in (np.nan, np.inf):
        result = taylor_test(np.sin, x, v, np.full(2, bad))
        assert not result.passed and not result.finite
        assert "NaN or Inf" in str(result)
    with np.errstate(all="ignore"):
        result = taylor_test(lambda y: np.sin(y) / (y - y), x, v, np.cos(x) * v)  # f itself is NaN
    assert not result.passed


def test_taylor_test_of_a_scalar_function():
    """An objective's value is a Python float: E1 of 0.5 |x|^2 is 0.5 eps^2 |v|^2 exactly."""
    x, v = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -1.0])
    result = taylor_test(lambda y: 0.5 * float(y @ y), x, v, float(x @ v))
    assert result.passed
    np.testing.assert_allclose(result.e1, 0.5 * result.eps**2 * (v @ v), rtol=1e-6)
    wrong = taylor_test(lambda y: 0.5 * float(y @ y), x, v, 1.1 * float(x @ v))
    assert not wrong.passed and wrong.rate1 == pytest.approx(1.0, abs=0.05)


def test_taylor_test_resolution_says_which_errors_it_sees():
    """An error of Jv well above the reported resolution fails, one well below passes; a failed test's
    resolution estimates the error; float32's resolution is above 1%, the error it lets through."""
    rng = np.random.default_rng(1)
    x, v = rng.standard_normal(50), rng.standard_normal(50)
    exact = np.cos(x) * v
    resolution = taylor_test(np.sin, x, v, exact).resolution
    assert 0 < resolution < 1e-2
    for delta in (resolution / 20, 20 * resolution):
        wrong = exact + delta * np.linalg.norm(exact) * rng.standard_normal(50) / np.sqrt(50)
        result = taylor_test(np.sin, x, v, wrong)
        assert result.passed == (delta < resolution), (delta, resolution, result)
    delta = 0.05
    result = taylor_test(np.sin, x, v, (1 + delta) * exact)
    assert not result.passed and result.resolution == pytest.approx(delta / (1 + delta), rel=0.2)
    assert "off by about" in str(result)
    x32, v32 = x.astype(np.float32), v.astype(np.float32)
    net = ocdl.network("resnet", width=4, n_steps=8, final_time=2.0)
    theta = net.init_params(rng=0).astype(np.float32)
    Y0 = rng.standard_normal((20, 4)).astype(np.float32)
    dtheta = rng.standard_normal(net.n_params).astype(np.float32)
    Jv = net.jvp(theta, Y0, dtheta)
    result = taylor_test(lambda t: net.forward(t, Y0), theta, dtheta, 1.01 * Jv)
    assert result.passed and result.resolution > 0.01 and "would not show" in str(result)  # the float32 hole
    assert np.isnan(taylor_test(lambda y: y * 0.0, x32, v32, 0.0 * v32).resolution)  # J v = 0: no relative error


def test_taylor_test_keeps_float32_arguments():
    seen = []

    def f(y):
        seen.append(y.dtype)
        return np.sin(y)

    x = np.linspace(-1, 1, 5, dtype=np.float32)
    taylor_test(f, x, np.ones_like(x), np.cos(x))
    assert set(seen) == {np.dtype(np.float32)}


def test_dot_test_tolerance_follows_the_precision():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 20))
    v, w = rng.standard_normal(20), rng.standard_normal(30)
    assert dot_test(lambda u: A @ u, lambda u: A.T @ u, v, w).tol == 1e-10
    A32, v32, w32 = A.astype(np.float32), v.astype(np.float32), w.astype(np.float32)
    result = dot_test(lambda u: A32 @ u, lambda u: A32.T @ u, v32, w32)
    assert result.passed and 1e-5 < result.tol < 1e-3  # float32 round-off (~1e-7) passes ...
    assert not dot_test(lambda u: A32 @ u, lambda u: 1.01 * (A32.T @ u), v32, w32).passed  # ... 1% does not


# -- check_stepper -------------------------------------------------------------------------------------


class ForgetfulReverse(ocdl.Leapfrog):
    """Leapfrog whose reverse step drops the force: Y_{j-1} = 2 Y_j - Y_{j+1}."""

    def reverse_step(self, state_next, theta, h):
        Y_next, Y = state_next
        _, D = self.layer.step(theta, Y, None, h * h)
        return (Y, 2 * Y - Y_next), D


def test_check_stepper_checks_reverse_step():
    Y0 = np.random.default_rng(1).standard_normal((4, 3))
    good = ocdl.check_stepper(ocdl.Leapfrog(ocdl.Layer(ocdl.Dense(3))), Y0)
    assert good.passed, str(good)
    assert {"reverse_step: state", "reverse_step: cache", "network: Reversible = stored"} <= set(good.results)
    bad = ocdl.check_stepper(ForgetfulReverse(ocdl.Layer(ocdl.Dense(3))), Y0)
    assert not bad.results["reverse_step: state"].passed
    assert not bad.results["network: Reversible = stored"].passed
    assert bad.results["step: jvp/vjp adjoint in state"].passed  # the derivatives themselves are right
    assert bad.results["step: jvp/vjp adjoint in theta"].passed


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_check_stepper_in_float32(kind):
    net = ocdl.network(kind, 3, 1, 1.0)
    Y0 = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    report = ocdl.check_stepper(net.stepper, Y0)
    assert report.passed, str(report)
    assert {"float32: step", "float32: step_jvp", "float32: step_vjp"} <= set(report.results)
    assert "ran in float64" in str(report)


class Float64Step(ocdl.ResNet):
    """Computes its step in float64 whatever the input's dtype."""

    def step(self, state, theta, h):
        (Y,) = state
        Y64 = Y.astype(np.float64)
        Y_next, D = self.layer.step(theta.astype(np.float64), Y64, Y64, h)
        return (Y_next,), D


def test_check_stepper_float32_rows_catch_a_dtype_change():
    Y0 = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    report = ocdl.check_stepper(Float64Step(ocdl.Layer(ocdl.Dense(3))), Y0)
    row = report.results["float32: step"]
    assert not row.passed and row.rel_error < 1e-5  # right values, wrong dtype
    assert "returned float64, not float32" in str(report)


def test_check_stepper_notes_the_relu_kink():
    Y0 = np.random.default_rng(4).standard_normal((4, 3))
    report = ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(ocdl.Dense(3), "relu")), Y0, eps0=1e-4)
    assert "kink" in str(report)
    assert "kink" not in str(ocdl.check_stepper(ocdl.ResNet(ocdl.Layer(ocdl.Dense(3))), Y0))


def test_check_stepper_without_init_params_asks_for_theta():
    class Bare(ocdl.Stepper):
        n_params = 1

        def step(self, state, theta, h):
            return (state[0] * (1 + h * theta[0]),), None

    with pytest.raises(TypeError, match="theta="):
        ocdl.check_stepper(Bare(), np.ones((2, 2)))


@pytest.mark.parametrize(
    ("Y0", "theta", "error", "match"),
    [
        (np.ones((3, 3)), None, ValueError, r"Y0 must have the stepper's n_features = 2 columns \(s x 2, .*\(3, 3\)"),
        (np.ones(2), None, ValueError, r"Y0 must be 2-D, got shape \(2,\)"),
        ([[1.0, 2.0]], None, TypeError, "Y0 must be a NumPy or CuPy array"),
        (np.ones((3, 2)), np.ones((1, 5)), ValueError,
         r"theta must be one step's parameters, a 1-D array of stepper.n_params = 5 entries, got shape \(1, 5\)"),
        (np.ones((3, 2)), np.ones(4), ValueError, r"stepper.n_params = 5 entries, got shape \(4,\)"),
        (np.ones((3, 2)), 3.0, TypeError, "theta must be a NumPy or CuPy array"),
    ],
)
def test_check_stepper_names_a_malformed_argument_and_its_expected_form(Y0, theta, error, match):
    stepper = ocdl.ResNet(ocdl.Layer(ocdl.Dense(2)))  # n = 2 features, n_params = 2 * 2 + 1
    with pytest.raises(error, match=match):
        ocdl.check_stepper(stepper, Y0, theta=theta)


def test_check_stepper_reports_a_linear_step_as_exact():
    class Drift(ocdl.Stepper):
        """y_{j+1} = y_j + h theta: linear in y and theta, its linearisation exact."""

        n_params = 1

        def step(self, state, theta, h):
            return (state[0] + h * theta[0],), None

        def step_jvp(self, state, theta, h, dstate, dtheta, cache):
            return (dstate[0] + h * dtheta[0],)

        def step_vjp(self, state, theta, h, lam, cache):
            return (lam[0],), np.array([h * lam[0].sum()])

    report = ocdl.check_stepper(Drift(), np.ones((3, 1)), theta=np.array([0.5]))
    assert report.passed
    assert "step: theta                  Taylor exact: linear  ok" in str(report), str(report)
    assert "inf" not in str(report)
    assert "E1 at round-off (exact: linear)" in str(report.results["step: state"])


def test_check_array_states_the_dimension_once():
    from ocdl.validation import check_array

    with pytest.raises(ValueError, match=r"^theta must be 1-D, got shape \(2, 3\)$"):
        check_array("theta", np.ones((2, 3)), ndim=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_array_finds_every_non_finite_entry(dtype):
    """NaN, +Inf and -Inf, alone or together, anywhere; extremes of the dtype and empty arrays pass."""
    from ocdl.validation import check_array

    rng = np.random.default_rng(3)
    big = np.finfo(dtype).max
    for shape in [(7,), (5, 9), (3, 4, 6)]:
        x = rng.standard_normal(shape).astype(dtype)
        x.flat[0], x.flat[-1] = big, -big  # finite: max - min would overflow, min and max do not
        assert check_array("x", x) is x
        for bad in [(np.nan,), (np.inf,), (-np.inf,), (np.nan, -np.inf), (np.inf, -np.inf), (np.nan, np.inf)]:
            y = x.copy()
            for value in bad:
                y.flat[rng.integers(y.size)] = value
            with pytest.raises(ValueError, match="^x contains NaN or Inf entries$"):
                check_array("x", y)
            assert check_array("x", y, finite=False) is y
    assert check_array("x", np.empty((0, 3), dtype)).shape == (0, 3)


def test_check_array_makes_no_copy_to_test_finiteness():
    """The features of full-size MNIST are 0.9 GB (float32): a boolean array of their size besides is 235 MB.
    NumPy reports its arrays to tracemalloc. Its reductions may take a buffer of a fixed size (NumPy 2.2's
    float32 ``min``: 8,192 entries, 32 kB), so ``x`` is large enough that a copy of its size stands out."""
    import tracemalloc

    from ocdl.validation import check_array

    x = np.random.default_rng(0).standard_normal((4000, 400)).astype(np.float32)
    tracemalloc.start()
    try:
        check_array("x", x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.size // 16, peak  # a boolean array of x's shape would be x.size bytes


# -- transforms, activations, objectives, regularizers ------------------------------------------------


class WrongVjp(ocdl.Dense):
    def vjp(self, theta, Y, lam):
        return -super().vjp(theta, Y, lam)


class WrongTranspose(ocdl.Dense):
    def apply_transpose(self, theta, Z):
        return 1.001 * super().apply_transpose(theta, Z)


def test_check_transform_catches_planted_bugs():
    assert ocdl.check_transform(ocdl.Dense(3, 2)).passed
    bad = ocdl.check_transform(WrongVjp(3, 2))
    assert not bad.results["jvp/vjp"].passed and bad.results["apply: theta"].passed
    bad = ocdl.check_transform(WrongTranspose(3, 2))
    assert not bad.results["apply/apply_transpose"].passed


class FlatStacks(ocdl.NegativeDefinite):
    """Says its explicit forms take stacks but transposes with ``.T`` (which reverses every axis of a stack)."""

    def explicit(self, theta):
        C = self.base.explicit(theta)
        return -(C.T @ C) if C.ndim == 2 else -(C.T.swapaxes(0, 1) @ C)


def test_check_transform_checks_stacks_of_explicit_forms():
    """Where a transform says its explicit forms take stacks (what the GPU's whole sweeps use), each form of a
    stack must be its row's; one wrong only on stacks fails that row alone (its matrices are right)."""
    report = ocdl.check_transform(ocdl.NegativeDefinite(ocdl.Dense(3, 4)))
    assert report.results["explicit: stacks = rows"].passed
    bad = ocdl.check_transform(FlatStacks(ocdl.Dense(3, 4)))
    assert [name for name, r in bad.results.items() if not r.passed] == ["explicit: stacks = rows"], str(bad)
    assert "explicit: stacks = rows" not in ocdl.check_transform(ocdl.Conv2d(2, 2, 3, 3)).results


class NotAlone(ocdl.Dense):
    """Mixes the examples: each row gets the mean of all rows added."""

    def apply(self, theta, Y):
        Z = super().apply(theta, Y)
        return Z + Z.mean(axis=0)


def test_check_transform_catches_rows_that_do_not_transform_alone():
    assert not ocdl.check_transform(NotAlone(3)).results["rows transformed alone"].passed


class WrongLayerGradient(ocdl.Layer):
    """The bias gradient of the transposed step 1% off."""

    def step_vjp(self, theta, V, D, lam, lam_V, transpose=False):
        lam_V, gtheta = super().step_vjp(theta, V, D, lam, lam_V, transpose)
        gtheta[-1] *= 1.01
        return lam_V, gtheta


class WrongLayerTangent(ocdl.Layer):
    """The tangent forgets the bias direction."""

    def step_jvp(self, theta, V, D, dV, dtheta, dX, transpose=False):
        dtheta = dtheta.copy()
        dtheta[-1] = 0
        return super().step_jvp(theta, V, D, dV, dtheta, dX, transpose)


class MixingLayer(ocdl.Layer):
    """Adds the mean over the examples: the rows do not step alone."""

    def step(self, theta, V, X, c, transpose=False, derivative=True):
        out, D = super().step(theta, V, X, c, transpose, derivative)
        return out + out.mean(axis=0), D


def test_check_layer_catches_planted_bugs():
    good = ocdl.check_layer(ocdl.Layer(ocdl.Dense(3, 2)))
    assert good.passed, str(good)
    bad = ocdl.check_layer(WrongLayerGradient(ocdl.Dense(3, 2)))
    assert not bad.results["step_jvp/step_vjp"].passed and not bad.results["transpose step_jvp/step_vjp"].passed
    assert bad.results["step"].passed
    bad = ocdl.check_layer(WrongLayerTangent(ocdl.Dense(3, 2)))
    assert not bad.results["step"].passed and bad.results["step"].rate1 < 1.5
    assert not ocdl.check_layer(MixingLayer(ocdl.Dense(3, 2))).results["rows step alone"].passed


class WrongSlope(ocdl.Tanh):
    def value_and_derivative(self, x):
        t, d = super().value_and_derivative(x)
        return t, 1.05 * d


def test_check_activation():
    for name in sorted(ocdl.activations.ACTIVATIONS):
        x = np.random.default_rng(5).standard_normal(64)
        x[np.abs(x) < 0.1] += 0.3  # away from relu's kink
        assert ocdl.check_activation(ocdl.get_activation(name), x).passed, name
    bad = ocdl.check_activation(WrongSlope())
    assert not bad.results["derivative"].passed
    assert not bad.results["fused step"].passed  # Tanh's fused kernel is right, the override is not
    report = ocdl.check_activation(ocdl.SmoothReLU(), np.linspace(-2, 2, 9, dtype=np.float32))
    assert report.passed and "float32: value_and_derivative" in report.results


class HalfHessian(ocdl.SoftmaxCrossEntropy):
    def hessian_z(self, Z, C, dZ):
        return 0.5 * super().hessian_z(Z, C, dZ)


class Asymmetric(ocdl.LeastSquares):
    def hessian_z(self, Z, C, dZ):
        return dZ + 0.1 * np.roll(dZ, 1, axis=1)  # a cyclic shift is not symmetric


class StaleLogits(ocdl.SoftmaxCrossEntropy):
    def value_and_gradient_W(self, YN, W, mu, C):
        value, gradient, Z = super().value_and_gradient_W(YN, W, mu, C)
        return value, gradient, Z - mu  # the logits without the bias: Hessian products at another point


def _classifier_data(m, dtype=np.float64):
    rng = np.random.default_rng(6)
    return (rng.standard_normal((9, 4)).astype(dtype), rng.standard_normal((4, m)).astype(dtype),
            rng.standard_normal(m).astype(dtype), rng.integers(0, 3, 9))


@pytest.mark.parametrize("objective", [ocdl.SoftmaxCrossEntropy(), ocdl.LeastSquares()], ids=repr)
def test_check_objective_passes(objective):
    assert ocdl.check_objective(objective, *_classifier_data(3)).passed
    report = ocdl.check_objective(objective, *_classifier_data(3, np.float32))
    assert report.passed and {"float32: gradient", "float32: hessian_Y", "float32: hessian_W"} <= set(report.results)
    # the title names the objective, not "<ocdl.objectives....SoftmaxCrossEntropy object at 0x7f...>"
    assert str(report).startswith(f"check_objective({type(objective).__name__}()): passed"), str(report)


def test_check_objective_catches_planted_bugs():
    bad = ocdl.check_objective(HalfHessian(), *_classifier_data(3))
    assert not bad.results["hessian_Y"].passed and not bad.results["hessian_W"].passed
    assert bad.results["gradient: YN"].passed
    bad = ocdl.check_objective(Asymmetric(), *_classifier_data(3))
    assert not bad.results["hessian_Y symmetric"].passed
    bad = ocdl.check_objective(StaleLogits(), *_classifier_data(3))
    assert not bad.results["value_and_gradient_W"].passed
    assert bad.results["hessian_W"].passed and bad.results["value_and_gradient"].passed


class HessianInFloat64(ocdl.SoftmaxCrossEntropy):
    """Float32 data, float64 Hessian products: the float64 derivative tests cannot see it."""

    def hessian_Y(self, YN, W, mu, C, dY):
        return super().hessian_Y(*(a.astype(np.float64) for a in (YN, W, mu, C, dY)))

    def hessian_W(self, YN, W, mu, C, dW, dmu, logits=None):
        return super().hessian_W(*(a.astype(np.float64) for a in (YN, W, mu, C, dW, dmu)))


class HessianRoundedToHalf(ocdl.WeightDecay):
    def hessian_matvec(self, v):
        product = super().hessian_matvec(v)
        return product.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else product


def test_float32_rows_cover_the_hessian_products():
    report = ocdl.check_objective(HessianInFloat64(), *_classifier_data(3, np.float32))
    failed = {name for name, result in report.results.items() if not result.passed}
    assert failed == {"float32: hessian_Y", "float32: hessian_W"}, str(report)
    x = np.random.default_rng(7).standard_normal(12).astype(np.float32)
    report = ocdl.check_regularizer(HessianRoundedToHalf(), x)
    assert [name for name, result in report.results.items() if not result.passed] == ["float32: hessian_matvec"]


class LooseShift(ocdl.WeightDecay):
    def precondition(self, r, shift):
        return r / (1.0 + 2 * shift)  # the shift counted twice


class NonSymmetric(ocdl.TimeSmoothness):
    def hessian_matvec(self, v):
        return super().hessian_matvec(v) + 0.1 * np.roll(v, 1)


def test_check_regularizer():
    x = np.random.default_rng(7).standard_normal(12)
    assert ocdl.check_regularizer(ocdl.TimeSmoothness(4, 3, 0.5), x).passed
    assert ocdl.check_regularizer(ocdl.SpatialSmoothness((3, 4)), x.astype(np.float32)).passed
    bad = ocdl.check_regularizer(LooseShift(), x)
    assert bad.results["gradient"].passed
    assert not any(r.passed for name, r in bad.results.items() if name.startswith("precondition"))
    bad = ocdl.check_regularizer(NonSymmetric(4, 3, 0.5), x)
    assert not bad.results["hessian symmetric"].passed


def test_a_missing_method_is_named():
    class Half(ocdl.Stepper):
        n_params = 1

        def step(self, state, theta, h):
            return (state[0] * (1 + h * theta[0]),), None

    with pytest.raises(NotImplementedError, match=r"Half must implement step_jvp\(state, theta, h"):
        ocdl.check_stepper(Half(), np.ones((2, 2)), theta=np.ones(1))

    class Reversible(Half):
        reversible = True

    with pytest.raises(NotImplementedError, match=r"Reversible must implement reverse_step"):
        Reversible().reverse_step((np.ones((2, 2)),), np.ones(1), 0.1)

    class NoProduct(ocdl.Transform):
        n_in = n_out = n_params = 2

    with pytest.raises(NotImplementedError, match=r"NoProduct must implement apply\(theta, Y\)"):
        NoProduct().apply(np.ones(2), np.ones((1, 2)))


def test_check_objective_takes_labels_missing_a_class():
    """Labels are encoded with the classes W's columns encode, also when a sample lacks one."""
    YN, W, mu, _ = _classifier_data(3)
    assert ocdl.check_objective(ocdl.SoftmaxCrossEntropy(), YN, W, mu, np.array([0, 2] * 4 + [0])).passed
    assert ocdl.check_objective(ocdl.LogisticCrossEntropy(), YN, W[:, :1], mu[:1], np.arange(9) % 2).passed


def test_check_stepper_names_an_output_without_its_transpose():
    class Doubled(ocdl.ResNet):
        def output(self, state):
            return 2 * state[0]  # output_vjp left as the default: W, not 2 W

    report = ocdl.check_stepper(Doubled(ocdl.Layer(ocdl.Dense(3))), np.random.default_rng(8).standard_normal((4, 3)))
    assert not report.results["output/output_vjp"].passed
    assert report.results["init/init_vjp"].passed and report.results["step: jvp/vjp adjoint in state"].passed


# -- a check of nothing must not pass -------------------------------------------------------------


def test_taylor_and_dot_tests_refuse_what_would_pass_without_testing():
    """With one step length (no rate), a zero step, float16 (whose round-off floor lies above every residual)
    or no entries, a derivative five times too large passed (rate1 = inf)."""
    x = np.linspace(0.1, 1.0, 5)
    v, wrong = np.ones(5), 5 * np.cos(x)
    assert not taylor_test(np.sin, x, v, wrong).passed  # the test itself sees it
    for options, error, match in (({"n_eps": 1}, ValueError, "n_eps must be an integer >= 2, got 1"),
                                  ({"n_eps": 2.5}, TypeError, "n_eps must be an integer >= 2, got 2.5"),
                                  ({"eps0": 0.0}, ValueError, "eps0 must be a finite number > 0, got 0.0"),
                                  ({"factor": 1.0}, ValueError, "factor must be a finite number > 1, got 1.0"),
                                  ({"factor": 0}, ValueError, "factor must be a finite number > 1, got 0")):
        with pytest.raises(error, match=match):
            taylor_test(np.sin, x, v, wrong, **options)
    with pytest.raises(TypeError, match="x must be float32 or float64 .*, got float16"):
        taylor_test(np.sin, x.astype(np.float16), v.astype(np.float16), wrong.astype(np.float16))
    with pytest.raises(ValueError, match="x has no entries: a derivative test of nothing would pass"):
        taylor_test(np.sin, x[:0], v[:0], wrong[:0])
    with pytest.raises(ValueError, match="w has no entries"):
        dot_test(lambda u: u, lambda u: 2 * u, x, x[:0])


class _BrokenResNet(ocdl.ResNet):
    """Derivatives wrong by factors 3 (jvp) and 2 (vjp): check_stepper fails on any sample with entries."""

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        return tuple(3 * d for d in super().step_jvp(state, theta, h, dstate, dtheta, cache))

    def step_vjp(self, state, theta, h, lam, cache):
        ls, lt = super().step_vjp(state, theta, h, lam, cache)
        return tuple(2 * x for x in ls), 2 * lt


def test_checks_refuse_samples_without_entries(rng):
    """check_stepper of a broken stepper on Y0 with no rows, and the other checks on empty samples (or
    n_examples = 0, c = 0) printed 'passed' on every row."""
    broken = _BrokenResNet(ocdl.Layer(ocdl.Dense(3)))
    assert not ocdl.check_stepper(broken, rng.standard_normal((4, 3))).passed
    with pytest.raises(ValueError, match="Y0 has no entries"):
        ocdl.check_stepper(broken, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="Y has no entries"):
        ocdl.check_transform(ocdl.Dense(3, 2), np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"Y must have shape \* x 3, got \(4, 2\)"):
        ocdl.check_transform(ocdl.Dense(3, 2), np.ones((4, 2)))
    with pytest.raises(ValueError, match="n_examples must be an integer >= 1, got 0"):
        ocdl.check_transform(ocdl.Dense(3, 2), n_examples=0)
    with pytest.raises(ValueError, match="c must be a finite number other than 0, got 0"):
        ocdl.check_layer(ocdl.Layer(ocdl.Dense(3)), c=0)
    with pytest.raises(ValueError, match="V has no entries"):
        ocdl.check_layer(ocdl.Layer(ocdl.Dense(3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="x has no entries"):
        ocdl.check_activation(ocdl.Tanh(), np.zeros(0))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        ocdl.check_activation(ocdl.Tanh(), np.arange(3))
    with pytest.raises(ValueError, match="x has no entries"):
        ocdl.check_regularizer(ocdl.WeightDecay(), np.zeros(0))


class _BareStep(ocdl.ResNet):  # returns Y_next, not (Y_next,)
    def step(self, state, theta, h):
        (Y,) = state
        return self.layer.step(theta, Y, Y, h)


class _BareTangent(ocdl.ResNet):
    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        return super().step_jvp(state, theta, h, dstate, dtheta, cache)[0]


class _ShortGradient(ocdl.ResNet):
    def step_vjp(self, state, theta, h, lam, cache):
        lam_prev, gtheta = super().step_vjp(state, theta, h, lam, cache)
        return lam_prev, gtheta[:-1]


class _BareInit(ocdl.ResNet):
    def init(self, Y0):
        return Y0


class _NoCache(ocdl.ResNet):
    def step(self, state, theta, h):
        return super().step(state, theta, h)[0]


@pytest.mark.parametrize(("cls", "match"), [
    (_BareStep, r"_BareStep.step must return \(state, cache\), the state a tuple of 1 array\(s\) of shapes "
                r"\(4, 3\) such as \(Y_next,\); got a tuple \(an array of shape \(4, 3\), an array of shape"),
    (_NoCache, r"_NoCache.step must return \(state, cache\).*; got a tuple \(an array of shape \(4, 3\),\)"),
    (_BareTangent, r"_BareTangent.step_jvp must return the tangent state, a tuple of 1 array\(s\) of shapes "
                   r"\(4, 3\); got an array of shape \(4, 3\)"),
    (_ShortGradient, r"_ShortGradient.step_vjp must return \(lam_prev, gtheta\), .* gtheta an array of shape "
                     r"\(10,\); got a tuple \(a tuple \(an array of shape \(4, 3\),\), an array of shape \(9,\)\)"),
    (_BareInit, r"_BareInit.init\(Y0\) must return the state, a tuple of arrays with one row per example"),
])
def test_check_stepper_names_a_method_that_returns_the_wrong_form(cls, match):
    """A step returning Y_next for (Y_next,) failed with "too many values to unpack" in the user's own code,
    a bare tangent with "zip() argument 2 is shorter than argument 1"; a short gradient broke the dot test."""
    with pytest.raises(TypeError, match=match):
        ocdl.check_stepper(cls(ocdl.Layer(ocdl.Dense(3))), np.random.default_rng(0).standard_normal((4, 3)))


def test_check_stepper_says_which_part_of_step_vjp_is_wrong():
    """One dot test of state and parameters jointly failed without saying which transpose was wrong."""
    class HalfStateAdjoint(ocdl.ResNet):
        def step_vjp(self, state, theta, h, lam, cache):
            (lam_Y,), gtheta = super().step_vjp(state, theta, h, lam, cache)
            return (0.5 * lam_Y,), gtheta

    report = ocdl.check_stepper(HalfStateAdjoint(ocdl.Layer(ocdl.Dense(3))),
                                np.random.default_rng(9).standard_normal((4, 3)))
    assert not report.results["step: jvp/vjp adjoint in state"].passed
    assert report.results["step: jvp/vjp adjoint in theta"].passed and report.results["step: state"].passed


def test_check_stepper_passes_a_stepper_that_updates_its_cotangent_in_place():
    """The probes of the methods' forms passed check_stepper's own state as the direction and the cotangent:
    a step_vjp updating its cotangent in place (as the sweeps allow) changed the state the later tests start
    from, and advance = step, rows step alone and the Taylor test in the state failed."""
    class InPlace(ocdl.ResNet):
        def step_vjp(self, state, theta, h, lam, cache):
            (L,) = lam
            lam_prev, gtheta = super().step_vjp(state, theta, h, lam, cache)
            L *= 0.0  # the cotangent of x_{j+1} is not used again
            return lam_prev, gtheta

    report = ocdl.check_stepper(InPlace(ocdl.Layer(ocdl.Dense(3))), np.random.default_rng(2).standard_normal((4, 3)))
    assert report.passed, str(report)
