"""HDF5 files of ocdl: parameters and training checkpoints, checksummed and written atomically.

A file holds a tree: a nested dict whose arrays become datasets, whose dicts
become groups, and whose other values (numbers, strings, lists, ``None``)
become JSON attributes. The root carries ``format`` (the kind of file, e.g.
``"ocdl-params"``) and ``format_version``, so that :func:`read_tree` can say
what is wrong with a file that is not ours.

Integrity (format version 2): the file's first 512 bytes are an HDF5 user
block, which HDF5 skips, holding the SHA-256 of the rest of the file;
:func:`read_tree` checks it before HDF5 parses anything, so a file changed by
a single bit after it was written is rejected (and cannot crash the HDF5
library). Every dataset is also written with HDF5's Fletcher-32 checksum
filter, so that h5py alone refuses a damaged dataset. Files of version 1 have
no checksums and are read unchecked, as are the temporary files of writes
that were killed (their user block is still blank; they are never renamed
into place).

Writes are atomic: the file goes to a temporary file in the target folder,
which is flushed, fsync'ed and renamed over the target (``os.replace``). An
interrupted write leaves the previous file intact, and a killed one a
temporary file (:func:`leftover_temporaries`), which the next completed write
of the same path removes. One process writes a path at a time (under MPI,
rank 0).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .backend import asnumpy
from .validation import check_array, check_dtype_of, is_integer

FORMAT_VERSION = 2
"""Version 2 added the checksums; version 1 files are still read."""

_RESERVED = ("format", "format_version")  # attributes of the root, not part of the tree
_USER_BLOCK = 512  # bytes before the HDF5 data: the checksum header
_MAGIC = b"ocdl sha256 "


class OcdlFileError(ValueError):
    """A file that is missing, truncated, corrupt, not HDF5, or not an ocdl file of the expected kind."""


def _h5py():
    import h5py  # imported lazily: the numerical core does not need it

    return h5py


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a new temporary file beside ``path``; once the block succeeds, fsync it and rename it over ``path``,
    and remove the temporaries of ``path`` that earlier writes, killed before their rename, left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the usual permissions (umask)
    try:
        yield tmp
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for stale in leftover_temporaries(path):
        stale.unlink(missing_ok=True)


def leftover_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files of ``path`` left by writes that were killed before their rename (e.g. by SIGKILL)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def write_file(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically by ``write(tmp)``, which writes a new file ``tmp`` beside it (e.g. a figure's
    ``savefig`` with an explicit format): a reader sees the old file or the new one, never a part."""
    path = Path(path)
    with _atomic(path) as tmp:
        write(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_file`)."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_group(group: Any, tree: dict, compression: str | None) -> None:
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"tree keys must be strings without '/', got {key!r} in {group.name}")
        if isinstance(value, dict):
            _write_group(group.create_group(key), value, compression)
        elif _is_dataset(value):
            data = asnumpy(value)
            group.create_dataset(key, data=data, fletcher32=True,
                                 compression=compression if data.size > 1024 else None)
        else:
            if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
                value = value.item()  # NumPy and CuPy scalars and 0-d arrays
            try:
                group.attrs[key] = json.dumps(value)
            except TypeError:
                raise TypeError(
                    f"tree entry {_entry(group, key)} is a {type(value).__name__}: neither an array nor JSON-able"
                ) from None


def _is_dataset(value: Any) -> bool:
    """Whether a tree's ``value`` is written as a dataset: an array of one or more dimensions (NumPy, CuPy); other
    values (0-d arrays and scalars among them) are JSON attributes."""
    return hasattr(value, "dtype") and hasattr(value, "nbytes") and getattr(value, "ndim", 0) > 0


def _arrays(tree: dict) -> Iterator[Any]:
    """The arrays of ``tree`` and its sub-trees that are written as datasets."""
    for value in tree.values():
        if isinstance(value, dict):
            yield from _arrays(value)
        elif _is_dataset(value):
            yield value


def write_tree(path: str | os.PathLike, tree: dict, kind: str, compression: str | None = None) -> Path:
    """Write ``tree`` to the HDF5 file ``path`` atomically, tagged as ``kind``, with checksums.

    Raises ``ValueError`` for a key that is not a string, holds ``'/'``, or
    is one of the root's own attributes (``format``, ``format_version``),
    ``TypeError`` for a value that is neither an array nor JSON-able, and
    ``OSError`` (``ENOSPC``) before writing where the folder has less room than
    the arrays need (uncompressed): HDF5's own failure on a full disk comes at
    close, as ``OSError`` or ``RuntimeError``, prints "Exception ignored"
    tracebacks and could crash the interpreter at exit.
    """
    h5py = _h5py()
    path = Path(path)
    reserved = [key for key in tree if key in _RESERVED]
    if reserved:
        raise ValueError(f"tree keys {reserved} are reserved for the file's own attributes {_RESERVED}")
    with _atomic(path) as tmp:
        needed = _USER_BLOCK + (1 << 16) + sum(array.nbytes for array in _arrays(tree))  # 64 KiB: HDF5's metadata
        free = shutil.disk_usage(tmp.parent).free
        if compression is None and free < needed:
            raise OSError(errno.ENOSPC, f"cannot write {path}: {os.strerror(errno.ENOSPC)} ({free:,} bytes free, "
                                        f"{needed:,} needed)")
        try:
            with h5py.File(tmp, "w", userblock_size=_USER_BLOCK) as f:
                f.attrs["format"] = kind
                f.attrs["format_version"] = FORMAT_VERSION
                _write_group(f, tree, compression)
        except RuntimeError as error:  # HDF5 reports some failed writes so, with the errno in the message
            code = re.search(r"errno = (\d+)", str(error))
            if code is None:
                raise
            raise OSError(int(code.group(1)), f"cannot write {path}: {os.strerror(int(code.group(1)))}") from None
        with open(tmp, "rb+") as raw:
            raw.seek(_USER_BLOCK)
            header = _header(raw)
            raw.seek(0)
            raw.write(header)
    return path


def _header(raw: Any) -> bytes:
    """The user block that certifies the rest of the file: ``_MAGIC``, the SHA-256 of ``raw`` from its position."""
    digest = hashlib.sha256()
    while block := raw.read(1 << 20):
        digest.update(block)
    return (_MAGIC + digest.hexdigest().encode() + b"\n").ljust(_USER_BLOCK, b"\0")


def _checksum_state(path: Path) -> str:
    """``"verified"`` (the header matches), ``"blank"`` (zeros: a write killed before its end) or ``"absent"``.

    Raises :class:`OcdlFileError` if ``path`` has a checksum header that does not match the rest of the file.
    """
    with open(path, "rb") as raw:
        head = raw.read(_USER_BLOCK)
        if head.startswith(_MAGIC):
            if head != _header(raw):
                raise OcdlFileError(
                    f"{path}: corrupt ocdl file (damaged or truncated): its bytes do not match the checksum "
                    "written with it"
                )
            return "verified"
    return "blank" if head == bytes(_USER_BLOCK) else "absent"


def _entry(group: Any, key: str) -> str:
    """The path of ``key`` in ``group`` in messages: ``levels/0/W``."""
    return f"{group.name}/{key}".lstrip("/")


def _read_group(group: Any) -> dict:
    h5py = _h5py()
    out: dict = {}
    for key, text in group.attrs.items():
        if group.name != "/" or key not in _RESERVED:
            if not isinstance(text, str):
                raise TypeError(f"attribute {_entry(group, key)} is a {type(text).__name__}, not JSON text")
            out[key] = json.loads(text)
    for key in group:
        item = group.get(key)
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item)
        elif isinstance(item, h5py.Dataset):
            out[key] = item[()]
        else:
            raise ValueError(f"{_entry(group, key)} is a broken link")
    return out


def _version(f: Any, path: Path, kind: str) -> int:
    """The format version of the open file ``f``, after checking that it is an ocdl file of ``kind`` we can read."""
    found = f.attrs.get("format")
    if found is None:
        raise OcdlFileError(f"{path}: an HDF5 file, but not written by ocdl (no 'format' attribute)")
    found = found.decode() if isinstance(found, bytes) else str(found)
    if found != kind:
        raise OcdlFileError(f"{path}: an ocdl file of kind {found!r}, expected {kind!r}")
    version = f.attrs.get("format_version")
    if not is_integer(version) or version < 1:
        raise OcdlFileError(f"{path}: corrupt ocdl file: format_version must be an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise OcdlFileError(
            f"{path}: format version {version} is newer than this ocdl ({FORMAT_VERSION}); upgrade ocdl"
        )
    return int(version)


def read_tree(path: str | os.PathLike, kind: str) -> dict:
    """Read a tree written by :func:`write_tree` with the same ``kind``, verifying its checksum.

    Raises :class:`OcdlFileError` naming the file and saying whether it is
    missing, not HDF5 (or truncated), not an ocdl file, of another kind, of a
    newer format version, or corrupt (its checksum does not match, or h5py
    cannot read a part of it).
    """
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise OcdlFileError(f"{path}: no such file")
    if not path.is_file():
        raise OcdlFileError(f"{path}: not a file")
    try:
        checksum = _checksum_state(path)
        f = h5py.File(path, "r")
    except OcdlFileError:
        raise
    except (OSError, RuntimeError, ValueError) as err:
        raise OcdlFileError(f"{path}: not a readable HDF5 file (truncated or another format): {err}") from None
    try:
        with f:
            version = _version(f, path, kind)
            if version >= 2 and checksum == "absent":
                raise OcdlFileError(f"{path}: corrupt ocdl file: its checksum header (format {version}) is damaged")
            return _read_group(f)
    except OcdlFileError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise OcdlFileError(f"{path}: corrupt or not an ocdl file: {' '.join(str(err).split())}") from None


_PARAMS = {"theta": 1, "W": 2, "mu": 1}  # the datasets of a params file and their dimensions


def save_params(path: str | os.PathLike, theta: Any, W: Any, mu: Any, settings: dict | None = None) -> Path:
    """Write trained parameters: datasets ``theta``, ``W``, ``mu`` and the ``settings`` as attributes.

    Parameters
    ----------
    path : str or os.PathLike
        The file (kind ``"ocdl-params"``), written atomically.
    theta : array, shape (p,)
        The network's parameters; NumPy or CuPy, float32 or float64 (as ``W`` and ``mu``).
    W : array, shape (n, m)
        The classifier's weights.
    mu : array, shape (m,)
        The classifier's biases.
    settings : dict, optional
        JSON-able values, stored as attributes ``setting_<name>``.

    Raises
    ------
    TypeError
        If a parameter is not a floating-point array, the parameters' dtypes differ, or ``settings`` is not a
        dict.
    ValueError
        If a parameter has the wrong dimensions or ``mu`` does not fit ``W``.
    """
    check_array("theta", theta, shape=(None,), finite=False)
    check_array("W", W, shape=(None, None), finite=False)
    check_array("mu", mu, shape=(W.shape[1],), finite=False)
    for name, x in (("W", W), ("mu", mu)):  # one precision per file: load_params hands back what was trained
        check_dtype_of(name, x, "theta", theta)
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict, got {type(settings).__name__}")
    tree = {"theta": theta, "W": W, "mu": mu}
    tree.update({f"setting_{k}": v for k, v in (settings or {}).items()})
    return write_tree(path, tree, "ocdl-params")


def load_params(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_params`: ``theta``, ``W``, ``mu`` (NumPy arrays) and ``settings``.

    Raises :class:`OcdlFileError` naming the file for anything :func:`read_tree`
    rejects, and for a missing parameter or one that is not a floating-point
    dataset of its dimensions (``mu`` one entry per column of ``W``).
    """
    tree = read_tree(path, "ocdl-params")
    missing = [k for k in _PARAMS if k not in tree]
    if missing:
        raise OcdlFileError(f"{path}: ocdl params file lacks {', '.join(missing)}")
    for name, ndim in _PARAMS.items():
        x = tree[name]
        if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64) or x.ndim != ndim:
            found = f"dtype {x.dtype}, shape {x.shape}" if isinstance(x, np.ndarray) else f"a {type(x).__name__}"
            raise OcdlFileError(f"{path}: {name} must be a {ndim}-D float32 or float64 dataset, found {found}")
    if tree["mu"].shape[0] != tree["W"].shape[1]:
        raise OcdlFileError(f"{path}: mu has {tree['mu'].shape[0]} entries, W {tree['W'].shape[1]} columns")
    settings = {k[len("setting_"):]: tree.pop(k) for k in list(tree) if k.startswith("setting_")}
    return {"theta": tree["theta"], "W": tree["W"], "mu": tree["mu"], "settings": settings}
