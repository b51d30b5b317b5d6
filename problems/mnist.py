"""The MNIST handwritten digits with the split of Haber & Ruthotto (2017), section 6."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike
from ocdl.problems.dataset import Dataset, positive_int
from ocdl.problems.idx import read_idx_header, read_idx_rows

ENV_VAR = "OCDL_MNIST_DIR"
"""Environment variable naming the folder that holds the MNIST files."""

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""Names of the four IDX files; each may also carry a ``.gz`` suffix."""

_SHA256SUMS = """
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
"""
SHA256 = {name: digest for digest, name in map(str.split, _SHA256SUMS.strip().splitlines())}
"""Published SHA-256 sums of the original MNIST files, gzipped and decompressed."""

N_CLASSES = 10

SOURCE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
"""A mirror of the original MNIST files (torchvision's); ocdl never downloads them itself."""


def user_data_dir() -> Path:
    """The per-user MNIST folder: ``$XDG_DATA_HOME/ocdl/mnist``, by default ``~/.local/share/ocdl/mnist``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ocdl" / "mnist"


def default_data_dir() -> Path:
    """Return the folder the MNIST files are read from when none is given.

    In order: the folder named by the environment variable ``OCDL_MNIST_DIR``;
    the per-user folder :func:`user_data_dir` (``~/.local/share/ocdl/mnist``),
    wherever ocdl is installed; in a source checkout (an editable install),
    ``shared/data/mnist`` beside the checkout (``../shared/data/mnist`` from
    its root).

    Returns
    -------
    pathlib.Path
        An absolute path.

    Raises
    ------
    FileNotFoundError
        If ``OCDL_MNIST_DIR`` names no folder, or it is unset and no default
        folder exists; the message says where to get the files and how to
        point ocdl at them.
    """
    if os.environ.get(ENV_VAR):
        data_dir = Path(os.environ[ENV_VAR]).expanduser().absolute()
        if not data_dir.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={data_dir} is not a folder")
        return data_dir
    candidates = [user_data_dir().absolute()]
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        candidates.append(checkout.parent / "shared" / "data" / "mnist")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(
        f"MNIST data folder not found (looked in {looked}); put {', '.join(FILES.values())} (optionally .gz, "
        f"from {SOURCE}) in {candidates[0]}, or set {ENV_VAR} to their folder, or pass data_dir"
    )


def find_file(data_dir: Path, name: str) -> Path:
    """Return ``data_dir / name`` or, failing that, ``data_dir / (name + ".gz")``."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"MNIST file {name} (or {name}.gz) not found in {data_dir}")


def sha256(path: Path) -> str:
    """SHA-256 (hex) of the file ``path``, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path) -> None:
    """Check the SHA-256 sum of an MNIST file against the published one.

    Raises
    ------
    ValueError
        If the file name is not one of the MNIST files or the sum differs.
    """
    if path.name not in SHA256:
        raise ValueError(f"{path}: no published checksum for a file of this name")
    digest = sha256(path)
    if digest != SHA256[path.name]:
        raise ValueError(f"{path}: SHA-256 {digest} differs from the published {SHA256[path.name]}")


def files_digest(data_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 (hex) of the SHA-256 sums of the four MNIST files in ``data_dir`` (default :func:`default_data_dir`):
    equal for equal files, so that processes that each read a part of them can check they read the same data.

    Raises
    ------
    FileNotFoundError
        If the folder or a file is missing.
    """
    folder = _folder(data_dir)
    sums = [sha256(find_file(folder, name)) for name in FILES.values()]
    return hashlib.sha256(" ".join(sums).encode()).hexdigest()


def _folder(data_dir: str | os.PathLike | None) -> Path:
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"MNIST data folder {data_dir} does not exist; pass data_dir or set {ENV_VAR}"
        )
    return data_dir


