"""Chunked sweeps (``chunk_size``) and the kept output features of the learning problem.

The chunked sums are compared with the unchunked problem (one sweep over all
examples, an independent evaluation of the same formulas), and the shared
forward sweeps are counted on the network.
"""

from __future__ import annotations

import numpy as np
import pytest
from ocdl.solvers import BlockCoordinateDescent, multilevel

import ocdl
from ocdl.learning_problem import LearningProblem

OBJECTIVES = {"softmax": ocdl.SoftmaxCrossEntropy, "logistic": ocdl.LogisticCrossEntropy}


def problems(chunk_size, objective="softmax", kind="verlet", s=23, width=3, n_classes=3, seed=0):
    """The same problem unchunked and with ``chunk_size`` (23 rows: chunks of unequal size)."""
    rng = np.random.default_rng(seed)
    net = ocdl.network(kind, width, 4, 2.0)
    Y0 = rng.standard_normal((s, width))
    C = rng.integers(0, n_classes, s)
    C[:n_classes] = np.arange(n_classes)

    def make(size):
        return LearningProblem(net, OBJECTIVES[objective](), Y0, C, alpha_theta=0.1, alpha_W=0.05, chunk_size=size)

    theta = net.init_params(rng) + 0.1 * rng.standard_normal(net.n_params)
    W = rng.standard_normal((width, make(None).n_outputs))
    mu = rng.standard_normal(W.shape[1])
    return make(None), make(chunk_size), theta, W, mu, rng


