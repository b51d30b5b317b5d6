"""The learning problem (eq. 2.4): gradients, Gauss-Newton and Newton products, validation."""

from __future__ import annotations

import numpy as np
import pytest
from ocdl.solvers import BlockCoordinateDescent

import ocdl
from ocdl.backend import cupy_available
from ocdl.checks import dot_test, inner, taylor_test
from ocdl.learning_problem import LearningProblem
from ocdl.reduction import Reduction

OBJECTIVES = {"softmax": ocdl.SoftmaxCrossEntropy, "logistic": ocdl.LogisticCrossEntropy}


def make_problem(objective="softmax", kind="verlet", width=3, n_steps=4, s=24, n_classes=3, seed=0, **kw):
    rng = np.random.default_rng(seed)
    net = ocdl.network(kind, width, n_steps, 2.0)
    Y0 = rng.standard_normal((s, width))
    C = rng.integers(0, n_classes, s)
    C[:n_classes] = np.arange(n_classes)  # every class present
    lp = LearningProblem(net, OBJECTIVES[objective](), Y0, C, alpha_theta=0.1, alpha_W=0.05, **kw)
    theta = net.init_params(rng, scale=1.0) + 0.1 * rng.standard_normal(net.n_params)
    W = rng.standard_normal((width, lp.n_outputs))
    mu = rng.standard_normal(lp.n_outputs)
    return lp, theta, W, mu, rng


def scalar(value):
    return np.array([value])