def _load_pair(data_dir: Path, split: str, verify: bool,
               rows: Callable[[int], list[slice]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The images and labels of ``split`` (``"train"`` or ``"test"``), of the ranges ``rows(count)`` of rows,
    checked for consistency."""
    images_path = find_file(data_dir, FILES[f"{split}_images"])
    labels_path = find_file(data_dir, FILES[f"{split}_labels"])
    if verify:
        verify_checksum(images_path)
        verify_checksum(labels_path)
    images_header, labels_header = read_idx_header(images_path), read_idx_header(labels_path)
    if len(images_header.shape) != 3 or images_header.dtype != np.uint8 or 0 in images_header.shape[1:]:
        raise ValueError(
            f"{images_path}: expected unsigned bytes of shape (count, rows, columns), at least one pixel, "
            f"got {images_header.dtype} of shape {images_header.shape}"
        )
    if len(labels_header.shape) != 1 or labels_header.shape[0] != images_header.shape[0]:
        raise ValueError(
            f"{labels_path} holds labels of shape {labels_header.shape} for the "
            f"{images_header.shape[0]} images of {images_path}"
        )
    if not np.issubdtype(labels_header.dtype, np.integer):
        raise ValueError(f"{labels_path}: labels must be integers, got {labels_header.dtype}")
    ranges = rows(images_header.shape[0])
    images, labels = read_idx_rows(images_path, ranges), read_idx_rows(labels_path, ranges)
    for part in labels:
        if part.size and (part.min() < 0 or part.max() >= N_CLASSES):
            raise ValueError(f"{labels_path}: labels outside 0..{N_CLASSES - 1}")
    return images, [part.astype(np.int64) for part in labels]


def mnist(
    data_dir: str | os.PathLike | None = None,
    n_train: int = 50000,
    n_val: int = 10000,
    normalize: bool = True,
    dtype: DTypeLike = np.float64,
    limit: int | None = None,
    verify: bool = False,
    rows: Callable[[int], slice] | None = None,
) -> Dataset:
    """Load MNIST: first ``n_train`` training images, last ``n_val`` for validation, test set.

    As in the paper, the 60,000 training images give the training set (the
    first 50,000) and the validation set (the last 10,000); the 10,000 ``t10k``
    images are the test set. Each 28 x 28 image becomes a row of 784 values in
    channel x height x width order (``image_shape = (1, 28, 28)``), scaled from
    ``0..255`` to ``[0, 1]`` when ``normalize``. Any data set stored in the same
    four files (e.g. Fashion-MNIST) loads the same way.

    With ``rows``, only a part of each split is read (and held in memory):
    the rows ``rows(s)`` of a split of ``s`` examples, e.g. one worker's share
    ``rows=lambda s: ocdl.distributed.share_rows(s, reduction)``. The files are
    read piece by piece (:func:`ocdl.problems.idx.read_idx_rows`), so the
    memory holds that part of the images, not all of them.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or
        gzipped (``.gz``). Default: :func:`default_data_dir`.
    n_train, n_val : int, optional
        Sizes of the training and validation sets, taken from the start and the
        end of the training file; ``n_train + n_val`` must not exceed its length.
    normalize : bool, optional
        Divide the pixel values by 255. Default True.
    dtype : numpy dtype, optional
        Floating dtype of the features. Default float64.
    limit : int, optional
        Keep only the first ``limit`` examples of each split (for quick runs).
    verify : bool, optional
        Check the files' SHA-256 sums against the published ones. Default False.
    rows : callable, optional
        ``rows(s)``: the slice (step 1) of the ``s`` examples of a split
        (after ``limit``) to load. Default: all of them. The result's
        :attr:`~ocdl.problems.Dataset.part` records which rows it holds.

    Returns
    -------
    Dataset
        Features ``(s, 784)``, labels ``(s,)`` int64, ten classes, with a test split.

    Raises
    ------
    FileNotFoundError
        If the folder or a file is missing.
    ValueError
        For invalid arguments or inconsistent files (label count differs from
        image count, test images of another size than the training images,
        labels outside 0..9, checksum mismatch), or ``rows`` giving no slice
        of step 1.
    """
    n_train = positive_int("n_train", n_train)
    n_val = positive_int("n_val", n_val)
    if limit is not None:
        limit = positive_int("limit", limit)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    data_dir = _folder(data_dir)
    part = {}

    def kept(split: str, first: int, count: int) -> slice:
        """The rows of the file to read for ``split``, ``count`` examples from row ``first`` (before ``limit``
        and ``rows``), recording in ``part`` where they lie in the split."""
        count = min(count, limit or count)
        mine = slice(0, count) if rows is None else rows(count)
        if not isinstance(mine, slice) or mine.indices(count)[2] != 1:
            raise ValueError(f"rows({count}) must give a slice of step 1, got {mine!r}")
        start, stop, _ = mine.indices(count)
        part[split] = (start, count)
        return slice(first + start, first + max(start, stop))

    def train_rows(n_total: int) -> list[slice]:
        if n_train + n_val > n_total:
            raise ValueError(
                f"n_train + n_val = {n_train + n_val} exceeds the {n_total} training images"
            )
        return [kept("train", 0, n_train), kept("val", n_total - n_val, n_val)]

    (train_images, val_images), (train_labels, val_labels) = _load_pair(data_dir, "train", verify, train_rows)
    (test_images,), (test_labels,) = _load_pair(data_dir, "test", verify, lambda n: [kept("test", 0, n)])
    if test_images.shape[1:] != train_images.shape[1:]:
        raise ValueError(
            f"{data_dir}: the test images are {test_images.shape[1]} x {test_images.shape[2]}, "
            f"the training images {train_images.shape[1]} x {train_images.shape[2]}"
        )

    def features(images: np.ndarray) -> np.ndarray:
        Y = images.reshape(images.shape[0], math.prod(images.shape[1:])).astype(dtype)
        if normalize:
            Y /= 255
        return Y

    return Dataset(
        features(train_images),
        train_labels,
        features(val_images),
        val_labels,
        n_classes=N_CLASSES,
        name="mnist",
        Y_test=features(test_images),
        C_test=test_labels,
        image_shape=(1, *train_images.shape[1:]),
        part=None if rows is None else part,
    )
