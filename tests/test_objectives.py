"""Objectives: derivatives (Taylor and dot tests), independent formulas, stability, labels."""

from __future__ import annotations

import numpy as np
import pytest

import ocdl
from ocdl.backend import cupy_available
from ocdl.objectives import LeastSquares, LogisticCrossEntropy, SoftmaxCrossEntropy

OBJECTIVES = [SoftmaxCrossEntropy(), LogisticCrossEntropy(), LeastSquares()]
IDS = ["softmax", "logistic", "least_squares"]
N_CLASSES = [3, 2, 3]  # logistic: two classes, m = 1


def problem(obj, n_classes, dtype=np.float64, seed=0, s=11, n=5):
    rng = np.random.default_rng(seed)
    C = obj.prepare_labels(rng.integers(0, n_classes, s), n_classes, dtype=dtype)
    m = obj.n_outputs(n_classes)
    YN = rng.standard_normal((s, n)).astype(dtype)
    W = rng.standard_normal((n, m)).astype(dtype)
    mu = rng.standard_normal(m).astype(dtype)
    return YN, W, mu, C


@pytest.fixture(params=list(zip(OBJECTIVES, N_CLASSES, strict=True)), ids=IDS)
def case(request):
    obj, n_classes = request.param
    return (obj, *problem(obj, n_classes))


def test_check_objective(case):
    """Gradients and Hessians in Y_N and (W, mu), their symmetry, value_and_gradient (ocdl.check_objective)."""
    obj, YN, W, mu, C = case
    report = ocdl.check_objective(obj, YN, W, mu, C)
    assert report.passed, str(report)


def test_softmax_matches_naive_formula():
    obj = SoftmaxCrossEntropy()
    YN, W, mu, C = problem(obj, 4)
    Z = YN @ W + mu
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    assert obj.value(YN, W, mu, C) == pytest.approx(-np.mean(np.sum(C * np.log(P), axis=1)))
    np.testing.assert_allclose(obj.gradient(YN, W, mu, C)[1], YN.T @ (P - C) / len(YN))


def test_logistic_matches_naive_formula():
    obj = LogisticCrossEntropy()
    YN, W, mu, C = problem(obj, 4)  # four independent Bernoulli columns
    sig = 1 / (1 + np.exp(-(YN @ W + mu)))
    naive = -np.sum(C * np.log(sig) + (1 - C) * np.log(1 - sig)) / len(YN)
    assert obj.value(YN, W, mu, C) == pytest.approx(naive)


