"""Array backend: NumPy on the CPU, CuPy on the GPU, decided by the arrays in hand.

Numerical code never branches on the device; it asks :func:`get_array_module`
for the module that owns its inputs and calls that module's functions.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

Array = Any
"""A NumPy or CuPy array: the type of every array argument and result in ocdl (an alias for annotations)."""

try:  # CuPy is an optional extra (``pip install ocdl[gpu]``).
    import cupy as _cupy
except ImportError:  # pragma: no cover - depends on the machine
    _cupy = None


def cupy_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # pragma: no cover - no driver
        return False


def get_array_module(*arrays: Any) -> ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    ``None`` and Python scalars are ignored, so optional arguments can be
    passed through unchanged.
    """
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def to_device(x: Any, device: str = "cpu") -> Any:
    """Move an array to ``device`` (``"cpu"`` or ``"gpu"``); tuples are mapped."""
    if isinstance(x, tuple):
        return tuple(to_device(a, device) for a in x)
    if device == "cpu":
        return asnumpy(x)
    if device == "gpu":
        if not cupy_available():
            raise RuntimeError(
                "device='gpu' needs CuPy and a CUDA device; install ocdl[gpu] "
                "or use device='cpu'"
            )
        return _cupy.asarray(x)
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def asnumpy(x: Any) -> np.ndarray:
    """Return ``x`` as a NumPy array (a copy from the GPU if needed)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy.asnumpy(x)
    return np.asarray(x)


def device_of(x: Any) -> str:
    """``"gpu"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "gpu" if get_array_module(x) is not np else "cpu"
