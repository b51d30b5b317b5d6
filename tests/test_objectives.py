"""Objectives: derivatives (Taylor and dot tests), independent formulas, stability, labels."""

from __future__ import annotations

import numpy as np
import pytest

from ocdl.backend import cupy_available
from ocdl.checks import dot_test, inner, random_like, taylor_test
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


def test_gradient_in_Y(case):
    obj, YN, W, mu, C = case
    v = random_like(YN, np.random.default_rng(1))
    dY, _, _ = obj.gradient(YN, W, mu, C)
    result = taylor_test(lambda Y: np.asarray(obj.value(Y, W, mu, C)), YN, v, np.asarray(inner(dY, v)))
    assert result.rate1 >= 1.9, str(result)


def test_gradient_in_W_mu(case):
    obj, YN, W, mu, C = case
    v = random_like((W, mu), np.random.default_rng(2))
    _, dW, dmu = obj.gradient(YN, W, mu, C)
    result = taylor_test(
        lambda x: np.asarray(obj.value(YN, x[0], x[1], C)), (W, mu), v, np.asarray(inner((dW, dmu), v))
    )
    assert result.rate1 >= 1.9, str(result)


def test_hessian_in_Y(case):
    obj, YN, W, mu, C = case
    v = random_like(YN, np.random.default_rng(3))
    result = taylor_test(
        lambda Y: obj.gradient(Y, W, mu, C)[0], YN, v, obj.hessian_Y(YN, W, mu, C, v)
    )
    assert result.rate1 >= 1.9, str(result)


def test_hessian_in_W_mu(case):
    obj, YN, W, mu, C = case
    v = random_like((W, mu), np.random.default_rng(4))
    result = taylor_test(
        lambda x: obj.gradient(YN, x[0], x[1], C)[1:], (W, mu), v, obj.hessian_W(YN, W, mu, C, *v)
    )
    assert result.rate1 >= 1.9, str(result)


def test_hessians_symmetric(case):
    obj, YN, W, mu, C = case
    rng = np.random.default_rng(5)

    def HY(d):
        return obj.hessian_Y(YN, W, mu, C, d)

    def HW(d):
        return obj.hessian_W(YN, W, mu, C, *d)

    assert dot_test(HY, HY, random_like(YN, rng), random_like(YN, rng), tol=1e-10).passed
    assert dot_test(HW, HW, random_like((W, mu), rng), random_like((W, mu), rng), tol=1e-10).passed


def test_value_and_gradient_agree(case):
    obj, YN, W, mu, C = case
    val, grads = obj.value_and_gradient(YN, W, mu, C)
    assert val == pytest.approx(obj.value(YN, W, mu, C), rel=1e-14)
    for a, b in zip(grads, obj.gradient(YN, W, mu, C), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14)


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
        (np.array([0, 1]), 0, r"n_classes must be a positive integer"),
    ],
)
def test_label_validation(C, n_classes, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxCrossEntropy().prepare_labels(C, n_classes)


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


@pytest.mark.parametrize(("obj", "n_classes"), list(zip(OBJECTIVES, N_CLASSES, strict=True)), ids=IDS)
def test_float32_keeps_dtype(obj, n_classes):
    YN, W, mu, C = problem(obj, n_classes, dtype=np.float32)
    val, grads = obj.value_and_gradient(YN, W, mu, C)
    ref = obj.value(*(a.astype(np.float64) for a in (YN, W, mu, C)))
    assert val == pytest.approx(ref, rel=1e-5)
    assert all(g.dtype == np.float32 for g in grads)
    assert obj.hessian_Y(YN, W, mu, C, YN).dtype == np.float32
    assert all(h.dtype == np.float32 for h in obj.hessian_W(YN, W, mu, C, W, mu))


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
    assert obj.accuracy(*gpu) == obj.accuracy(*args)
    labels = cupy.asarray(np.random.default_rng(0).integers(0, n_classes, 5))
    assert isinstance(obj.prepare_labels(labels, n_classes), cupy.ndarray)