def test_logistic_equals_two_class_softmax():
    """sigma(z) = softmax([0, z])_1, so logistic (m = 1) is softmax on the logits [0, z]."""
    logistic, softmax = LogisticCrossEntropy(), SoftmaxCrossEntropy()
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, 9)
    YN = rng.standard_normal((9, 4))
    W, mu = rng.standard_normal((4, 1)), rng.standard_normal(1)
    W2, mu2 = np.hstack([np.zeros((4, 1)), W]), np.array([0.0, mu[0]])
    C1, C2 = logistic.prepare_labels(labels, 2), softmax.prepare_labels(labels, 2)
    assert C1.shape == (9, 1) and np.array_equal(C1[:, 0], labels)
    assert logistic.value(YN, W, mu, C1) == pytest.approx(softmax.value(YN, W2, mu2, C2), rel=1e-13)
    g1, g2 = logistic.gradient(YN, W, mu, C1), softmax.gradient(YN, W2, mu2, C2)
    np.testing.assert_allclose(g1[0], g2[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g1[1][:, 0], g2[1][:, 1], rtol=1e-12)
    np.testing.assert_allclose(logistic.predict(YN, W, mu), softmax.predict(YN, W2, mu2))


@pytest.mark.parametrize("obj", OBJECTIVES[:2], ids=IDS[:2])
def test_huge_logits_are_stable(obj):
    YN = np.array([[1.0], [1.0], [-1.0]])
    W, mu = np.array([[1e4, 0.0]]), np.zeros(2)
    labels = np.array([0, 1, 1])
    C = obj.prepare_labels(labels, 2)
    if obj.n_outputs(2) == 1:  # logistic: the single logit z = -1e4 prefers class 0
        W, mu = W[:, :1] * -1, mu[:1]
    val, grads = obj.value_and_gradient(YN, W, mu, C)
    # Examples 0 and 2: margin 1e4 in favour of the truth (loss 0); example 1: 1e4 against.
    assert val == pytest.approx(1e4 / 3, rel=1e-12)
    assert all(np.isfinite(g).all() for g in grads)
    assert np.isfinite(obj.hessian_W(YN, W, mu, C, W, mu)[0]).all()


def test_predict_and_accuracy_by_hand():
    YN = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    W, mu = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([0.0, 0.0, 0.5])
    # logits rows: [2, 0, .5], [0, 1, .5], [2, 1, .5], [-2, 0, .5] -> classes 0, 1, 0, 2
    for obj in (SoftmaxCrossEntropy(), LeastSquares(), LogisticCrossEntropy()):
        np.testing.assert_array_equal(obj.predict(YN, W, mu), [0, 1, 0, 2])
        truth = np.array([0, 1, 2, 2])
        assert obj.accuracy(YN, W, mu, truth) == 0.75
        assert obj.accuracy(YN, W, mu, obj.prepare_labels(truth, 3)) == 0.75
    binary = LogisticCrossEntropy()
    w, b = np.array([[1.0], [-1.0]]), np.array([0.0])  # z = y1 - y2: 1, -1, 0, -1
    np.testing.assert_array_equal(binary.predict(YN, w, b), [1, 0, 0, 0])
    assert binary.accuracy(YN, w, b, binary.prepare_labels(np.array([1, 0, 1, 1]), 2)) == 0.5


@pytest.mark.parametrize(
    ("obj", "expected"),
    [(SoftmaxCrossEntropy(), [2, 5]), (LogisticCrossEntropy(), [1, 5]), (LeastSquares(), [2, 5])],
    ids=IDS,
)
def test_n_outputs(obj, expected):
    assert [obj.n_outputs(2), obj.n_outputs(5)] == expected


def test_prepare_labels_forms():
    obj = SoftmaxCrossEntropy()
    one_hot = np.array([[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(obj.prepare_labels(np.array([1, 0]), 3), one_hot)
    np.testing.assert_array_equal(obj.prepare_labels(one_hot.astype(bool)), one_hot)
    assert obj.prepare_labels(np.array([1, 0])).shape == (2, 2)  # n_classes inferred
    assert obj.prepare_labels(np.array([1, 0]), 3, dtype=np.float32).dtype == np.float32
    assert LogisticCrossEntropy().prepare_labels(one_hot, 3).shape == (2, 3)


@pytest.mark.parametrize(
    ("C", "n_classes", "match"),
    [
        (np.array([0.0, 1.0, 0.5]), None, r"C must be integer class indices.*dtype float64"),
        (np.array([[0.2, 0.8], [1.0, 0.0]]), None, r"C as a 2-D array must have entries 0 or 1"),
        (np.array([[1, 1], [1, 0]]), None, r"C rows must each hold exactly one 1 \(row 0 holds 2\)"),
        (np.array([[0, 0], [1, 0]]), None, r"row 0 holds 0"),
        (np.array([0, -1, 1]), None, r"negative class index -1"),
        (np.array([0, 3, 1]), 3, r"class index 3 >= n_classes = 3"),
        (np.array([[np.nan, 1.0]]), None, r"C contains NaN"),
        (np.zeros((2, 2, 2), dtype=int), None, r"C must be .* got a 3-D array"),
        (np.array([[0, 1]]), 3, r"must have n_classes = 3 columns"),
        (np.array([0, 1]), 0, r"n_classes must be an integer >= 2"),
    ],
)
def test_label_validation(C, n_classes, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxCrossEntropy().prepare_labels(C, n_classes)


@pytest.mark.parametrize("obj", OBJECTIVES, ids=IDS)
def test_fewer_than_two_classes_are_rejected(obj):
    """One class: logistic's single column would read "class 1" for labels 0; softmax would learn nothing."""
    with pytest.raises(ValueError, match=r"C holds a single class .* n_classes >= 2"):
        obj.prepare_labels(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"n_classes must be an integer >= 2 .*got 1"):
        obj.prepare_labels(np.zeros(5, dtype=int), 1)
    with pytest.raises(ValueError, match=r"C as a one-hot matrix must have n_classes >= 2 columns"):
        obj.prepare_labels(np.ones((5, 1), dtype=int))
    with pytest.raises(ValueError, match=r"n_classes must be an integer >= 2"):
        obj.n_outputs(1)


def test_softmax_rejects_a_single_column():
    YN = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"W must have at least 2 columns .*SoftmaxCrossEntropy"):
        SoftmaxCrossEntropy().value_and_gradient(YN, np.ones((3, 1)), np.zeros(1), np.ones((4, 1)))
    LeastSquares().value(YN, np.ones((3, 1)), np.zeros(1), np.ones((4, 1)))  # m = 1 is regression: fine


@pytest.mark.parametrize("obj", OBJECTIVES, ids=IDS)
def test_inferred_classes_must_all_have_an_example(obj):
    with pytest.raises(ValueError, match=r"n_classes = max\(C\) \+ 1 = 3 inferred, but class 0 has no example"):
        obj.prepare_labels(np.array([1, 2, 2, 1]))  # 1-based
    with pytest.raises(ValueError, match=r"class 1 has no example.*pass n_classes="):
        obj.prepare_labels(np.array([0, 2, 2, 0, 3]))
    # a class genuinely absent from a sample: pass n_classes
    assert obj.prepare_labels(np.array([1, 2, 2, 1]), 3).shape == (4, obj.n_outputs(3))
    assert obj.prepare_labels(np.array([0, 1, 1]), 4).shape == (3, obj.n_outputs(4))


def test_a_stray_huge_label_is_a_label_error_not_a_huge_allocation():
    C = np.r_[np.arange(9) % 2, 10**9]
    with pytest.raises(ValueError, match=r"inferred n_classes = max\(C\) \+ 1 = 1000000001 exceeds the number "
                                         r"of examples \(10\)"):
        SoftmaxCrossEntropy().prepare_labels(C)


def test_empty_features_are_rejected():
    obj = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"YN must hold at least one example \(row\), got shape \(0, 3\)"):
        obj.value(np.zeros((0, 3)), np.ones((3, 2)), np.zeros(2), np.zeros((0, 2)))


def test_shape_validation():
    obj = SoftmaxCrossEntropy()
    YN, W, mu, C = problem(obj, 3)
    with pytest.raises(ValueError, match=r"YN must be 2-D"):
        obj.value(YN[0], W, mu, C)
    with pytest.raises(ValueError, match=r"W must have shape \(n, m\) with n = 5"):
        obj.value(YN, W[1:], mu, C)
    with pytest.raises(ValueError, match=r"mu must have shape \(m,\) = \(3,\)"):
        obj.gradient(YN, W, mu[:2], C)
    with pytest.raises(ValueError, match=r"C must be the \(11, 3\) target matrix"):
        obj.value(YN, W, mu, C[1:])
    with pytest.raises(ValueError, match=r"C must be the \(11, 3\) target matrix"):
        obj.value(YN, W, mu, np.zeros(11, dtype=int))
    with pytest.raises(ValueError, match=r"dY must have shape"):
        obj.hessian_Y(YN, W, mu, C, YN[1:])
    with pytest.raises(ValueError, match=r"C must hold one label per row of YN"):
        obj.accuracy(YN, W, mu, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"mu must have shape \(m,\) = \(3,\)"):
        obj.value_and_gradient_W(YN, W, mu[:2], C)
    # float16 and complex were computed (complex with a ComplexWarning only), a list failed inside NumPy
    with pytest.raises(TypeError, match=r"YN must be a floating-point array .*, got dtype float16"):
        obj.value(YN.astype(np.float16), W, mu, C)
    with pytest.raises(TypeError, match=r"YN must be a floating-point array .*, got dtype complex128"):
        obj.value(YN + 1j, W, mu, C)
    with pytest.raises(TypeError, match=r"W must be a NumPy or CuPy array, got list"):
        obj.value(YN, W.tolist(), mu, C)
    for labels in (np.full(11, -1), np.full(11, 0.5)):  # matched no class: an accuracy of 0.0
        with pytest.raises(ValueError, match=r"C must hold integer class indices >= 0"):
            obj.accuracy(YN, W, mu, labels)
    expected = r"^logits must have shape \(s, m\) = \(11, 3\) \(YN W \+ e mu\^T\), got \(10, 3\)$"
    with pytest.raises(ValueError, match=expected):
        obj.hessian_W(YN, W, mu, C, W, mu, logits=(YN @ W + mu)[1:])


@pytest.mark.parametrize(("obj", "n_classes"), list(zip(OBJECTIVES, N_CLASSES, strict=True)), ids=IDS)
def test_float32_keeps_dtype(obj, n_classes):
    YN, W, mu, C = problem(obj, n_classes, dtype=np.float32)
    val, grads = obj.value_and_gradient(YN, W, mu, C)
    ref = obj.value(*(a.astype(np.float64) for a in (YN, W, mu, C)))
    assert val == pytest.approx(ref, rel=1e-5)
    assert all(g.dtype == np.float32 for g in grads)
    assert obj.hessian_Y(YN, W, mu, C, YN).dtype == np.float32
    assert all(h.dtype == np.float32 for h in obj.hessian_W(YN, W, mu, C, W, mu))
    val_W, grads_W, Z = obj.value_and_gradient_W(YN, W, mu, C)
    assert val_W == pytest.approx(ref, rel=1e-5)
    assert Z.dtype == np.float32 and all(g.dtype == np.float32 for g in grads_W)
    assert all(h.dtype == np.float32 for h in obj.hessian_W(YN, W, mu, C, W, mu, logits=Z))


def test_float32_mu_derivatives_of_many_examples_are_float32_rounding():
    """The mu-derivatives sum G over the examples: NumPy added 200,000 float32 rows one after another (5e-6 off);
    against float64 on the same float32 data, each is now within a few float32 roundings, as W's are."""
    rng = np.random.default_rng(0)
    s, n, m = 200_000, 4, 10
    obj = SoftmaxCrossEntropy()
    YN, W, mu = rng.standard_normal((s, n)), 0.3 * rng.standard_normal((n, m)), 0.1 * rng.standard_normal(m)
    C, dW, dmu = obj.prepare_labels(rng.integers(0, m, s), m), rng.standard_normal((n, m)), rng.standard_normal(m)
    YN, W, mu, C, dW, dmu = (a.astype(np.float32).astype(np.float64) for a in (YN, W, mu, C, dW, dmu))
    single = [a.astype(np.float32) for a in (YN, W, mu, C)]
    pairs = [(obj.gradient(*single)[2], obj.gradient(YN, W, mu, C)[2]),
             (obj.value_and_gradient(*single)[1][2], obj.value_and_gradient(YN, W, mu, C)[1][2]),
             (obj.value_and_gradient_W(*single)[1][1], obj.value_and_gradient_W(YN, W, mu, C)[1][1]),
             (obj.hessian_W(*single, dW.astype(np.float32), dmu.astype(np.float32))[1],
              obj.hessian_W(YN, W, mu, C, dW, dmu)[1])]
    for low, exact in pairs:
        assert low.dtype == np.float32
        assert np.max(np.abs(low - exact)) <= 5e-7 * np.max(np.abs(exact)), np.max(np.abs(low - exact))


@pytest.mark.parametrize(("obj", "n_classes"), list(zip(OBJECTIVES, N_CLASSES, strict=True)), ids=IDS)
def test_large_products_run_in_row_blocks_and_equal_whole_products(obj, n_classes, monkeypatch):
    """On arrays big enough for ocdl's threads, the products with the classifier run as row blocks
    (``ocdl._threads.row_blocks``) and give what whole NumPy products give."""
    from ocdl import _threads

    n = 64
    s = _threads._THREADED_ELEMENTS // n + 7  # threaded blocks, a ragged last one
    YN, W, mu, C = problem(obj, n_classes, s=s, n=n)
    threaded, in_parallel = [], _threads.in_parallel

    def recording(task, k, use_threads):
        threaded.append(use_threads and k > 1)
        return in_parallel(task, k, use_threads)

    monkeypatch.setattr(_threads, "in_parallel", recording)

    Z = YN @ W + mu  # whole products, and the loss's own z-level formulas
    value, G = obj.value_and_gradient_z(Z, C)
    dY = np.cos(YN)
    dW, dmu = np.sin(W), np.cos(mu)
    got_value, (got_dY, got_dW, got_dmu) = obj.value_and_gradient(YN, W, mu, C)
    assert got_value == pytest.approx(float(value), rel=1e-13)
    np.testing.assert_allclose(got_dY, G @ W.T, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_dW, YN.T @ G, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(got_dmu, G.sum(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(obj.hessian_Y(YN, W, mu, C, dY), obj.hessian_z(Z, C, dY @ W) @ W.T,
                               rtol=1e-12, atol=1e-15)
    HdZ = obj.hessian_z(Z, C, YN @ dW + dmu)
    for got, expected in zip(obj.hessian_W(YN, W, mu, C, dW, dmu), (YN.T @ HdZ, HdZ.sum(axis=0)), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)
    # the Newton problem in (W, mu): value, gradient and logits in one pass, then Hessian products from the logits
    got_value, (got_dW, got_dmu), got_Z = obj.value_and_gradient_W(YN, W, mu, C)
    assert got_value == pytest.approx(float(value), rel=1e-13)
    np.testing.assert_allclose(got_Z, Z, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got_dW, YN.T @ G, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(got_dmu, G.sum(axis=0), rtol=1e-12, atol=1e-15)
    for got, expected in zip(obj.hessian_W(YN, W, mu, C, dW, dmu, logits=got_Z), (YN.T @ HdZ, HdZ.sum(axis=0)),
                             strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)
    if _threads.blas_threads_settable():
        assert threaded and all(threaded), threaded


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize(("obj", "n_classes"), list(zip(OBJECTIVES, N_CLASSES, strict=True)), ids=IDS)
def test_cupy_matches_numpy(obj, n_classes):
    import cupy

    args = problem(obj, n_classes)
    gpu = tuple(cupy.asarray(a) for a in args)
    assert obj.value(*gpu) == pytest.approx(obj.value(*args), rel=1e-12)
    for a, b in zip(obj.gradient(*gpu), obj.gradient(*args), strict=True):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(
        cupy.asnumpy(obj.hessian_Y(*gpu, gpu[0])), obj.hessian_Y(*args, args[0]), rtol=1e-10, atol=1e-14
    )
    dW, dmu = gpu[1] + 0.5, gpu[2] - 0.25
    for a, b in zip(obj.hessian_W(*gpu, dW, dmu), obj.hessian_W(*args, cupy.asnumpy(dW), cupy.asnumpy(dmu)),
                    strict=True):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-10, atol=1e-14)
    value, (gW, gmu), Z = obj.value_and_gradient_W(*gpu)
    assert value == pytest.approx(obj.value(*args), rel=1e-12)
    for a, b in zip((gW, gmu), obj.gradient(*args)[1:], strict=True):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-10, atol=1e-14)
    for a, b in zip(obj.hessian_W(*gpu, dW, dmu, logits=Z), obj.hessian_W(*gpu, dW, dmu), strict=True):
        np.testing.assert_allclose(cupy.asnumpy(a), cupy.asnumpy(b), rtol=1e-12, atol=1e-15)
    assert obj.accuracy(*gpu) == obj.accuracy(*args)
    labels = cupy.asarray(np.random.default_rng(0).integers(0, n_classes, 5))
    assert isinstance(obj.prepare_labels(labels, n_classes), cupy.ndarray)


@pytest.mark.parametrize("objective", [ocdl.SoftmaxCrossEntropy(), ocdl.LogisticCrossEntropy(), ocdl.LeastSquares()],
                         ids=lambda o: type(o).__name__)
def test_a_classifier_of_another_dtype_is_refused(objective):
    """float32 features with a float64 W or mu (or a float64 direction) gave float64 results in silence;
    Network refuses mixed dtypes, and now the objectives do too."""
    rng = np.random.default_rng(0)
    m = 1 if isinstance(objective, ocdl.LogisticCrossEntropy) else 3
    YN = rng.standard_normal((5, 4)).astype(np.float32)
    W, mu = rng.standard_normal((4, m)).astype(np.float32), np.zeros(m, np.float32)
    C = objective.prepare_labels(np.arange(5) % 2, 2) if m == 1 else objective.prepare_labels(np.arange(5) % 3, 3)
    with pytest.raises(TypeError, match=r"W \(float64\) must have the dtype of YN \(float32\)"):
        objective.value_and_gradient(YN, W.astype(np.float64), mu, C)
    with pytest.raises(TypeError, match=r"mu \(float64\) must have the dtype of YN \(float32\)"):
        objective.value(YN, W, mu.astype(np.float64), C)
    with pytest.raises(TypeError, match=r"dY \(float64\) must have the dtype of its point \(float32\)"):
        objective.hessian_Y(YN, W, mu, C, YN.astype(np.float64))
    with pytest.raises(TypeError, match=r"dW \(float64\) must have the dtype of its point \(float32\)"):
        objective.hessian_W(YN, W, mu, C, W.astype(np.float64), mu)
    assert objective.value_and_gradient(YN, W, mu, C)[1][0].dtype == np.float32
