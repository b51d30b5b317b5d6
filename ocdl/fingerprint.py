"""Fingerprints of data and of objects: what a resumed run compares with the run that wrote its checkpoint."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .backend import asnumpy


def digest(*arrays: Any) -> str:
    """SHA-256 (hex) of the arrays' dtypes, shapes and bytes, in order.

    CuPy arrays are copied to the host first; hashing reads every byte once
    (about a second per GB).
    """
    sha = hashlib.sha256()
    for array in arrays:
        host = np.ascontiguousarray(asnumpy(array))
        sha.update(f"{host.dtype.str}{host.shape};".encode())
        sha.update(host.reshape(-1).view(np.uint8))
    return sha.hexdigest()


def digest_rows(reduction: Any, *arrays: Any) -> str:
    """SHA-256 (hex) of arrays whose rows are split over the workers of ``reduction``, the same for every split.

    Per array: SHA-256 of its dtype, its global shape (the workers' rows in
    rank order, :meth:`~ocdl.reduction.Reduction.partition`) and the
    SHA-256 digests of its rows in that order; the result is the SHA-256 of
    these per-array digests. A collective operation (one
    :meth:`~ocdl.reduction.Reduction.gather` per array); CuPy arrays are
    copied to the host first.
    """
    sha = hashlib.sha256()
    for array in arrays:
        host = np.ascontiguousarray(asnumpy(array))
        rows = host.reshape(host.shape[0], -1)
        parts = reduction.gather(b"".join(hashlib.sha256(row).digest() for row in rows))
        n_rows = sum(len(part) for part in parts) // hashlib.sha256().digest_size
        whole = hashlib.sha256(f"{host.dtype.str}{(n_rows, *host.shape[1:])};".encode())
        for part in parts:
            whole.update(part)
        sha.update(whole.digest())
    return sha.hexdigest()


def describe(obj: Any, depth: int = 0) -> str:
    """A text that is equal for equal objects: the ``repr`` if the class defines one, else the class
    and its public attributes (arrays by content, :func:`digest`), three levels deep at most."""
    ndim = getattr(obj, "ndim", 0)
    if isinstance(ndim, int) and ndim > 0:  # an array (NumPy's module has a function ndim)
        return f"<{obj.dtype} array {obj.shape} sha256 {digest(obj)[:16]}>"
    kind = type(obj)
    if kind.__repr__ is not object.__repr__:
        return repr(obj)
    if depth > 2:  # an object nested this deep: its class only (no cycles)
        return kind.__qualname__
    params = ", ".join(
        f"{name}={describe(value, depth + 1)}"
        for name, value in sorted(getattr(obj, "__dict__", {}).items())
        if not name.startswith("_")
    )
    return f"{kind.__qualname__}({params})"