@pytest.mark.parametrize("chunk_size", [1, 5, 22, 23, 100])
@pytest.mark.parametrize("objective,kind", [("softmax", "verlet"), ("logistic", "resnet")])
def test_chunked_value_gradient_and_products_equal_unchunked(chunk_size, objective, kind):
    whole, chunked, theta, W, mu, rng = problems(chunk_size, objective, kind)
    idx = np.array([0, 2, 3, 7, 8, 11, 12, 13, 19, 22])
    for indices in (None, idx):
        value, grads = whole.value_and_gradient(theta, W, mu, indices)
        value_c, grads_c = chunked.value_and_gradient(theta, W, mu, indices)
        assert value_c == pytest.approx(value, rel=1e-13)
        assert chunked.value(theta, W, mu, indices) == pytest.approx(value, rel=1e-13)
        for g, g_c in zip(grads, grads_c):
            np.testing.assert_allclose(g_c, g, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(chunked.features(theta, indices), whole.features(theta, indices), rtol=1e-14)
    v = rng.standard_normal(theta.size)
    for hessian in (None, idx[::2]):
        model = whole.theta_problem(W, mu, idx, hessian).model(theta)
        model_c = chunked.theta_problem(W, mu, idx, hessian).model(theta)
        assert model_c.value == pytest.approx(model.value, rel=1e-13)
        np.testing.assert_allclose(model_c.gradient, model.gradient, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(model_c.hessian_matvec(v), model.hessian_matvec(v), rtol=1e-12, atol=1e-15)
    Y_val = rng.standard_normal((9, W.shape[0]))
    C_val = rng.integers(0, whole.n_classes, 9)
    assert chunked.accuracy(theta, W, mu, Y_val, C_val) == whole.accuracy(theta, W, mu, Y_val, C_val)


def test_chunked_features_hold_the_result_and_one_chunk():
    """Each chunk's features go into the result at once: the sweep's memory is the result's and about one
    chunk's, not twice the result's (full-size MNIST: 0.9 GB). NumPy reports its arrays to tracemalloc."""
    import tracemalloc

    from ocdl.learning_problem.sweeps import propagate

    rng = np.random.default_rng(2)
    net = ocdl.network("resnet", 40, 3, 1.0)
    theta, Y0 = net.init_params(rng), rng.standard_normal((3000, 40))
    whole = net.forward(theta, Y0)
    tracemalloc.start()
    try:
        YN = propagate(net, theta, Y0, 150)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(YN, whole, rtol=1e-14, atol=1e-15)
    assert peak < 1.5 * YN.nbytes, (peak, YN.nbytes)


def test_chunk_size_is_checked():
    with pytest.raises(ValueError, match="chunk_size"):
        problems(0)
    with pytest.raises(ValueError, match="chunk_size"):
        problems(2.5)


class CountingNetwork(ocdl.Network):
    """Counts the examples propagated by forward sweeps, and the largest sweep."""

    def _count(self, Y0):
        self.rows_propagated = getattr(self, "rows_propagated", 0) + Y0.shape[0]
        self.largest_sweep = max(getattr(self, "largest_sweep", 0), Y0.shape[0])

    def trajectory(self, theta, Y0):
        self._count(Y0)
        return super().trajectory(theta, Y0)

    def forward(self, theta, Y0):
        self._count(Y0)
        return super().forward(theta, Y0)


def counting_problem(chunk_size=None):
    rng = np.random.default_rng(1)
    base = ocdl.network("resnet", 2, 4, 1.0)
    net = CountingNetwork(base.stepper, 4, 1.0)
    Y0 = rng.standard_normal((40, 2))
    C = (Y0[:, 0] > 0).astype(int)
    lp = LearningProblem(net, ocdl.LogisticCrossEntropy(), Y0, C, chunk_size=chunk_size)
    return lp, net, net.init_params(rng)


def test_features_are_kept_for_the_same_theta_and_indices_only():
    lp, net, theta = counting_problem()
    W, mu = lp.initial_classifier()
    YN = lp.features(theta)
    assert lp.features(theta) is YN and net.rows_propagated == 40
    lp.value(theta, W, mu)
    lp.accuracy(theta, W, mu)
    assert net.rows_propagated == 40  # the same sweep
    moved = theta.copy()
    moved[0] += 1e-3
    np.testing.assert_array_equal(lp.features(moved), lp.with_network(net).features(moved))
    assert not np.array_equal(lp.features(moved), YN)
    theta_before = theta.copy()
    theta[0] += 1e-3  # the same array changed in place: a new point
    np.testing.assert_array_equal(lp.features(theta), lp.features(moved))
    idx = np.arange(10)
    np.testing.assert_array_equal(lp.features(theta_before, idx), YN[:10])
    np.testing.assert_array_equal(lp.features(theta_before, idx[:5]), YN[:5])


def test_one_block_coordinate_descent_iteration_propagates_each_point_once():
    """Per iteration: the gradient's forward sweep, the Gauss-Newton states (the gradient's here)
    and the line search's trials; the next classifier, model and training accuracy reuse the last trial."""
    lp, net, theta = counting_problem()
    result = BlockCoordinateDescent(max_iter=3).minimize(lp, theta, progress=False)
    # Armijo halves the step from t0 = min(1, 2 t_prev) (1 at first): a step t took log2(t0 / t) + 1 trials
    assert not any(rec["gradient_fallback"] for rec in result.history)
    steps = [rec["step"] for rec in result.history]
    assert min(steps) < 1.0  # the warm start t0 = 2 t_prev is exercised
    starts = [1.0] + [min(1.0, 2 * t) for t in steps[:-1]]
    trials = [1 + round(np.log2(t0 / t)) for t0, t in zip(starts, steps)]
    # the best parameters (training accuracy, ties: the later) need a sweep for result.fun unless they are the last
    accuracy = [rec["train_accuracy"] for rec in result.history]
    best_is_last = accuracy[-1] == max(accuracy)
    # first classifier features (1 sweep), then per iteration the gradient (1) and the trials
    assert net.rows_propagated == 40 * (1 + 3 + sum(trials) + (0 if best_is_last else 1))


def test_chunks_bound_the_largest_sweep():
    lp, net, theta = counting_problem(chunk_size=16)
    whole, _, _ = counting_problem()
    result = BlockCoordinateDescent(max_iter=2).minimize(lp, theta, progress=False)
    expected = BlockCoordinateDescent(max_iter=2).minimize(whole, theta, progress=False)
    assert net.largest_sweep == 16
    # the same path: CG on the ill-conditioned Gauss-Newton system amplifies rounding (about 1e-6 here),
    # a wrong chunk weight would change the iterates by O(1)
    for key in ("step", "cg_iters"):
        assert [rec[key] for rec in result.history] == [rec[key] for rec in expected.history]
    a, b = result.x.theta, expected.x.theta
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)


def test_release_drops_the_kept_features_and_multilevel_releases_each_level():
    lp, net, theta = counting_problem()
    YN = lp.features(theta)
    lp.release()
    np.testing.assert_array_equal(lp.features(theta), YN)
    assert net.rows_propagated == 80  # propagated again
    result = multilevel(lp, theta, max_layers=8, solver=BlockCoordinateDescent(max_iter=1), progress=False)
    assert len(result.history) == 2
    before = net.rows_propagated
    lp.features(result.history[0]["result"].x.theta)  # the first level's best: released, propagated again
    assert net.rows_propagated == before + 40
