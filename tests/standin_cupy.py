"""A stand-in for CuPy on the CPU: arrays that are not NumPy's and, like CuPy's, will not mix with them.

``StandInArray`` is a NumPy subclass, so ``type(x) is np.ndarray`` fails for
it and ocdl's code takes the branches meant for CuPy arrays; an operation
that mixes it with a NumPy array (other than 0-d) raises ``TypeError``, as
CuPy does, and reductions and functions that give a number return 0-d
arrays. ``StandInModule`` wraps NumPy's functions (or ``scipy.fft``'s, for
``cupyx.scipy.fft``) to return stand-in arrays; ``empty`` and ``empty_like`` fill
theirs with 0xFF bytes (NaN, -1), as a GPU's memory pool hands back what an
earlier array left (NumPy's fresh pages are zeros): an entry read before it
is written shows. :func:`install` hands the stand-in to ``ocdl.backend`` as its CuPy,
with one 16 GiB "device" (``to_device(x, "gpu")``, ``device="gpu"``), and
registers it as ``cupy`` and ``cupyx.scipy.fft`` for code that imports them.
The device's memory, ``cuda.Device().mem_info``, is the module's
``device_mem_info`` (free, total bytes), and its memory pool holds
``pool_free_bytes`` unused, both for a test to set;
``cuda.memory.OutOfMemoryError`` is CuPy's exception, with its message, for
a test to raise. The device's name, PCI bus id (the module's ``pci_bus_id``,
for a test to set) and CUDA versions are made up
(``cuda.runtime.getDeviceProperties``, ``deviceGetPCIBusId``, ``driverGetVersion``,
``runtimeGetVersion``), its 4 multiprocessors and 48 KiB of shared memory per
block too (``getDeviceProperties``, ``Device().attributes``), and
``synchronize`` does nothing. ``RawModule`` and ``RawKernel`` compile CUDA
kernels for the CPU and run them (``cuda_emulator.py``; where
:func:`can_run_kernels`).
Copies to the host (``asnumpy``, ``float``, ``bool``, ``item``, ...) are
recorded in ``TRANSFERS``, by their number of entries.

``tests/test_array_module.py`` uses it per test; ``OCDL_STANDIN_CUPY=1
pytest -m gpu`` (``conftest.py``) runs the suite's GPU tests on it.
NumPy's functions that CuPy 14.2 lacks (``tests/data/cupy_names.txt``, :data:`CUPY_NAMES`) are
refused as CuPy refuses them: ``AttributeError`` from the module (``xp.geomspace``), ``TypeError``
from NumPy's dispatch to CuPy (``np.geomspace(x)`` on a device array).
Not emulated: an implicit conversion (``np.asarray`` of a CuPy array raises;
of a NumPy subclass it does not), and the arguments that CuPy's functions lack.
"""

from __future__ import annotations

import functools
import shutil
import sys
import types
from pathlib import Path

import cuda_emulator  # its RawModule and RawKernel (it reads StandInArray from here: attributes only)
import numpy as np
import scipy.fft

import ocdl.backend

#: The public names of CuPy 14.2's modules that the stand-in serves or dispatches to (``cupy.sum``,
#: ``cupy.linalg.norm``, ``cupyx.scipy.fft.dctn``, ...): ``tests/data/cupy_names.txt``, which says how it was made.
CUPY_NAMES = frozenset(line for line in Path(__file__).with_name("data").joinpath("cupy_names.txt").read_text(
    "utf-8").splitlines() if line and not line.startswith("#"))


class StandInArray(np.ndarray):
    """An array that ``type(x) is np.ndarray`` does not recognise and that, like CuPy's, will not
    mix with NumPy arrays: an operation on both raises ``TypeError`` instead of quietly computing
    on the CPU (0-d results and scalars mix, as in CuPy)."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_mixing(ufunc.__name__, inputs + (out or ()))
        plain = tuple(a.view(np.ndarray) if isinstance(a, StandInArray) else a for a in inputs)
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if isinstance(result, np.generic):  # CuPy's reductions return 0-d arrays, not scalars
            result = np.asarray(result)
        return _cast(result)

    def __array_function__(self, func, types, args, kwargs):
        # CuPy runs the function of its own of the same module and name (numpy.linalg.norm: cupy.linalg.norm)
        cupy_name = ".".join(["cupy", *func.__module__.split(".")[1:], func.__name__])
        if cupy_name not in CUPY_NAMES:
            raise TypeError(f"no implementation found for '{func.__module__}.{func.__name__}' on types that "
                            f"implement __array_function__: CuPy has no {cupy_name}")
        _refuse_mixing(func.__name__, _leaves((args, kwargs)))
        return _cast(func(*_plain(args), **_plain(kwargs)))

    def __setitem__(self, key, value):
        # a device value is copied on the device (NumPy would take a 0-d one through float())
        super().__setitem__(key, value.view(np.ndarray) if isinstance(value, StandInArray) else value)

    # Copies to the host, as CuPy makes them (each a synchronisation), recorded in TRANSFERS.
    def __float__(self):
        return float(_to_host(self))

    def __int__(self):
        return int(_to_host(self))

    def __index__(self):
        return _to_host(self).__index__()

    def __bool__(self):
        return bool(_to_host(self))

    def item(self, *args):
        return _to_host(self).item(*args)

    def tolist(self):
        return _to_host(self).tolist()


#: The number of entries of every copy from the stand-in "device" to the host, in order.
TRANSFERS: list[int] = []


def _to_host(x) -> np.ndarray:
    TRANSFERS.append(int(x.size))
    return x.view(np.ndarray)


def _leaves(x):
    if isinstance(x, (tuple, list)):
        return tuple(leaf for item in x for leaf in _leaves(item))
    if isinstance(x, dict):
        return _leaves(tuple(x.values()))
    return (x,)


def _plain(x):
    """``x`` with every stand-in array (also inside tuples, lists, dicts) viewed as a NumPy array."""
    if isinstance(x, StandInArray):
        return x.view(np.ndarray)
    if isinstance(x, (tuple, list)):
        return type(x)(_plain(item) for item in x)
    if isinstance(x, dict):
        return {key: _plain(value) for key, value in x.items()}
    return x


def _refuse_mixing(name, arrays):
    """CuPy's rule: NumPy arrays (other than 0-d) may be handed over alone, never mixed with device arrays."""
    if any(isinstance(a, StandInArray) for a in arrays) and any(type(a) is np.ndarray and a.ndim > 0 for a in arrays):
        raise TypeError(f"{name}: a stand-in array mixed with a NumPy array")


