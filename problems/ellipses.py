"""Two concentric ellipses (Haber & Ruthotto 2017, section 6)."""

from __future__ import annotations

import numpy as np
from ocdl.problems.dataset import Dataset, positive_int

from ocdl.validation import random_generator

ASPECT = 0.4
"""Ratio of the minor to the major semi-axis of the ellipses."""


def concentric_ellipses(n_points: int = 1200, n_val: int = 200, seed: int = 0) -> Dataset:
    r"""Points inside an ellipse (class 0) and in the elliptic ring around it (class 1).

    Each class has ``n_points / 2`` points

    .. math:: y = (r \cos t,\; 0.4\, r \sin t), \qquad t \sim U[0, 2\pi),

    with :math:`r \sim U[0, 1)` for class 0 and :math:`r \sim U[1, 2)` for class 1,
    so that :math:`\sqrt{y_1^2 + (y_2 / 0.4)^2} = r`. The points are shuffled and
    the first ``n_val`` become the validation set, the rest the training set.

    Parameters
    ----------
    n_points : int, optional
        Total number of points, even (the classes are balanced). Default 1200.
    n_val : int, optional
        Number of validation points, ``0 < n_val < n_points``. Default 200.
    seed : int, optional
        Seed of the random generator; the same seed gives the same arrays.

    Returns
    -------
    Dataset
        ``Y`` of shape ``(s, 2)``, two classes; 1000 training and 200
        validation points by default.
    """
    n_points = positive_int("n_points", n_points)
    if n_points % 2:
        raise ValueError(f"n_points must be even to balance the two classes, got {n_points}")
    n_val = positive_int("n_val", n_val)
    if n_val >= n_points:
        raise ValueError(f"n_val must be smaller than n_points={n_points}, got {n_val}")

    rng = random_generator("seed", seed)
    C = np.repeat(np.arange(2, dtype=np.int64), n_points // 2)
    r = C + rng.uniform(0.0, 1.0, n_points)
    t = rng.uniform(0.0, 2.0 * np.pi, n_points)
    Y = np.column_stack([r * np.cos(t), ASPECT * r * np.sin(t)])

    order = rng.permutation(n_points)
    val, train = order[:n_val], order[n_val:]
    return Dataset(Y[train], C[train], Y[val], C[val], n_classes=2, name="concentric_ellipses")
