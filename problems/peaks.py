"""Level sets of MATLAB's ``peaks`` function (Haber & Ruthotto 2017, section 6)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from ocdl.problems.dataset import Dataset, positive_int

from ocdl.validation import random_generator

DOMAIN = (-3.0, 3.0)
"""Interval of both coordinates of the grid."""


def peaks_function(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    r"""Evaluate MATLAB's ``peaks`` function (broadcasting ``x`` against ``y``).

    .. math::

        z = 3 (1 - x)^2 e^{-x^2 - (y + 1)^2}
            - 10 \left(\frac{x}{5} - x^3 - y^5\right) e^{-x^2 - y^2}
            - \frac{1}{3} e^{-(x + 1)^2 - y^2}
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (
        3.0 * (1.0 - x) ** 2 * np.exp(-(x**2) - (y + 1.0) ** 2)
        - 10.0 * (x / 5.0 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - np.exp(-((x + 1.0) ** 2) - y**2) / 3.0
    )


def peaks(
    n_per_class: int = 1000,
    grid: int = 256,
    n_classes: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    r"""Grid points of :math:`[-3, 3]^2` labelled by the value band of ``peaks``.

    On the ``grid x grid`` points :math:`(x, y)` of ``linspace(-3, 3, grid)``,
    :math:`z =` :func:`peaks_function` is split into ``n_classes`` bands of equal
    width between :math:`z_{\min}` and :math:`z_{\max}`; a point is in class
    :math:`c` when

    .. math:: z_{\min} + c\,w \le z < z_{\min} + (c + 1)\,w,
              \qquad w = (z_{\max} - z_{\min}) / n_{\mathrm{classes}}

    (the maximum itself is in the last class). ``n_per_class`` points are drawn
    without replacement from the grid points of each class, and
    ``round(val_fraction * n_per_class)`` of them per class go to validation
    (stratified split); the rows of each split are shuffled.

    Parameters
    ----------
    n_per_class : int, optional
        Points drawn per class. Default 1000.
    grid : int, optional
        Grid points per coordinate, at least 2. Default 256.
    n_classes : int, optional
        Number of value bands, at least 2. Default 5.
    val_fraction : float, optional
        Fraction of each class held out for validation, in (0, 1). Default 0.2.
    seed : int, optional
        Seed of the random generator.

    Returns
    -------
    Dataset
        ``Y`` of shape ``(s, 2)`` holding ``(x, y)``; with the defaults 4000
        training and 1000 validation points, 800 and 200 per class.

    Raises
    ------
    ValueError
        For invalid arguments, or if a class has fewer than ``n_per_class`` grid
        points (use a finer ``grid``).
    """
    n_per_class = positive_int("n_per_class", n_per_class)
    grid = positive_int("grid", grid)
    n_classes = positive_int("n_classes", n_classes)
    if grid < 2:
        raise ValueError(f"grid must be at least 2, got {grid}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    n_val = round(val_fraction * n_per_class)
    if not 0 < n_val < n_per_class:
        raise ValueError(
            f"val_fraction={val_fraction} leaves {n_val} of n_per_class={n_per_class} "
            "points per class for validation; both splits must be non-empty"
        )

    axis = np.linspace(*DOMAIN, grid)
    x, y = (coordinate.ravel() for coordinate in np.meshgrid(axis, axis))
    z = peaks_function(x, y)
    edges = np.linspace(z.min(), z.max(), n_classes + 1)
    labels = np.digitize(z, edges[1:-1])

    rng = random_generator("seed", seed)
    train, val = [], []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if members.size < n_per_class:
            raise ValueError(
                f"class {c} has only {members.size} grid points, fewer than "
                f"n_per_class={n_per_class}; increase grid (now {grid})"
            )
        chosen = rng.choice(members, size=n_per_class, replace=False)
        val.append(chosen[:n_val])
        train.append(chosen[n_val:])
    train, val = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))

    Y = np.column_stack([x, y])
    C = labels.astype(np.int64)
    return Dataset(Y[train], C[train], Y[val], C[val], n_classes=n_classes, name="peaks")
