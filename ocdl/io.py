"""HDF5 files of ocdl: parameters and training checkpoints, written atomically.

A file holds a tree: a nested dict whose arrays become datasets, whose dicts
become groups, and whose other values (numbers, strings, lists, ``None``)
become JSON attributes. The root carries ``format`` (the kind of file, e.g.
``"ocdl-params"``) and ``format_version``, so that :func:`read_tree` can say
what is wrong with a file that is not ours.

Writes are atomic: the tree goes to a temporary file in the target folder,
which is flushed, fsync'ed and renamed over the target (``os.replace``). An
interrupted write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .backend import asnumpy

FORMAT_VERSION = 1


class OcdlFileError(ValueError):
    """A file that is missing, truncated, not HDF5, or not an ocdl file of the expected kind."""


def _h5py():
    import h5py  # imported lazily: the numerical core does not need it

    return h5py


def _write_group(group: Any, tree: dict, compression: str | None) -> None:
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"tree keys must be strings without '/', got {key!r}")
        if isinstance(value, dict):
            _write_group(group.create_group(key), value, compression)
        elif hasattr(value, "shape") and hasattr(value, "dtype") and getattr(value, "ndim", 0) > 0:
            data = asnumpy(value)
            group.create_dataset(key, data=data, compression=compression if data.size > 1024 else None)
        else:
            if isinstance(value, (np.generic,)):
                value = value.item()
            group.attrs[key] = json.dumps(value)


def write_tree(path: str | os.PathLike, tree: dict, kind: str, compression: str | None = None) -> Path:
    """Write ``tree`` to the HDF5 file ``path`` atomically, tagged as ``kind``."""
    h5py = _h5py()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = kind
            f.attrs["format_version"] = FORMAT_VERSION
            _write_group(f, tree, compression)
            f.flush()
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_group(group: Any) -> dict:
    h5py = _h5py()
    reserved = ("format", "format_version")
    out: dict = {key: json.loads(value) for key, value in group.attrs.items() if key not in reserved}
    for key, item in group.items():
        out[key] = _read_group(item) if isinstance(item, h5py.Group) else item[()]
    return out


def read_tree(path: str | os.PathLike, kind: str) -> dict:
    """Read a tree written by :func:`write_tree` with the same ``kind``.

    Raises :class:`OcdlFileError` saying whether the file is missing, not
    HDF5 (or truncated), not an ocdl file, of another kind, or of a newer
    format version.
    """
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise OcdlFileError(f"{path}: no such file")
    if not path.is_file():
        raise OcdlFileError(f"{path}: not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise OcdlFileError(f"{path}: not a readable HDF5 file (truncated or another format): {err}") from None
    with f:
        found = f.attrs.get("format")
        if found is None:
            raise OcdlFileError(f"{path}: an HDF5 file, but not written by ocdl (no 'format' attribute)")
        found = found.decode() if isinstance(found, bytes) else str(found)
        if found != kind:
            raise OcdlFileError(f"{path}: an ocdl file of kind {found!r}, expected {kind!r}")
        version = int(f.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise OcdlFileError(
                f"{path}: format version {version} is newer than this ocdl ({FORMAT_VERSION}); upgrade ocdl"
            )
        try:
            return _read_group(f)
        except (OSError, KeyError, json.JSONDecodeError) as err:
            raise OcdlFileError(f"{path}: damaged ocdl file: {err}") from None


def save_params(path: str | os.PathLike, theta: Any, W: Any, mu: Any, settings: dict | None = None) -> Path:
    """Write trained parameters: datasets ``theta``, ``W``, ``mu`` and the ``settings`` as attributes."""
    tree = {"theta": theta, "W": W, "mu": mu}
    tree.update({f"setting_{k}": v for k, v in (settings or {}).items()})
    return write_tree(path, tree, "ocdl-params")


def load_params(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_params`: ``theta``, ``W``, ``mu`` and ``settings``."""
    tree = read_tree(path, "ocdl-params")
    missing = [k for k in ("theta", "W", "mu") if k not in tree]
    if missing:
        raise OcdlFileError(f"{path}: ocdl params file lacks {', '.join(missing)}")
    settings = {k[len("setting_"):]: tree.pop(k) for k in list(tree) if k.startswith("setting_")}
    return {"theta": tree["theta"], "W": tree["W"], "mu": np.atleast_1d(tree["mu"]), "settings": settings}
