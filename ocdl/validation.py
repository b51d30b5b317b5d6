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
    """Check that ``x`` is a float32 or float64 array of the expected form.

    ``shape`` may hold ``None`` for free dimensions. Raises ``TypeError`` for
    non-arrays and for any dtype but float32 and float64 (integers, complex,
    and float16, whose range overflows in the propagation, or extended
    precision, which CuPy and BLAS lack); ``ValueError`` for wrong dimension or
    shape and for NaN/Inf entries (when ``finite``).
    """
    xp = get_array_module(x)
    if not isinstance(x, xp.ndarray):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(x).__name__}")
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):  # float32, float64 (either byte order)
        raise TypeError(f"{name} must be a floating-point array (float32 or float64), got dtype {x.dtype}")
    expected_ndim = len(shape) if shape is not None else ndim
    if expected_ndim is not None and x.ndim != expected_ndim:
        form = f" of shape {' x '.join('*' if d is None else str(d) for d in shape)}" if shape else ""
        raise ValueError(f"{name} must be {expected_ndim}-D{form}, got shape {x.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(x.shape, shape)):
            if want is not None and got != want:
                form = " x ".join("*" if d is None else str(d) for d in shape)
                raise ValueError(
                    f"{name} must have shape {form}, got {x.shape} (axis {axis}: {got} != {want})"
                )
    # min and max propagate NaN and reach +-Inf: two reductions that allocate nothing, where isfinite(x).all()
    # makes a boolean array of x's size first (235 MB for full-size MNIST's features, 0.1 to 3 s to fault in here)
    if finite and x.size and not (bool(xp.isfinite(x.min())) and bool(xp.isfinite(x.max()))):
        raise ValueError(f"{name} contains NaN or Inf entries")
    return x


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string or a float where a number or an integer belongs).

    A ``TypeError``, as Python has it, and a ``ValueError`` too, so that code
    catching ``ValueError`` for a bad setting catches it as well.
    """


def check_positive(name: str, value: Any, integer: bool = False) -> Any:
    """Check a positive scalar (``integer=True``: a positive int); returns ``int`` or ``float``.

    Integers are Python or NumPy integers, not bools, floats (even ``2.0``) or
    strings; numbers are real ints or floats. Raises
    :class:`ArgumentTypeError` for another type and ``ValueError`` for a value
    out of range (numbers: also NaN and Inf), naming ``name``.
    """
    return _check_scalar(name, value, integer, 0, strict=True)


def check_nonnegative(name: str, value: Any, integer: bool = False) -> Any:
    """Check a scalar ``>= 0`` (``integer=True``: a non-negative int); as :func:`check_positive`."""
    return _check_scalar(name, value, integer, 0, strict=False)


def check_above(name: str, value: Any, bound: float, integer: bool = False) -> Any:
    """Check a scalar ``> bound`` (``integer=True``: an int ``> bound``, said as ``>=`` the next one); as
    :func:`check_positive`, whose message states this bound."""
    return _check_scalar(name, value, integer, bound, strict=True)


def _check_scalar(name: str, value: Any, integer: bool, low: float, strict: bool) -> Any:
    if integer:
        least = int(np.floor(low)) + 1 if strict else int(np.ceil(low))
        if not is_integer(value):
            raise ArgumentTypeError(f"{name} must be an integer >= {least}, got {value!r}")
        if value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        return int(value)
    bound = f"{'>' if strict else '>='} {low:g}"
    if not is_real(value):
        raise ArgumentTypeError(f"{name} must be a finite number {bound}, got {value!r}")
    if not np.isfinite(value) or value < low or (strict and value == low):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (not a bool, a float such as ``2.0``, or a string)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy real number, integer or float (not a bool or a string)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_dtype_of(name: str, x: Any, of: str, like: Any) -> None:
    """Raise TypeError unless ``x`` has the dtype of ``like`` (named ``of`` in the message): one precision
    throughout, where NumPy would promote float32 to float64 in silence."""
    dtype = getattr(x, "dtype", None)
    if dtype != like.dtype:
        raise TypeError(f"{name} ({type(x).__name__ if dtype is None else dtype}) must have the dtype of {of} "
                        f"({like.dtype})")


def random_generator(name: str, seed: Any) -> np.random.Generator:
    """``numpy.random.default_rng(seed)``, with an error naming ``name`` for a seed NumPy refuses (its own
    messages name no argument) or a bool (which NumPy would take for 0 or 1)."""
    if not isinstance(seed, (bool, np.bool_)):
        try:
            return np.random.default_rng(seed)
        except (TypeError, ValueError):
            pass
    error = ValueError if is_integer(seed) else ArgumentTypeError  # a negative integer; else of a wrong type
    raise error(f"{name} must be None, an integer >= 0 or a numpy.random.Generator, got {seed!r}")


def missing_method(obj: Any, signature: str) -> str:
    """The message for a method that a subclass of ``obj``'s base must implement but did not."""
    return f"{type(obj).__name__} must implement {signature}"
