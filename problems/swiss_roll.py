"""Two interleaved spirals, the "swiss roll" (Haber & Ruthotto 2017, section 6)."""

from __future__ import annotations

import numpy as np
from ocdl.problems.dataset import Dataset, positive_int

from ocdl.validation import random_generator

GAP = 0.2
"""Radial offset of the class-1 spiral from the class-0 spiral."""

TURNS = 2
"""Number of full turns of each spiral (``t`` runs over ``[0, 2 pi TURNS]``)."""


def swiss_roll(n_per_class: int = 513, seed: int = 0) -> Dataset:
    r"""Points on two interleaved spirals, every other point held out for validation.

    With :math:`r_k = k / (m - 1)` and :math:`t_k = 4\pi r_k`, :math:`k = 0, \dots, m - 1`
    (``r = linspace(0, 1, m)``, ``t = linspace(0, 4 pi, m)``, ``m = n_per_class``),

    .. math::

        y_k^{(0)} = r_k (\cos t_k, \sin t_k), \qquad
        y_k^{(1)} = (r_k + 0.2) (\cos t_k, \sin t_k).

    Along each spiral the points with even ``k`` form the training set and those
    with odd ``k`` the validation set. The point set does not depend on ``seed``;
    the seed only shuffles the order of the rows within each split.

    Parameters
    ----------
    n_per_class : int, optional
        Points per spiral, at least 2. Default 513.
    seed : int, optional
        Seed of the random generator that orders the rows.

    Returns
    -------
    Dataset
        ``Y`` of shape ``(s, 2)``, two classes; with the default 2 x 257 training
        and 2 x 256 validation points.
    """
    n_per_class = positive_int("n_per_class", n_per_class)
    if n_per_class < 2:
        raise ValueError(f"n_per_class must be at least 2, got {n_per_class}")

    r = np.linspace(0.0, 1.0, n_per_class)
    t = np.linspace(0.0, 2.0 * np.pi * TURNS, n_per_class)
    direction = np.column_stack([np.cos(t), np.sin(t)])
    curves = [r[:, None] * direction, (r + GAP)[:, None] * direction]

    rng = random_generator("seed", seed)
    splits = []
    for start in (0, 1):
        Y = np.concatenate([curve[start::2] for curve in curves])
        C = np.repeat(np.arange(2, dtype=np.int64), [len(curve[start::2]) for curve in curves])
        order = rng.permutation(len(C))
        splits += [Y[order], C[order]]
    return Dataset(*splits, n_classes=2, name="swiss_roll")
