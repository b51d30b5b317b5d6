"""The container every data set in :mod:`problems` returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocdl.validation import check_positive


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Training, validation and (optionally) test examples of a classification problem.

    Examples are rows: ``Y_train`` is ``s x n`` (``s`` examples with ``n``
    features each) and ``C_train`` holds the ``s`` integer class indices in
    ``0, ..., n_classes - 1``. The same holds for the validation and test splits.

    Parameters
    ----------
    Y_train, Y_val : numpy.ndarray
        Features, shape ``(s, n)``.
    C_train, C_val : numpy.ndarray
        Integer labels, shape ``(s,)``.
    n_classes : int
        Number of classes.
    name : str
        Short name of the data set.
    Y_test, C_test : numpy.ndarray or None, optional
        Test split, both given or both ``None``.
    image_shape : tuple of int or None, optional
        ``(channels, height, width)`` of one example when the rows are flattened
        images in that order, e.g. ``(1, 28, 28)`` for MNIST; its product is ``n``.
    part : dict or None, optional
        For a part of a larger data set (one worker's share of the examples,
        ``ocdl.problems.mnist(rows=...)``): per split (``"train"``, ``"val"``
        and ``"test"`` if present), ``(first, total)``: the ``s`` examples
        given are the examples ``first .. first + s - 1`` of that split's
        ``total``. ``None`` (default): the whole data set.

    Raises
    ------
    ValueError
        If shapes, label dtypes or label values are inconsistent.
    """

    Y_train: np.ndarray
    C_train: np.ndarray
    Y_val: np.ndarray
    C_val: np.ndarray
    n_classes: int
    name: str
    Y_test: np.ndarray | None = None
    C_test: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    part: dict[str, tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        check_positive("n_classes", self.n_classes, integer=True)
        if (self.Y_test is None) != (self.C_test is None):
            raise ValueError("Y_test and C_test must be given together")
        for split, Y, C in self._splits():
            self._check_split(split, Y, C)
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.n_features:
            raise ValueError(
                f"image_shape {self.image_shape} has {int(np.prod(self.image_shape))} "
                f"entries but the examples have {self.n_features} features"
            )
        if self.part is not None:
            self._check_part()

    def _check_part(self) -> None:
        splits = {split: Y.shape[0] for split, Y, _ in self._splits()}
        if set(self.part) != set(splits):
            raise ValueError(f"part must give (first, total) for the splits {sorted(splits)}, got {self.part!r}")
        for split, count in splits.items():
            first, total = self.part[split]
            if not 0 <= first <= first + count <= total:
                raise ValueError(f"part[{split!r}] = {(first, total)} does not hold the {count} examples of "
                                 f"Y_{split}: need 0 <= first and first + {count} <= total")

    def _splits(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        splits = [("train", self.Y_train, self.C_train), ("val", self.Y_val, self.C_val)]
        if self.Y_test is not None:
            splits.append(("test", self.Y_test, self.C_test))
        return splits

    def _check_split(self, split: str, Y: np.ndarray, C: np.ndarray) -> None:
        if Y.ndim != 2 or Y.shape[1] != self.Y_train.shape[1]:
            raise ValueError(
                f"Y_{split} must be 2-D with {self.Y_train.shape[1]} columns, got shape {Y.shape}"
            )
        if C.shape != (Y.shape[0],):
            raise ValueError(f"C_{split} must have shape ({Y.shape[0]},), got {C.shape}")
        if not np.issubdtype(C.dtype, np.integer):
            raise ValueError(f"C_{split} must hold integers, got dtype {C.dtype}")
        if C.size and (C.min() < 0 or C.max() >= self.n_classes):
            raise ValueError(f"C_{split} has labels outside 0..{self.n_classes - 1}")

    def whole_size(self, split: str) -> int:
        """Examples of ``split`` (``"train"``, ``"val"``, ``"test"``) in the whole data set (more than this
        Dataset holds when it is a :attr:`part`)."""
        sizes = {name: Y.shape[0] for name, Y, _ in self._splits()}
        if split not in sizes:
            raise ValueError(f"split must be one of {', '.join(map(repr, sizes))}, got {split!r}")
        return sizes[split] if self.part is None else self.part[split][1]

    @property
    def n_features(self) -> int:
        """Number of features ``n`` per example."""
        return self.Y_train.shape[1]

    def summary(self) -> str:
        """Return a multi-line description: shapes, dtypes, feature ranges, class counts."""
        lines = [repr(self)]
        for split, Y, C in self._splits():
            counts = np.bincount(C, minlength=self.n_classes).tolist()
            values = f" in [{Y.min():.3g}, {Y.max():.3g}]" if Y.size else ""
            lines.append(f"  {split:5s} Y {Y.shape} {Y.dtype}{values}, class counts {counts}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={Y.shape[0]}" + (f" of {self.part[split][1]}" if self.part else "")
                          for split, Y, _ in self._splits())
        image = f", image_shape={self.image_shape}" if self.image_shape is not None else ""
        return (
            f"Dataset(name={self.name!r}, n_classes={self.n_classes}, "
            f"n_features={self.n_features}{image}, {sizes})"
        )


def positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` after checking it is an integer ``>= 1`` (:func:`ocdl.validation.check_positive`)."""
    return check_positive(name, value, integer=True)
