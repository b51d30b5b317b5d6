"""Input validation for the public entry points: clear errors that name the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import get_array_module


class PropagationError(FloatingPointError):
    """The forward propagation produced non-finite values (the step is unstable)."""


def check_array(
    name: str,
    x: Any,
    ndim: int | None = None,
    shape: tuple | None = None,
    finite: bool = True,
) -> Any:
    """Check that ``x`` is a floating-point array of the expected form.

    ``shape`` may hold ``None`` for free dimensions. Raises ``TypeError`` for
    non-arrays and integer arrays, ``ValueError`` for wrong dimension or shape
    and for NaN/Inf entries (when ``finite``).
    """
    xp = get_array_module(x)
    if not isinstance(x, xp.ndarray):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array (float32 or float64), got dtype {x.dtype}")
    expected_ndim = len(shape) if shape is not None else ndim
    if expected_ndim is not None and x.ndim != expected_ndim:
        form = "x".join("*" if d is None else str(d) for d in shape) if shape else f"{ndim}-D"
        raise ValueError(f"{name} must be {expected_ndim}-D of shape {form}, got shape {x.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(x.shape, shape)):
            if want is not None and got != want:
                form = " x ".join("*" if d is None else str(d) for d in shape)
                raise ValueError(
                    f"{name} must have shape {form}, got {x.shape} (axis {axis}: {got} != {want})"
                )
    if finite and not bool(xp.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf entries")
    return x


def check_positive(name: str, value: Any, integer: bool = False) -> Any:
    """Check a positive scalar (``integer=True``: a positive int)."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        return int(value)
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not is_number or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
