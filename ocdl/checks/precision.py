"""Derivative checks in float64, and a lower precision compared with float64."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import AgreementResult, _members, agreement, default_tol


def as_dtype(x: Any, dtype: Any) -> Any:
    """``x`` with every floating array member cast to ``dtype`` (on its device; tuples kept)."""
    if isinstance(x, (tuple, list)):
        return tuple(as_dtype(m, dtype) for m in x)
    if x is None or not np.issubdtype(getattr(x, "dtype", np.float64), np.floating):
        return x
    return x.astype(dtype, copy=False)


@dataclass
class PrecisionResult(AgreementResult):
    """A map computed in a lower precision against float64: the relative difference, and the
    dtypes it returned (``passed`` also needs every one to be the lower precision)."""

    dtype: str = "float32"
    returned: tuple = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.passed = self.passed and all(d == self.dtype for d in self.returned)

    def detail(self) -> str:
        wrong = sorted({d for d in self.returned if d != self.dtype})
        return f"; returned {', '.join(wrong)}, not {self.dtype}" if wrong else ""


def compare_precision(f: Callable, args: tuple, dtype: Any, tol: float | None = None) -> PrecisionResult:
    """``f(*args)`` in float64 against ``f`` on the arguments cast to ``dtype``.

    ``tol`` defaults to :func:`~ocdl.checks.core.default_tol` of ``dtype``
    (``1e3`` machine epsilons).
    """
    dtype = np.dtype(dtype)
    tol = default_tol(dtype) if tol is None else tol
    reference = f(*args)
    low = f(*as_dtype(args, dtype))
    diff = agreement(low, reference, tol)
    returned = tuple(np.dtype(m.dtype).name for m in _members(low) if getattr(m, "dtype", None) is not None)
    return PrecisionResult(rel_error=diff.rel_error, tol=tol, dtype=dtype.name, returned=returned)


def precision_rows(results: dict, dtype: Any, maps: dict, args: tuple) -> list[str]:
    """Add a ``"<dtype>: <name>"`` row per map (:func:`compare_precision` at ``args``) when
    ``dtype`` is not float64; return the report's notes saying how the checks ran."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return []
    for name, f in maps.items():
        results[f"{dtype.name}: {name}"] = compare_precision(f, args, dtype)
    return [
        f"the derivative tests ran in float64 (the data were {dtype.name}, which resolves Taylor "
        f"residuals only to about 1e-4); the {dtype.name} rows compare {dtype.name} results with float64 ones"
    ]
