"""The CUDA source of a kernel file, completed with its element type, activation and sizes, compiled once.

A kernel file (``*.cu`` beside this module) is written for an element type
``T``, an activation ``activation(z, s, ds)`` and compile-time sizes; this
module prepends them and hands the source to CuPy's ``RawModule`` (NVRTC),
keeping one module per combination. Sizes known at compile time let the
compiler keep a pixel's output channels in registers.
"""

from __future__ import annotations

import weakref
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

#: Threads per block of every kernel (the gradient kernels' shared sums are sized by it).
BLOCK = 256
#: Blocks of a launch at most: the kernels stride over the rest (a full H200 holds about 1,000 such blocks).
MAX_BLOCKS = 4096
#: Blocks of a partial-sum kernel at most: the number of partial rows summed afterwards.
MAX_PARTIAL_BLOCKS = 1024

_C_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
_modules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@cache
def _kernel_file(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def source(name: str, dtype: Any, activation: str, **sizes: int) -> str:
    """The complete CUDA source of kernel file ``name`` for ``dtype``, the activation body and ``sizes``.

    ``activation`` is a statement setting ``s`` and ``ds`` from ``z``
    (:attr:`ocdl.activations.Activation.cuda`); ``sizes`` become ``#define``
    lines; ``common.cu`` (the grid-stride loop, the copy to shared memory)
    comes before the file.
    """
    lines = [f"typedef {_C_TYPES[np.dtype(dtype)]} T;", f"#define BLOCK {BLOCK}"]
    lines += [f"#define {key} {int(value)}" for key, value in sorted(sizes.items())]
    lines.append(f"__device__ __forceinline__ void activation(const T z, T& s, T& ds) {{ {activation} }}")
    return "\n".join(lines) + "\n" + _kernel_file("common.cu") + _kernel_file(name)


def function(xp, name: str, kernel: str, dtype: Any, activation: str = "s = z; ds = 1;", **sizes: int):
    """Kernel ``kernel`` of file ``name`` compiled by ``xp`` (CuPy's ``RawModule``), kept for later calls."""
    key = (name, kernel, np.dtype(dtype).str, activation, tuple(sorted(sizes.items())))
    cache = _modules.setdefault(xp, {})
    found = cache.get(key)
    if found is None:
        module = xp.RawModule(code=source(name, dtype, activation, **sizes))
        found = cache[key] = module.get_function(kernel)
    return found


def launch(kernel, threads: int, args: tuple) -> int:
    """Run ``kernel`` over ``threads`` threads (blocks of :data:`BLOCK`, at most :data:`MAX_BLOCKS`, the
    kernels striding over the rest); returns the number of blocks."""
    blocks = int(max(1, min(MAX_BLOCKS, -(-int(threads) // BLOCK))))
    kernel((blocks,), (BLOCK,), args)
    return blocks


def partial_blocks(items: int, per_block: int) -> int:
    """Blocks of a partial-sum kernel over ``items`` taken ``per_block`` at a time (at most
    :data:`MAX_PARTIAL_BLOCKS`, the blocks striding over the rest): the rows of partial sums."""
    return int(max(1, min(MAX_PARTIAL_BLOCKS, -(-int(items) // per_block))))
