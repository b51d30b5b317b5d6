"""The targets of the training examples: class labels or regression targets as the objective's target matrix.

Class labels take the two forms of :mod:`ocdl.objectives.labels` (integer
class indices or a one-hot matrix), validated there; the objective turns them
into its ``(s, m)`` target matrix (:meth:`ocdl.Objective.prepare_labels`) and
gives back each example's class (:meth:`ocdl.Objective.classes_of_targets`).
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, get_array_module
from ..objectives import Objective, one_hot
from ..validation import check_array


class Targets(NamedTuple):
    """The targets of ``s`` training examples."""

    C: Array
    """The target matrix, shape ``(s, m)``, in the examples' dtype."""
    n_classes: int
    """Number of classes (regression: ``m``)."""
    classes: Array
    """Class index of each example, shape ``(s,)`` (regression: the column of the largest target)."""


def training_targets(
    objective: Objective, C: Array, like: Array, n_classes: int | None = None, regression: bool = False
) -> Targets:
    """The targets of the examples ``like`` (one per row) from their labels ``C``.

    Parameters
    ----------
    objective : Objective
        Builds the target matrix from class labels.
    C : array
        Class indices ``(s,)`` or a one-hot matrix ``(s, n_classes)``; with
        ``regression``: the real target matrix ``(s, m)``, used as is.
    like : array, shape ``(s, n)``
        The examples: their number of rows, device and dtype.
    n_classes : int, optional
        Number of classes, at least 2; inferred from ``C`` when not given (then
        every class ``0..max(C)`` must have an example). Not with ``regression``.
    regression : bool
        ``C`` is a real target matrix; its classes are the ``argmax`` over columns.

    Raises
    ------
    ValueError
        ``C`` without one row per example, labels of neither form, fewer
        than two classes, an inferred class without an example,
        ``n_classes`` given with ``regression``, or a target matrix the
        objective rejects (:meth:`~ocdl.Objective.check_targets`).
    """
    C = get_array_module(like).asarray(C)
    s = like.shape[0]
    if C.ndim < 1 or C.shape[0] != s:
        raise ValueError(
            f"C must hold one label (row) per example, i.e. per row of Y0 (s = {s}), got shape {C.shape}"
        )
    if regression:
        if n_classes is not None:
            raise ValueError("n_classes must be None with regression=True (C is the target matrix)")
        C = objective.check_targets(check_array("C", C, ndim=2).astype(like.dtype))
        n_classes = C.shape[1]
    else:
        n_classes = one_hot(C, n_classes).shape[1]  # validates C; infers n_classes
        C = objective.prepare_labels(C, n_classes, like.dtype)
    return Targets(C, n_classes, objective.classes_of_targets(C))


def class_indices(objective: Objective, C: Array, n_classes: int, like: Array, regression: bool = False) -> Array:
    """Class labels ``C`` (class indices or one-hot) validated and returned as class indices ``(s,)``
    on the device of ``like``; with ``regression``, ``C`` may also be a real target matrix of
    ``n_classes`` columns (any 2-D ``C``), whose classes are ``objective.classes_of_targets(C)``.

    Raises
    ------
    ValueError
        Labels of neither form, or a class index ``>= n_classes``; with
        ``regression``, a 2-D ``C`` not of ``n_classes`` columns or that the
        objective rejects.
    TypeError
        With ``regression``, a 2-D ``C`` not of float32 or float64.
    """
    C = get_array_module(like).asarray(C)
    if regression and C.ndim == 2:
        C = objective.check_targets(check_array("C", C, shape=(None, n_classes)))
        return objective.classes_of_targets(C)
    return one_hot(C, n_classes).argmax(axis=1)
