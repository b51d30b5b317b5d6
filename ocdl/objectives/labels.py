"""Validation and conversion of class labels into the target matrices of the objectives.

Two forms of class labels are accepted everywhere:

* integer class indices: a 1-D integer array of length ``s`` with values in
  ``0, ..., n_classes - 1``;
* a one-hot matrix: a 2-D ``s x n_classes`` array of zeros and ones with exactly
  one 1 per row (any numeric dtype).

Anything else is rejected with a :class:`ValueError` that names the argument ``C``.
A classifier needs at least two classes. When ``n_classes`` is inferred (not
passed), every class ``0, ..., n_classes - 1`` must have an example, so that
1-based labels or a stray large label are errors instead of phantom classes;
pass ``n_classes`` when a class is genuinely absent from a sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..backend import Array, get_array_module
from ..validation import is_integer

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
        Number of classes, at least 2. Inferred as ``max(C) + 1`` for class
        indices (then every class ``0..max(C)`` must occur in ``C``) and as the
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
        that do not sum to 1; if ``n_classes`` is not an integer >= 2 (given, or
        inferred from a one-hot matrix's columns); or if ``n_classes`` is inferred
        from class indices and some class in ``0..max(C)`` has no example.
    """
    n_classes = check_n_classes(n_classes)
    xp = get_array_module(C)
    C = xp.asarray(C)
    if C.ndim == 1:
        return _from_indices(xp, C, n_classes, dtype)
    if C.ndim == 2:
        return _from_one_hot(xp, C, n_classes, dtype)
    raise ValueError(f"C must be {FORMS}; got a {C.ndim}-D array of shape {C.shape}")


def check_n_classes(n_classes: Any, required: bool = False) -> int | None:
    """``n_classes`` as an int >= 2 (``None`` stays ``None``, inferred from the labels,
    unless ``required``).

    Raises ValueError naming ``n_classes`` otherwise (a bool or float is not an int).
    """
    if n_classes is None and not required:
        return None
    if not is_integer(n_classes):
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if n_classes < 2:
        raise ValueError(
            f"n_classes must be an integer >= 2 (a classifier needs at least two classes), "
            f"got {n_classes!r}"
        )
    return int(n_classes)


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
            n_classes = _inferred_n_classes(xp, C, high)
        elif high >= n_classes:
            raise ValueError(
                f"C must be {FORMS}; got class index {high} >= n_classes = {n_classes}"
            )
    T = xp.zeros((C.shape[0], n_classes), dtype=dtype)
    T[xp.arange(C.shape[0]), C] = 1
    return T


def _inferred_n_classes(xp: Any, C: Array, high: int) -> int:
    """``max(C) + 1`` after checking that every class ``0..max(C)`` has an example.

    Uses no memory proportional to ``max(C)``: a stray huge label is refused
    (it exceeds the number of examples) before anything of that size is allocated.
    """
    n_classes, s = high + 1, int(C.shape[0])
    hint = "pass n_classes= explicitly when a class is genuinely absent from this sample"
    if n_classes > s:
        raise ValueError(
            f"C must be class indices 0..n_classes-1; the inferred n_classes = max(C) + 1 = "
            f"{n_classes} exceeds the number of examples ({s}), so some class has no example "
            f"(labels not numbered from 0, or a stray label?); {hint}"
        )
    present = xp.unique(C)  # sorted; present[i] >= i, equality for all i iff no gap
    if int(present.size) != n_classes:
        gaps = xp.flatnonzero(present != xp.arange(int(present.size)))
        missing = int(gaps[0]) if gaps.size else int(present.size)
        guess = " (labels numbered from 1?)" if missing == 0 else ""
        raise ValueError(
            f"C must be class indices 0..n_classes-1 with n_classes = max(C) + 1 = {n_classes} "
            f"inferred, but class {missing} has no example{guess}; {hint}"
        )
    if n_classes < 2:
        raise ValueError(
            "C holds a single class (all labels 0); a classifier needs n_classes >= 2: "
            f"{hint}"
        )
    return n_classes


def _from_one_hot(xp: Any, C: Array, n_classes: int | None, dtype: DTypeLike) -> Array:
    if n_classes is not None and C.shape[1] != n_classes:
        raise ValueError(
            f"C as a one-hot matrix must have n_classes = {n_classes} columns, got shape {C.shape}"
        )
    if n_classes is None and C.shape[1] < 2:
        raise ValueError(
            f"C as a one-hot matrix must have n_classes >= 2 columns (a classifier needs at "
            f"least two classes), got shape {C.shape}"
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

