"""Reading and writing the IDX file format of the MNIST database.

An IDX file is a header followed by the data (all integers big-endian):

* magic number, 4 bytes: ``0x00 0x00``, a type code, the number of dimensions ``d``;
* ``d`` sizes, 4-byte unsigned integers, outermost dimension first;
* the values in row-major (C) order, big-endian.

Type codes: ``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B`` 16-bit
integer, ``0x0C`` 32-bit integer, ``0x0D`` 32-bit float, ``0x0E`` 64-bit float.
Files may be gzip-compressed; the reader recognises them by their content
(bytes ``1f 8b``), not their name.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

TYPE_CODES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
"""IDX type code -> (native byte order) NumPy dtype."""

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class IDXFormatError(ValueError):
    """An IDX file does not follow the format (bad magic, size mismatch, ...)."""


class IDXHeader(NamedTuple):
    """Header of an IDX file: element type and array shape."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def data_bytes(self) -> int:
        """Number of data bytes the header announces."""
        return math.prod(self.shape) * self.dtype.itemsize


def _open(path: str | os.PathLike) -> BinaryIO:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    with path.open("rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else path.open("rb")


def _read_exactly(stream: BinaryIO, n_bytes: int, path: Path, what: str) -> bytes:
    data = stream.read(n_bytes)
    if len(data) < n_bytes:
        raise IDXFormatError(f"{path}: truncated {what}: expected {n_bytes} bytes, got {len(data)}")
    return data


def _read_header(stream: BinaryIO, path: Path) -> IDXHeader:
    magic = _read_exactly(stream, 4, path, "magic number")
    if magic[:2] != b"\x00\x00":
        raise IDXFormatError(
            f"{path}: wrong magic number 0x{magic.hex()}: an IDX file starts with two zero bytes"
        )
    if magic[2] not in TYPE_CODES:
        known = ", ".join(f"0x{code:02X}" for code in TYPE_CODES)
        raise IDXFormatError(f"{path}: unknown type code 0x{magic[2]:02X} (known: {known})")
    n_dims = magic[3]
    sizes = _read_exactly(stream, 4 * n_dims, path, f"header of {n_dims} dimension sizes")
    return IDXHeader(TYPE_CODES[magic[2]], struct.unpack(f">{n_dims}I", sizes))


def read_idx_header(path: str | os.PathLike) -> IDXHeader:
    """Read only the header of an IDX file (plain or gzip-compressed).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    IDXHeader
        ``(dtype, shape)`` of the stored array.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IDXFormatError
        If the magic number or type code is wrong or the header is truncated.
    """
    path = Path(path)
    try:
        with _open(path) as stream:
            return _read_header(stream, path)
    except _GZIP_ERRORS as error:
        raise IDXFormatError(f"{path}: corrupt gzip stream: {error}") from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        Array of the header's shape and dtype, in native byte order.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IDXFormatError
        If the magic number or type code is wrong, the data are shorter than the
        header announces (truncated) or longer (trailing bytes), or a gzip stream
        is corrupt.
    """
    header, (data,) = _read(Path(path), lambda header: [(0, math.prod(header.shape))])
    return data.reshape(header.shape)


def read_idx_rows(path: str | os.PathLike, rows: Sequence[slice]) -> list[np.ndarray]:
    """Read some rows (entries of the outermost dimension) of an IDX file, holding no other rows in memory.

    The file is read once from its start: a plain file by seeking to the
    rows, a gzip-compressed one (which has no random access) by decompressing
    the stream piece by piece and keeping only the bytes of the rows. The
    whole file is checked as by :func:`read_idx` (its length against the
    header; a gzip stream to its end, with its checksum).

    Parameters
    ----------
    path : str or os.PathLike
        The file, of at least one dimension.
    rows : sequence of slice
        Ranges of rows with step 1 (``slice(start, stop)``, as Python's
        slicing reads them against the number of rows), in increasing order
        and not overlapping.

    Returns
    -------
    list of numpy.ndarray
        Per slice, the rows ``array[rows[k]]`` of the stored ``array``, in native byte order.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If a slice has a step other than 1, or the slices are out of order or overlap.
    IDXFormatError
        As :func:`read_idx`, and for a file of no dimensions.
    """
    path = Path(path)

    def ranges(header: IDXHeader) -> list[tuple[int, int]]:
        if not header.shape:
            raise IDXFormatError(f"{path}: holds a single number (no dimensions), not rows")
        n_rows, row_size = header.shape[0], math.prod(header.shape[1:])
        bounds, previous = [], 0
        for piece in rows:
            start, stop, step = piece.indices(n_rows)
            if step != 1:
                raise ValueError(f"rows must be slices of step 1, got {piece}")
            if start < previous:
                raise ValueError(f"rows must be in increasing order without overlaps, got {list(rows)}")
            previous = max(start, stop)
            bounds.append((start * row_size, previous * row_size))
        return bounds

    header, parts = _read(path, ranges)
    counts = [len(range(*piece.indices(header.shape[0]))) for piece in rows]  # not -1: rows may hold no value
    return [part.reshape(count, *header.shape[1:]) for part, count in zip(parts, counts)]


_CHUNK = 1 << 18
"""Bytes read at once: what a gzip stream decompresses into temporary buffers (on Python 3.12 two copies of the
chunk: 0.7 MB at 256 kB, 2.3 MB at 1 MB; reading MNIST's training images takes 0.2 s either way)."""


def _read(path: Path, ranges: Callable[[IDXHeader], list[tuple[int, int]]]) -> tuple[IDXHeader, list[np.ndarray]]:
    """The header of the IDX file ``path`` and the values ``[start, stop)`` of each of the ``ranges(header)``
    (numbers of values into the data, increasing, not overlapping), read in one pass; then the file's length is
    checked against the header (a gzip stream decompressed to its end)."""
    try:
        with _open(path) as stream:
            header = _read_header(stream, path)
            offset = stream.tell()
            _check_room(path, stream, header, offset)
            stored = header.dtype.newbyteorder(">")
            parts = []
            for start, stop in ranges(header):
                stream.seek(offset + start * stored.itemsize)
                part = np.empty(stop - start, dtype=stored)
                _read_into(stream, memoryview(part.view(np.uint8)))
                parts.append(part)
            size = stream.seek(0, io.SEEK_END) - offset
    except _GZIP_ERRORS as error:
        raise IDXFormatError(f"{path}: corrupt gzip stream: {error}") from error
    expected = header.data_bytes
    if size < expected:
        raise IDXFormatError(
            f"{path}: truncated data: shape {header.shape} of {header.dtype} needs "
            f"{expected} bytes, got {size}"
        )
    if size > expected:
        raise IDXFormatError(
            f"{path}: {size - expected} trailing bytes: shape {header.shape} of "
            f"{header.dtype} needs {expected} bytes, got {size}"
        )
    return header, [part.astype(header.dtype, copy=False) for part in parts]


_DEFLATE_RATIO = 1032
"""The most bytes DEFLATE (gzip) decompresses one byte into: a gzip file of ``b`` bytes holds at most about
``1032 b`` bytes of data."""


def _check_room(path: Path, stream: BinaryIO, header: IDXHeader, offset: int) -> None:
    """Refuse, before any allocation, a header that announces more data than the file can hold: a plain file's
    bytes after the header (the exact check follows the reading), a gzip file's :data:`_DEFLATE_RATIO` times its
    size (a damaged header announced terabytes, which NumPy then failed to allocate)."""
    size = path.stat().st_size
    compressed = isinstance(stream, gzip.GzipFile)
    if header.data_bytes > (_DEFLATE_RATIO * size if compressed else size - offset):
        got = f"more than a gzip file of {size} bytes can hold" if compressed else f"got {size - offset}"
        raise IDXFormatError(f"{path}: truncated data: shape {header.shape} of {header.dtype} needs "
                             f"{header.data_bytes} bytes, {got}")


def _read_into(stream: BinaryIO, view: memoryview) -> None:
    """Fill ``view`` from ``stream``, :data:`_CHUNK` bytes at a time (a short file leaves the rest as it is:
    the length check after reading reports it)."""
    for start in range(0, len(view), _CHUNK):
        if stream.readinto(view[start : start + _CHUNK]) < min(_CHUNK, len(view) - start):
            return


def write_idx(path: str | os.PathLike, array: ArrayLike, compress: bool = False) -> Path:
    """Write an array as an IDX file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; overwritten if it exists.
    array : array_like
        Values of dtype uint8, int8, int16, int32, float32 or float64, with at
        most 255 dimensions, each smaller than ``2**32``.
    compress : bool, optional
        Write a gzip-compressed file. Default False.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If the dtype has no IDX type code or the shape does not fit the header.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    codes = {dtype: code for code, dtype in TYPE_CODES.items()}
    if native not in codes:
        names = ", ".join(str(dtype) for dtype in TYPE_CODES.values())
        raise ValueError(f"array dtype {array.dtype} has no IDX type code; use one of {names}")
    if array.ndim > 255 or any(size >= 2**32 for size in array.shape):
        raise ValueError(f"array shape {array.shape} does not fit an IDX header")

    header = bytes([0, 0, codes[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    path = Path(path)
    with gzip.open(path, "wb") if compress else path.open("wb") as f:
        f.write(header)
        f.write(data)
    return path