@pytest.mark.parametrize("objective", ["softmax", "logistic"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("sub", [False, True], ids=["all", "indices"])
def test_gradient_taylor(objective, n_classes, sub):
    lp, theta, W, mu, rng = make_problem(objective, n_classes=n_classes)
    idx = np.array([1, 4, 5, 9, 17]) if sub else None
    _, (g_theta, g_W, g_mu) = lp.value_and_gradient(theta, W, mu, idx)
    v = rng.standard_normal(theta.shape)
    res = taylor_test(lambda t: scalar(lp.value(t, W, mu, idx)), theta, v, scalar(inner(g_theta, v)))
    assert res.passed, str(res)
    x = lp.pack_classifier(W, mu)
    u = rng.standard_normal(x.shape)
    res = taylor_test(
        lambda y: scalar(lp.value(theta, *lp.unpack_classifier(y), idx)),
        x,
        u,
        scalar(inner(lp.pack_classifier(g_W, g_mu), u)),
    )
    assert res.passed, str(res)


@pytest.mark.parametrize("objective", ["softmax", "logistic"])
def test_models_agree_with_value_and_gradient(objective):
    lp, theta, W, mu, _ = make_problem(objective)
    idx = np.arange(3, 15)
    value, (g_theta, g_W, g_mu) = lp.value_and_gradient(theta, W, mu, idx)
    model = lp.theta_problem(W, mu, idx).model(theta)
    assert model.value == pytest.approx(value, rel=1e-14)
    assert lp.theta_problem(W, mu, idx).value(theta) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(model.gradient, g_theta, rtol=1e-13, atol=1e-15)
    YN = lp.features(theta, indices=idx)
    cls = lp.classifier_problem(YN, idx)
    x = lp.pack_classifier(W, mu)
    reg_theta = lp.alpha_theta * lp.theta_regularizer.value(theta)
    assert cls.model(x).value + reg_theta == pytest.approx(value, rel=1e-14)
    assert cls.value(x) == pytest.approx(cls.model(x).value, rel=1e-14)
    np.testing.assert_allclose(cls.model(x).gradient, lp.pack_classifier(g_W, g_mu), rtol=1e-13, atol=1e-15)
    assert 0.0 <= model.metrics()["batch_accuracy"] <= 1.0


@pytest.mark.parametrize("objective", ["softmax", "logistic"])
@pytest.mark.parametrize("kind", ["verlet", "resnet"])
def test_gauss_newton_symmetric_positive_semidefinite(objective, kind):
    lp, theta, W, mu, rng = make_problem(objective, kind=kind)
    model = lp.theta_problem(W, mu, hessian_indices=np.arange(0, 24, 2)).model(theta)
    v, w = rng.standard_normal((2, theta.size))
    res = dot_test(model.hessian_matvec, model.hessian_matvec, v, w, tol=1e-10)
    assert res.passed, str(res)
    for _ in range(5):
        v = rng.standard_normal(theta.size)
        assert inner(v, model.hessian_matvec(v)) >= -1e-12 * inner(v, v)


@pytest.mark.parametrize("objective", ["softmax", "logistic"])
def test_gauss_newton_matches_dense_jacobian(objective):
    lp, theta, W, mu, rng = make_problem(objective, kind="resnet", width=2, n_steps=3, s=5, n_classes=2)
    hess_idx = np.array([0, 2, 3])
    model = lp.theta_problem(W, mu, indices=np.array([1, 4]), hessian_indices=hess_idx).model(theta)
    Y0h, Ch = lp.Y0[hess_idx], lp.C[hess_idx]
    J = lp.network.jacobian(theta, Y0h).matmat(np.eye(theta.size))  # (s_h * n, P)
    YN = lp.network.forward(theta, Y0h)
    H = np.column_stack(
        [lp.objective.hessian_Y(YN, W, mu, Ch, e.reshape(YN.shape)).ravel() for e in np.eye(YN.size)]
    )
    H_R = np.column_stack([lp.theta_regularizer.hessian_matvec(e) for e in np.eye(theta.size)])
    dense = J.T @ H @ J + lp.alpha_theta * H_R
    v = rng.standard_normal(theta.size)
    np.testing.assert_allclose(model.hessian_matvec(v), dense @ v, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("objective", ["softmax", "logistic"])
def test_classifier_newton_matvec_finite_differences(objective):
    lp, theta, W, mu, rng = make_problem(objective)
    idx = np.arange(5, 20)
    problem = lp.classifier_problem(lp.features(theta, indices=idx), idx)
    x = lp.pack_classifier(W, mu)
    v = rng.standard_normal(x.shape)
    eps = 1e-5
    fd = (problem.model(x + eps * v).gradient - problem.model(x - eps * v).gradient) / (2 * eps)
    Hv = problem.model(x).hessian_matvec(v)
    np.testing.assert_allclose(Hv, fd, rtol=1e-7, atol=1e-9)
    res = dot_test(problem.model(x).hessian_matvec, problem.model(x).hessian_matvec, v, rng.standard_normal(x.shape))
    assert res.passed


def test_preconditioner_inverts_shifted_regularizer():
    lp, theta, W, mu, rng = make_problem()
    model = lp.theta_problem(W, mu, shift=0.3).model(theta)
    r = rng.standard_normal(theta.size)
    z = model.precondition(r)
    back = lp.alpha_theta * lp.theta_regularizer.hessian_matvec(z) + 0.3 * z
    np.testing.assert_allclose(back, r, rtol=1e-10)
    with pytest.raises(ValueError, match="shift must be (a finite number > 0|positive)"):
        lp.theta_problem(W, mu, shift=0.0)


def test_pack_unpack_classifier_and_defaults():
    lp, theta, W, mu, _ = make_problem()
    x = lp.pack_classifier(W, mu)
    assert x.shape == (W.size + mu.size,)
    W2, mu2 = lp.unpack_classifier(x)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(mu2, mu)
    assert isinstance(lp.theta_regularizer, ocdl.TimeSmoothness)
    assert isinstance(lp.W_regularizer, ocdl.WeightDecay)
    W0, mu0 = lp.initial_classifier()
    assert W0.shape == W.shape and mu0.shape == mu.shape and not W0.any()
    with pytest.raises(ValueError, match="x must have"):
        lp.unpack_classifier(x[:-1])
    with pytest.raises(ValueError, match="W must have shape"):
        lp.pack_classifier(W[:, :2], mu)


def test_accuracy_and_predict():
    lp, theta, W, mu, rng = make_problem(objective="logistic", n_classes=2)
    pred = lp.predict(theta, W, mu)
    assert pred.shape == (lp.n_examples,)
    assert lp.accuracy(theta, W, mu) == pytest.approx(np.mean(pred == lp.classes))
    Y_val = rng.standard_normal((7, 3))
    C_val = rng.integers(0, 2, 7)
    acc = lp.accuracy(theta, W, mu, Y_val, C_val)
    assert acc == pytest.approx(np.mean(lp.predict(theta, W, mu, Y_val) == C_val))
    assert lp.accuracy(theta, W, mu, Y_val, np.eye(2)[C_val]) == acc  # one-hot labels
    with pytest.raises(ValueError, match="needs their labels C"):
        lp.accuracy(theta, W, mu, Y_val)


def test_every_data_term_goes_through_the_reduction():
    class Recording(Reduction):
        def __init__(self):
            self.counts, self.sums = [], []

        def mean(self, x, count):
            self.counts.append(count)
            return x

        def sum(self, x):
            self.sums.append(x)
            return x

    red = Recording()
    lp, theta, W, mu, rng = make_problem(reduction=red)
    idx = np.arange(10)
    lp.value(theta, W, mu, idx)
    lp.value_and_gradient(theta, W, mu, idx)
    model = lp.theta_problem(W, mu, idx, hessian_indices=idx[:4]).model(theta)
    model.gradient, model.hessian_matvec(theta)
    model.metrics()
    lp.accuracy(theta, W, mu)
    assert red.counts == [10] + [10] * 4 + [10, 10, 4, 10]
    correct = int(np.sum(lp.predict(theta, W, mu) == lp.classes))
    assert red.sums == [correct, lp.n_examples]


def test_regression_targets_and_with_network():
    rng = np.random.default_rng(3)
    net = ocdl.network("resnet", 2, 4, 1.0)
    Y0 = rng.standard_normal((10, 2))
    targets = rng.standard_normal((10, 3))
    lp = LearningProblem(net, ocdl.LeastSquares(), Y0, targets, regression=True)
    assert lp.n_outputs == 3 and lp.C is not targets
    np.testing.assert_array_equal(lp.classes, targets.argmax(axis=1))
    fine = lp.with_network(net.with_steps(8))
    assert fine.theta_regularizer.n_steps == 8 and fine.theta_regularizer.step_size == pytest.approx(0.125)
    assert lp.theta_regularizer.n_steps == 4
    with pytest.raises(ValueError, match="Y0 must have the network.s width n = 3"):
        lp.with_network(ocdl.network("resnet", 3, 4, 1.0))


def test_a_regression_problem_scores_and_trains_with_validation_targets():
    """Other examples' classes are their target matrix's argmax, as the training examples' (class labels
    were required before: a regression problem could not be scored or trained with validation data)."""
    rng = np.random.default_rng(4)
    net = ocdl.network("resnet", 2, 4, 1.0)
    Y0, targets, Y_val, targets_val = (rng.standard_normal((10, 2)), rng.standard_normal((10, 3)),
                                       rng.standard_normal((6, 2)), rng.standard_normal((6, 3)))
    lp = LearningProblem(net, ocdl.LeastSquares(), Y0, targets, regression=True)
    theta, W, mu = net.init_params(0), rng.standard_normal((2, 3)), rng.standard_normal(3)
    np.testing.assert_array_equal(lp.class_indices(targets_val), targets_val.argmax(axis=1))
    predicted = (net.forward(theta, Y_val) @ W + mu).argmax(axis=1)
    assert lp.accuracy(theta, W, mu, Y_val, targets_val) == np.mean(predicted == targets_val.argmax(axis=1))
    result = BlockCoordinateDescent(max_iter=2).minimize(lp, theta, validation=(Y_val, targets_val),
                                                                      progress=False)
    assert result.success and "val_accuracy" in result.history[-1]
    with pytest.raises(ValueError, match=r"C must have shape \* x 3, got \(6, 2\)"):
        lp.class_indices(targets_val[:, :2])
    np.testing.assert_array_equal(lp.class_indices(np.arange(6) % 3), np.arange(6) % 3)  # class indices too
    with pytest.raises(TypeError, match="C must be a floating-point array"):
        lp.class_indices(np.eye(3, dtype=int))


@pytest.mark.parametrize(("objective", "targets", "match"), [
    (ocdl.LogisticCrossEntropy(), [[0.2, 1.0], [2.0, 0.0]], r"C must have entries in \[0, 1\] for "
                                                            r"LogisticCrossEntropy \(probabilities\), got entries "
                                                            r"from 0 to 2"),
    (ocdl.LogisticCrossEntropy(), [[-0.5], [1.0]], r"entries from -0.5 to 1"),
    (ocdl.SoftmaxCrossEntropy(), [[0.5, 0.5], [-1.0, 2.0]], r"C must have entries >= 0 for SoftmaxCrossEntropy, "
                                                            r"got -1"),
    (ocdl.SoftmaxCrossEntropy(), [[1.0], [0.0]], r"C must have at least 2 columns for SoftmaxCrossEntropy, "
                                                 r"got shape \(2, 1\)"),
])
def test_regression_targets_that_make_the_loss_unbounded_are_refused(objective, targets, match):
    # logistic with c = 2: S -> -inf as z -> inf (measured -1000 at mu = 1000 before the check)
    net = ocdl.network("resnet", 2, 2, 1.0)
    with pytest.raises(ValueError, match=match):
        LearningProblem(net, objective, np.ones((2, 2)), np.array(targets), regression=True)
    soft = np.array([[0.2, 0.8], [1.0, 0.0]])  # admissible soft targets pass
    assert LearningProblem(net, objective, np.ones((2, 2)), soft, regression=True).n_outputs == 2


def test_a_classifier_of_the_wrong_shape_or_dtype_is_named_in_every_method():
    """accuracy and predict gave a silent, meaningless figure for a W of other classes; value blamed C."""
    lp, theta, W, mu, rng = make_problem()
    n, m = W.shape
    for call in (lambda W, mu: lp.accuracy(theta, W, mu), lambda W, mu: lp.predict(theta, W, mu),
                 lambda W, mu: lp.value(theta, W, mu), lambda W, mu: lp.value_and_gradient(theta, W, mu),
                 lambda W, mu: lp.theta_problem(W, mu)):
        with pytest.raises(ValueError, match=rf"W must have shape {n} x {m}, got \({n}, {m - 1}\)"):
            call(W[:, :-1], mu[:-1])
        with pytest.raises(ValueError, match=rf"mu must have shape {m}, got \({m - 1},\)"):
            call(W, mu[:-1])
        with pytest.raises(TypeError, match="W must be a numpy array of the examples' dtype float64, got a numpy "
                                            "array of dtype float32"):
            call(W.astype(np.float32), mu)
        with pytest.raises(TypeError, match="W must be a NumPy or CuPy array, got list"):
            call(W.tolist(), mu)
    for call in (lambda W, mu: lp.accuracy(theta, W, mu), lambda W, mu: lp.predict(theta, W, mu),
                 lambda W, mu: lp.value_and_gradient(theta, W, mu), lambda W, mu: lp.theta_problem(W, mu)):
        # accuracy gave 0.35 (predict: class 0 everywhere), value_and_gradient named an internal 'lam'
        with pytest.raises(ValueError, match="W contains NaN or Inf entries"):
            call(W * np.nan, mu)
        with pytest.raises(ValueError, match="mu contains NaN or Inf entries"):
            call(W, mu * np.inf)
    assert np.isnan(lp.value(theta, W * np.nan, mu))  # a line search's failed trial, not an error
    with pytest.raises(ValueError, match="C is only used with Y0"):  # it was ignored: the training accuracy
        lp.accuracy(theta, W, mu, C=np.zeros(lp.n_examples, dtype=int))
    with pytest.raises(TypeError, match="reduction must be an ocdl Reduction"):
        LearningProblem(lp.network, lp.objective, lp.Y0, lp.classes, reduction="mpi")
    with pytest.raises(TypeError, match="network must be an ocdl Network, got NoneType"):
        lp.with_network(None)



def test_rows_check_examples_and_regularization():
    """The public helpers the sub-problems and solvers use, against independent computations."""
    lp, theta, W, mu, rng = make_problem()
    idx = np.array([4, 0, 4, 9])
    rows = lp.rows(idx)
    np.testing.assert_array_equal(rows.Y0, lp.Y0[[4, 0, 4, 9]])
    np.testing.assert_array_equal(rows.C, np.eye(3)[lp.classes[[4, 0, 4, 9]]])  # softmax targets: one-hot
    assert rows.count == 4
    whole = lp.rows()
    assert whole.Y0 is lp.Y0 and whole.C is lp.C and whole.count == lp.n_examples == 24
    with pytest.raises(ValueError, match=r"hessian_indices must lie in 0..23, got values in 0..24"):
        lp.rows(np.array([0, 24]), "hessian_indices")
    with pytest.raises(ValueError, match=r"indices must be a non-empty 1-D integer array"):
        lp.rows(np.array([], dtype=int))

    Y = rng.standard_normal((5, 3))
    assert lp.check_examples(Y, "Y_val") is Y
    with pytest.raises(ValueError, match=r"Y_val must have the network's width n = 3 columns"):
        lp.check_examples(Y[:, :2], "Y_val")
    with pytest.raises(ValueError, match=r"Y_val must hold at least one example"):
        lp.check_examples(Y[:0], "Y_val")
    with pytest.raises(TypeError, match=r"Y0 must be a floating-point array"):
        lp.check_examples(np.ones((5, 3), dtype=int))

    data = lp.objective.value(lp.network.forward(theta, lp.Y0), W, mu, lp.C)
    assert lp.regularization(theta, W) == pytest.approx(lp.value(theta, W, mu) - data, rel=1e-12)
    unregularized = LearningProblem(lp.network, lp.objective, lp.Y0, lp.classes, alpha_theta=0.0, alpha_W=0.05)
    assert unregularized.regularization(theta, W) == pytest.approx(0.05 * 0.5 * np.sum(W**2), rel=1e-14)


def test_classifier_shift_is_checked():
    lp, theta, W, mu, _ = make_problem()
    YN = lp.features(theta)
    for shift in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="shift must be a finite number > 0"):
            lp.classifier_problem(YN, shift=shift)


def test_learning_problem_modules_read_private_attributes_of_self_only():
    """No class of the learning problem calls another object's ``_private`` method or attribute."""
    import ast
    from pathlib import Path

    import ocdl.learning_problem as package

    offending = []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                offending.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offending == []


# -- bad input ------------------------------------------------------------------


def test_bad_labels():
    net = ocdl.network("verlet", 2, 4, 1.0)
    Y0 = np.zeros((4, 2))
    obj = ocdl.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="C must be integer class indices"):
        LearningProblem(net, obj, Y0, np.array([0.0, 1.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="C rows must each hold exactly one 1"):
        LearningProblem(net, obj, Y0, np.array([[1, 0], [1, 1], [0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="C as a 2-D array must have entries 0 or 1"):
        LearningProblem(net, obj, Y0, np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="negative class index"):
        LearningProblem(net, obj, Y0, np.array([0, -1, 1, 0]))
    with pytest.raises(ValueError, match="class index 2 >= n_classes = 2"):
        LearningProblem(net, obj, Y0, np.array([0, 2, 1, 0]), n_classes=2)


@pytest.mark.parametrize("objective", [ocdl.SoftmaxCrossEntropy(), ocdl.LogisticCrossEntropy()], ids=repr)
def test_labels_must_name_two_classes_or_more_numbered_from_0(objective):
    net = ocdl.network("verlet", 2, 4, 1.0)
    Y0 = np.random.default_rng(0).standard_normal((6, 2))
    with pytest.raises(ValueError, match=r"C holds a single class .*n_classes >= 2"):
        LearningProblem(net, objective, Y0, np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match=r"n_classes must be an integer >= 2"):
        LearningProblem(net, objective, Y0, np.zeros(6, dtype=int), n_classes=1)
    labels = np.array([1, 2, 1, 2, 1, 2])  # 1-based: no phantom class 0
    with pytest.raises(ValueError, match=r"class 0 has no example .*pass n_classes="):
        LearningProblem(net, objective, Y0, labels)
    with pytest.raises(ValueError, match=r"n_classes = max\(C\) \+ 1 = 1000000001 exceeds the number of examples"):
        LearningProblem(net, objective, Y0, np.r_[labels[:-1], 10**9])
    lp = LearningProblem(net, objective, Y0, labels - 1)
    assert lp.n_classes == 2 and lp.n_outputs == objective.n_outputs(2)
    # a sub-sample without class 1 of three: n_classes given explicitly
    assert LearningProblem(net, objective, Y0, labels * 2 - 2, n_classes=3).n_classes == 3


def test_no_examples_are_rejected():
    net = ocdl.network("verlet", 2, 4, 1.0)
    obj = ocdl.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"Y0 must hold at least one example .*got shape \(0, 2\)"):
        LearningProblem(net, obj, np.zeros((0, 2)), np.zeros(0, dtype=int), n_classes=2)
    lp, theta, W, mu, _ = make_problem()
    with pytest.raises(ValueError, match=r"Y0 must hold at least one example"):  # an empty validation set
        lp.accuracy(theta, W, mu, Y0=np.zeros((0, 3)), C=np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"Y0 must hold at least one example"):
        lp.features(theta, Y0=np.zeros((0, 3)))


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.complex128])
def test_examples_must_be_float32_or_float64(dtype):
    net = ocdl.network("verlet", 2, 4, 1.0)
    with pytest.raises(TypeError, match=rf"Y0 must be a floating-point array \(float32 or float64\), got dtype "
                                        rf"{np.dtype(dtype)}"):
        LearningProblem(net, ocdl.SoftmaxCrossEntropy(), np.ones((4, 2), dtype=dtype), np.array([0, 1, 1, 0]))


def test_mismatched_sizes():
    net = ocdl.network("verlet", 2, 4, 1.0)
    obj = ocdl.SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"C must hold one label \(row\) per example.*s = 4"):
        LearningProblem(net, obj, np.zeros((4, 2)), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="Y0 must have the network's width n = 2"):
        LearningProblem(net, obj, np.zeros((4, 3)), np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="Y0 must be 2-D"):
        LearningProblem(net, obj, np.zeros(4), np.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="W_regularizer does not accept an array of shape"):
        LearningProblem(
            net, obj, np.zeros((4, 2)), np.array([0, 1, 1, 0]), W_regularizer=ocdl.SpatialSmoothness((3, 3))
        )
    with pytest.raises(ValueError, match="theta_regularizer does not accept"):
        LearningProblem(
            net, obj, np.zeros((4, 2)), np.array([0, 1, 1, 0]), theta_regularizer=ocdl.TimeSmoothness(5, 7, 0.1)
        )
    lp, theta, W, mu, _ = make_problem()
    with pytest.raises(ValueError, match="indices must lie in 0..23"):
        lp.value(theta, W, mu, np.array([0, 24]))
    with pytest.raises(ValueError, match="hessian_indices must be a non-empty 1-D integer array"):
        lp.theta_problem(W, mu, hessian_indices=np.array([0.5]))
    with pytest.raises(ValueError, match="W must have shape"):
        lp.value(theta, W[:2], mu)
    with pytest.raises(ValueError, match="theta must have n_params"):
        lp.value(theta[:-1], W, mu)
    with pytest.raises(ValueError, match="YN must have shape"):
        lp.classifier_problem(np.zeros((5, 3)), np.arange(4))


@pytest.mark.parametrize("name", ["alpha_theta", "alpha_W"])
@pytest.mark.parametrize("value", [-1e-3, float("nan"), "1"])
def test_bad_alpha(name, value):
    net = ocdl.network("verlet", 2, 4, 1.0)
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
        LearningProblem(net, ocdl.SoftmaxCrossEntropy(), np.zeros((4, 2)), np.array([0, 1, 1, 0]), **{name: value})


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_cupy_matches_numpy():
    import cupy
    from ocdl.solvers import BlockCoordinateDescent

    lp, theta, W, mu, rng = make_problem()
    Y0, C = cupy.asarray(lp.Y0), cupy.asarray(lp.classes)
    gpu = LearningProblem(lp.network, lp.objective, Y0, C, alpha_theta=0.1, alpha_W=0.05)
    args = (theta, W, mu)
    gargs = tuple(cupy.asarray(a) for a in args)
    idx = np.arange(3, 17)
    value, grads = lp.value_and_gradient(*args, idx)
    gvalue, ggrads = gpu.value_and_gradient(*gargs, idx)
    assert gvalue == pytest.approx(value, rel=1e-12)
    for a, b in zip(ggrads, grads):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-10, atol=1e-14)
    v = rng.standard_normal(theta.size)
    Hv = lp.theta_problem(W, mu, idx, idx[:5]).model(theta).hessian_matvec(v)
    gHv = gpu.theta_problem(gargs[1], gargs[2], idx, idx[:5]).model(gargs[0]).hessian_matvec(cupy.asarray(v))
    np.testing.assert_allclose(cupy.asnumpy(gHv), Hv, rtol=1e-10, atol=1e-14)
    assert gpu.accuracy(*gargs) == lp.accuracy(*args)
    result = BlockCoordinateDescent(max_iter=2, batch_size=12, hessian_batch_size=6).minimize(gpu, gargs[0],
                                                                                              progress=False)
    assert isinstance(result.x.theta, cupy.ndarray) and result.nit == 2


def test_classifier_preconditioner_inverts_regularizer_plus_shift():
    """(alpha_W H_R + sigma I) applied to the preconditioned vector gives it back (independent dense check)."""
    rng = np.random.default_rng(3)
    net = ocdl.network("resnet", 4, 2, 1.0)
    reg = ocdl.SpatialSmoothness((2, 2))
    lp = ocdl.LearningProblem(
        net, ocdl.SoftmaxCrossEntropy(), rng.standard_normal((6, 4)), rng.integers(0, 3, 6),
        alpha_W=0.3, W_regularizer=reg, n_classes=3,
    )
    problem = lp.classifier_problem(lp.features(net.init_params(0)), shift=0.05)
    model = problem.model(lp.pack_classifier(*lp.initial_classifier()))
    r = rng.standard_normal(model.gradient.shape)
    z = model.precondition(r)
    zW, zmu = lp.unpack_classifier(z)
    back = lp.pack_classifier(0.3 * reg.hessian_matvec(zW) + 0.05 * zW, 0.05 * zmu)
    np.testing.assert_allclose(back, r, rtol=1e-10, atol=1e-12)


def test_the_classifier_problem_refuses_features_and_points_of_another_dtype():
    """float64 features or a float64 point on a float32 problem gave float64 Newton iterates in silence."""
    lp, theta, W, mu, _ = make_problem()
    lp32 = LearningProblem(lp.network, lp.objective, lp.Y0.astype(np.float32), lp.classes)
    theta32 = theta.astype(np.float32)
    YN = lp32.features(theta32)
    with pytest.raises(TypeError, match=r"YN must .*float32"):
        lp32.classifier_problem(YN.astype(np.float64))
    problem = lp32.classifier_problem(YN)
    x64 = lp32.pack_classifier(W, mu)  # float64
    with pytest.raises(TypeError, match=r"W \(float64\) must have the dtype of YN \(float32\)"):
        problem.model(x64)
    model = problem.model(x64.astype(np.float32))
    assert model.gradient.dtype == np.float32 and model.hessian_matvec(model.gradient).dtype == np.float32
    with pytest.raises(TypeError, match=r"dW \(float64\) must have the dtype of its point \(float32\)"):
        model.hessian_matvec(x64)


def test_one_hot_labels_keep_a_column_without_an_example_as_a_class():
    """As documented: from indices every inferred class needs an example; a one-hot matrix's columns are the
    classes, an empty one included, and give the problem with n_classes passed explicitly."""
    net = ocdl.network("resnet", 2, 2, 1.0)
    Y = np.random.default_rng(0).standard_normal((3, 2))
    one_hot = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y, np.eye(3)[[0, 2, 0]])
    explicit = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y, np.array([0, 2, 0]), n_classes=3)
    assert one_hot.n_classes == explicit.n_classes == 3
    theta, W, mu = net.init_params(rng=0), np.ones((2, 3)), np.zeros(3)
    assert one_hot.value(theta, W, mu) == explicit.value(theta, W, mu)
    with pytest.raises(ValueError, match="class 1 has no example"):
        ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y, np.array([0, 2, 0]))
