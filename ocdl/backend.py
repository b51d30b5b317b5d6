"""Array backend: NumPy on the CPU, CuPy on the GPU, decided by the arrays in hand.

Numerical code never branches on the device; it asks :func:`get_array_module`
for the module that owns its inputs and calls that module's functions.
"""

from __future__ import annotations

import os
import platform
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


def _require_gpu() -> None:
    """Raise the one error for ``device="gpu"`` where :func:`cupy_available` is False."""
    if not cupy_available():
        raise RuntimeError("device='gpu' needs CuPy and a CUDA device; install ocdl[gpu] or use device='cpu'")


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
        _require_gpu()
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


def memory_bytes(device: str) -> int:
    """Bytes that new arrays on ``device`` (``"cpu"`` or ``"gpu"``) may take.

    ``"gpu"``: the free memory of the current CUDA device
    (``cupy.cuda.Device().mem_info``) plus the blocks CuPy's memory pool holds
    unused, so what the data, other processes and earlier arrays already
    occupy is left out. ``"cpu"``: the host's physical memory (4 GiB where
    the system does not say): the operating system pages out and drops caches
    to make room, so what is free at one moment understates what a run can use.
    """
    if device == "gpu":
        _require_gpu()
        free, _ = _cupy.cuda.Device().mem_info
        return int(free) + int(_cupy.get_default_memory_pool().free_bytes())
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - depends on the system
        return 1 << 33


def cpu_model() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``; elsewhere what :mod:`platform` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - depends on the system
        pass
    return platform.processor() or platform.machine()  # pragma: no cover - depends on the system


def usable_cpus() -> int:
    """The logical CPUs this process may run on (its affinity mask where the system has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def device_name(device: str) -> str:
    """What ``device`` is on this machine, for a run's records.

    ``"cpu"``: the CPU's model and the logical CPUs this process may run on
    (e.g. ``"Intel(R) Xeon(R) Processor, 2 logical CPUs"``); ``"gpu"``: the
    name of the current CUDA device (e.g. ``"NVIDIA H200"``).
    """
    if device == "gpu":
        _require_gpu()
        name = _cupy.cuda.runtime.getDeviceProperties(_cupy.cuda.Device().id)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    return f"{cpu_model()}, {usable_cpus()} logical CPUs"


#: Words by which CUDA libraries report a failed allocation (cuBLAS, cuFFT, cuSOLVER: ``*_ALLOC_FAILED``;
#: the runtime: ``cudaErrorMemoryAllocation``; the driver, through which CuPy loads and launches the compiled
#: kernels: ``CUDA_ERROR_OUT_OF_MEMORY``); CuPy's own allocator raises a ``MemoryError``.
_ALLOCATION_FAILED = ("ALLOC_FAILED", "cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY")


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a failed allocation on the host or the GPU.

    True for a ``MemoryError`` (NumPy's, and CuPy's
    ``cupy.cuda.memory.OutOfMemoryError``) and for a CUDA library's error that
    reports a failed allocation (cuBLAS, cuFFT, cuSOLVER, the CUDA runtime and driver).
    """
    if isinstance(err, MemoryError):
        return True
    return type(err).__module__.startswith("cupy") and any(word in str(err) for word in _ALLOCATION_FAILED)