def _cast(result):
    if isinstance(result, np.generic):  # CuPy's functions return 0-d arrays, not scalars (cupy.sum, cupy.vdot)
        result = np.asarray(result)
    if type(result) is np.ndarray:
        return result.view(StandInArray)
    if isinstance(result, tuple):
        return tuple(_cast(r) for r in result)
    return result


#: The functions whose arrays hold what the memory pool's last user left there, on a GPU.
_UNINITIALISED = frozenset({"empty", "empty_like"})


class StandInModule(types.ModuleType):
    """The functions of ``source`` (NumPy by default), returning :class:`StandInArray`; ufuncs and
    types as they are. With ``source=scipy.fft`` it stands in for ``cupyx.scipy.fft``."""

    ndarray = StandInArray

    def __init__(self, name: str = "cupy", source: types.ModuleType = np) -> None:
        super().__init__(name)
        self._source = source

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if f"{self.__name__}.{name}" not in CUPY_NAMES:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (CuPy 14.2 lacks it)")
        attr = getattr(self._source, name)
        if isinstance(attr, (type, np.ufunc)) or not callable(attr):
            return attr  # ufuncs keep the subclass of their inputs

        uninitialised = name in _UNINITIALISED

        @functools.wraps(attr)
        def wrapped(*args, **kwargs):
            _refuse_mixing(name, _leaves((args, kwargs)))
            result = _cast(attr(*args, **kwargs))
            if uninitialised:
                result.view(np.uint8).fill(0xFF)  # what an earlier array left: NaN, -1
            return result

        return wrapped

    @staticmethod
    def asnumpy(x):
        return _to_host(x).copy() if isinstance(x, StandInArray) else np.asarray(x)


class OutOfMemoryError(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError``: a ``MemoryError`` with CuPy's message."""

    def __init__(self, size: int, total: int) -> None:
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes).")


class _Device:
    """``cupy.cuda.Device()`` of the stand-in ``module``: device 0, its memory the module's ``device_mem_info``."""

    id = 0

    def __init__(self, module: StandInModule) -> None:
        self._module = module

    @property
    def mem_info(self) -> tuple[int, int]:
        return self._module.device_mem_info

    @property
    def attributes(self) -> dict[str, int]:
        return {"MultiProcessorCount": 4, "MaxSharedMemoryPerBlock": 49152}

    def synchronize(self) -> None:
        pass


def can_run_kernels() -> bool:
    """Whether ``RawModule`` and ``RawKernel`` can run kernels here (g++ compiles them; tests skip otherwise)."""
    return shutil.which("g++") is not None


def install(monkeypatch=None) -> StandInModule:
    """Make the stand-in ocdl's CuPy (through ``monkeypatch`` if given, undone after the test) and return it."""
    module = StandInModule()
    module.__version__ = "stand-in"
    module.device_mem_info = (1 << 34, 1 << 34)  # one "device" of 16 GiB, all free: device="gpu" runs on it
    module.pool_free_bytes = 0
    module.RawModule, module.RawKernel = cuda_emulator.RawModule, cuda_emulator.RawKernel
    module.pci_bus_id = "0000:01:00.0"
    module.get_default_memory_pool = lambda: types.SimpleNamespace(
        free_bytes=lambda: module.pool_free_bytes, free_all_blocks=lambda: None)
    module.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: 1,
            getDeviceProperties=lambda device: {"name": b"stand-in", "totalGlobalMem": module.device_mem_info[1],
                                                "multiProcessorCount": 4, "sharedMemPerBlock": 49152},
            deviceGetPCIBusId=lambda device: module.pci_bus_id,
            driverGetVersion=lambda: 13000,
            runtimeGetVersion=lambda: 13000,
        ),
        Device=lambda device=None: _Device(module),
        memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
        get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),  # work is done at once
    )
    cupyx, cupyx_scipy = types.ModuleType("cupyx"), types.ModuleType("cupyx.scipy")
    cupyx_scipy.fft = StandInModule("cupyx.scipy.fft", scipy.fft)
    cupyx.scipy = cupyx_scipy
    setattr_ = setattr if monkeypatch is None else monkeypatch.setattr
    setattr_(ocdl.backend, "_cupy", module)
    modules = {"cupy": module, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy, "cupyx.scipy.fft": cupyx_scipy.fft}
    for name, mod in modules.items():
        if monkeypatch is None:
            sys.modules[name] = mod
        else:
            monkeypatch.setitem(sys.modules, name, mod)
    return module
