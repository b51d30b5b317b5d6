"""Training on the concentric ellipses (Haber & Ruthotto 2017, section 6) by block coordinate descent.

Settings near the paper's: width 2, final time T = 20, tanh, softmax cross-entropy
(two classes), time-smoothness regularization alpha_theta = 1e-3, weight decay
alpha_W = 1e-3 on the classifier; 1000 training and 200 validation points.

What this test chose, and why: the paper trains multilevel from 4 to 1024
layers; here one fixed N = 16 (h = 1.25), full batch (all 1000 points for the
gradient and the Gauss-Newton matrix), 60 iterations with the defaults (2
Newton-PCG steps of 2 CG iterations on (W, mu), one Gauss-Newton-PCG step of at
most 20 CG iterations on theta), theta0 = ``network.init_params(0, scale=0.5)``.
A fixed N keeps the test at about 2 s. Multilevel from N = 4 is not used: at
T = 20 the coarse steps (h = 5, 2.5) are far outside the ODE regime, so the
prolongated network classifies very differently from the coarse one and each
level starts again from about 50 % validation accuracy.

``test_compare_architectures`` runs ResNet, antisymmetric ResNet and Verlet with
the same settings and prints iterations, time and accuracies (``pytest -s``);
it asserts no timing.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ocdl.problems import concentric_ellipses
from ocdl.solvers import BlockCoordinateDescent

import ocdl
from ocdl.experiments import PAPER_STEPPERS
from ocdl.learning_problem import LearningProblem

SETTINGS = dict(width=2, n_steps=16, final_time=20.0, alpha_theta=1e-3, alpha_W=1e-3, max_iter=60, seed=0)


@pytest.fixture(scope="module")
def runs():
    """One training run per architecture, computed once for the module."""
    data = concentric_ellipses()
    out = {}
    for kind in PAPER_STEPPERS:
        net = ocdl.network(kind, SETTINGS["width"], SETTINGS["n_steps"], SETTINGS["final_time"], activation="tanh")
        problem = LearningProblem(
            net,
            ocdl.SoftmaxCrossEntropy(),
            data.Y_train,
            data.C_train,
            alpha_theta=SETTINGS["alpha_theta"],
            alpha_W=SETTINGS["alpha_W"],
        )
        start = time.perf_counter()
        result = BlockCoordinateDescent(max_iter=SETTINGS["max_iter"]).minimize(
            problem,
            net.init_params(SETTINGS["seed"], scale=0.5),
            validation=(data.Y_val, data.C_val),
            rng=SETTINGS["seed"],
            progress=False,
        )
        out[kind] = (problem, result, time.perf_counter() - start)
    return data, out


def test_verlet_reaches_validation_accuracy(runs):
    # At least 198 of the 200 validation points. Exactly 200 was seen on one CPU and 199 on
    # another (AVX-512 tanh): the training path is sensitive to the last bits of the arithmetic.
    data, out = runs
    problem, result, _ = out["verlet"]
    val = result.trace("val_accuracy")
    assert val.max() >= 0.99
    theta, W, mu = result.x
    assert problem.accuracy(theta, W, mu, data.Y_val, data.C_val) == val.max()  # the returned parameters are the best
    assert problem.accuracy(theta, W, mu) >= 0.98
    assert result.history[-1]["objective"] < 0.2 * result.history[0]["objective"]


def test_compare_architectures(runs):
    _, out = runs
    lines = [
        f"concentric ellipses, BCD, {SETTINGS}",
        "kind            iters  first 100% val  best val  train@best  time [s]",
    ]
    for kind, (_, result, seconds) in out.items():
        val = result.trace("val_accuracy")
        hits = np.flatnonzero(val == 1.0)
        first = str(hits[0]) if hits.size else "-"
        best = result.history[int(np.flatnonzero(val == val.max())[-1])]
        train = best["train_accuracy"]
        lines.append(f"{kind:14s}  {result.nit:5d}  {first:>14s}  {val.max():8.3f}  {train:10.3f}  {seconds:8.2f}")
        assert val.max() >= 0.9, kind
    print("\n" + "\n".join(lines))
