"""Validation and conversion of class labels into the target matrices of the objectives.

Two forms of class labels are accepted everywhere:

* integer class indices: a 1-D integer array of length ``s`` with values in
  ``0, ..., n_classes - 1``;
* a one-hot matrix: a 2-D ``s x n_classes`` array of zeros and ones with exactly
  one 1 per row (any numeric dtype).

Anything else is rejected with a :class:`ValueError` that names the argument ``C``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..backend import get_array_module

Array = Any  # a NumPy or CuPy array

FORMS = (
    "integer class indices (1-D integer array with values in 0..n_classes-1) or a "
    "one-hot matrix (2-D, entries 0 or 1, exactly one 1 per row)"
)


def one_hot(C: Array, n_classes: int | None = None, dtype: DTypeLike = np.float64) -> Array:
    r"""Validate class labels ``C`` and return their one-hot matrix.

    Parameters
    ----------
    C : array
        Integer class indices, shape ``(s,)``, or a one-hot matrix, shape
        ``(s, n_classes)``; NumPy or CuPy.
    n_classes : int, optional
        Number of classes. Inferred as ``max(C) + 1`` for class indices and as the
        number of columns for a one-hot matrix when not given.
    dtype : dtype, optional
        Floating dtype of the result (default float64).

    Returns
    -------
    array
        :math:`C \in \{0, 1\}^{s \times n_\mathrm{classes}}`, one 1 per row, on the
        device of the input.

    Raises
    ------
    ValueError
        If ``C`` is neither form, holds NaN or inf, negative indices, indices
        ``>= n_classes``, entries other than 0 and 1, or rows of a one-hot matrix
        that do not sum to 1; or if ``n_classes`` is not a positive integer.
    """
    if n_classes is not None and (not isinstance(n_classes, (int, np.integer)) or n_classes < 1):
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    xp = get_array_module(C)
    C = xp.asarray(C)
    if C.ndim == 1:
        return _from_indices(xp, C, n_classes, dtype)
    if C.ndim == 2:
        return _from_one_hot(xp, C, n_classes, dtype)
    raise ValueError(f"C must be {FORMS}; got a {C.ndim}-D array of shape {C.shape}")


def _from_indices(xp: Any, C: Array, n_classes: int | None, dtype: DTypeLike) -> Array:
    if not np.issubdtype(C.dtype, np.integer):
        raise ValueError(
            f"C must be {FORMS}; got a 1-D array of dtype {C.dtype} (class indices "
            "must have an integer dtype)"
        )
    if C.size == 0 and n_classes is None:
        raise ValueError("C is empty; pass n_classes to build its (0, n_classes) target matrix")
    if C.size:
        low, high = int(C.min()), int(C.max())
        if low < 0:
            raise ValueError(f"C must be {FORMS}; got a negative class index {low}")
        if n_classes is None:
            n_classes = high + 1
        elif high >= n_classes:
            raise ValueError(
                f"C must be {FORMS}; got class index {high} >= n_classes = {n_classes}"
            )
    T = xp.zeros((C.shape[0], n_classes), dtype=dtype)
    T[xp.arange(C.shape[0]), C] = 1
    return T


def _from_one_hot(xp: Any, C: Array, n_classes: int | None, dtype: DTypeLike) -> Array:
    if n_classes is not None and C.shape[1] != n_classes:
        raise ValueError(
            f"C as a one-hot matrix must have n_classes = {n_classes} columns, got shape {C.shape}"
        )
    if np.issubdtype(C.dtype, np.inexact) and not bool(xp.isfinite(C).all()):
        raise ValueError(f"C contains NaN or inf; expected {FORMS}")
    if not bool(((C == 0) | (C == 1)).all()):
        raise ValueError(f"C as a 2-D array must have entries 0 or 1; expected {FORMS}")
    row_sums = C.sum(axis=1)
    bad = xp.flatnonzero(row_sums != 1)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"C rows must each hold exactly one 1 (row {i} holds {int(row_sums[i])}); "
            f"expected {FORMS}"
        )
    return C.astype(dtype)

