"""The training examples: rows of ``Y0`` with their targets, and sub-samples of them by index."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import Array, get_array_module
from ..validation import check_array


class Rows(NamedTuple):
    """A sub-sample of the training examples (see :meth:`ocdl.LearningProblem.rows`)."""

    Y0: Array
    """The examples, shape ``(count, n)``."""
    C: Array
    """Their rows of the target matrix, shape ``(count, m)``."""
    count: int
    """Their number."""


def check_examples(name: str, Y0: Array, width: int | None) -> Array:
    """``Y0`` checked as examples of a network of width ``width`` (free if ``None``): one per row.

    Parameters
    ----------
    name : str
        The argument's name in error messages.
    Y0 : array, shape ``(s, n)``
        Examples, floating (float32 or float64), finite, ``s >= 1``.
    width : int or None
        The network's width ``n``.

    Returns
    -------
    array
        ``Y0`` itself.

    Raises
    ------
    TypeError
        Not a NumPy or CuPy array of float32 or float64.
    ValueError
        Not 2-D, no row, NaN or Inf entries, or ``n`` not ``width``.
    """
    Y0 = check_array(name, Y0, ndim=2)
    if Y0.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example (one per row, s >= 1), got shape {Y0.shape}")
    if width is not None and Y0.shape[1] != width:
        raise ValueError(
            f"{name} must have the network's width n = {width} columns (one example per row), got shape {Y0.shape}"
        )
    return Y0


def check_indices(name: str, indices: Array | None, n_examples: int, like: Array) -> Array | None:
    """``indices`` checked as row indices of ``n_examples`` examples, on the device of ``like``.

    Parameters
    ----------
    name : str
        The argument's name in error messages.
    indices : array of int or None
        Non-empty, 1-D, values in ``0..n_examples-1`` (repeats allowed); ``None``
        stands for all examples and is returned as is.
    n_examples : int
        Number :math:`s` of examples.
    like : array
        An array on the device the indices are moved to (the examples).

    Raises
    ------
    ValueError
        Empty, not 1-D, not integers, or out of range.
    """
    if indices is None:
        return None
    idx = get_array_module(indices).asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"{name} must be a non-empty 1-D integer array of example indices, got "
            f"shape {idx.shape} and dtype {idx.dtype}"
        )
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= n_examples:
        raise ValueError(f"{name} must lie in 0..{n_examples - 1}, got values in {low}..{high}")
    return get_array_module(like).asarray(idx)


def share_of(idx: Array | None, first: int, count: int, n_examples: int) -> Array | None:
    """A worker's rows among the global example indices ``idx``: those in ``first .. first + count - 1``,
    less ``first`` (possibly none); ``idx`` itself when the worker holds all ``n_examples`` examples."""
    if idx is None or count == n_examples:
        return idx
    return idx[(idx >= first) & (idx < first + count)] - first
