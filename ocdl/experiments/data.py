"""The data of an experiment: the problem's data set, widened to the network's width by duplication."""

from __future__ import annotations

import numpy as np

from ocdl.problems import Dataset, concentric_ellipses, mnist, peaks, swiss_roll
from ocdl.problems.mnist import files_digest

from ..distributed import share_rows
from ..reduction import Reduction
from .settings import MNIST_IMAGE, Settings


def load_data(settings: Settings, reduction: Reduction | None = None) -> Dataset:
    """The data set of ``settings.problem``, as the generators or the MNIST files give it.

    The 2-D generators are called with their defaults (the paper's sizes)
    and ``seed = settings.seed``; MNIST takes the first ``train_size``
    (default 50,000) training images and the last ``val_size`` (default
    10,000) for validation, from ``settings.data_dir``.

    With a data-parallel ``reduction`` of several workers, each worker reads
    only its share of the MNIST images (the rows
    :func:`ocdl.distributed.share_rows` gives it of each split, a
    :attr:`~ocdl.problems.Dataset.part`; :func:`ocdl.problems.mnist` with
    ``rows``), after checking that all workers see the same files (their
    SHA-256 sums). The 2-D generators make the whole data set on every
    worker (it is small, and rank 0 draws all of it);
    :func:`~ocdl.experiments.train` shares it.

    Raises
    ------
    FileNotFoundError
        If the MNIST folder or one of its files is missing.
    ValueError
        If ``train_size``, ``val_size`` or ``data_dir`` is given for a 2-D problem, the MNIST images are not
        28 x 28 (:data:`~ocdl.experiments.settings.MNIST_IMAGE`), or the workers' MNIST files differ.
    """
    if settings.problem == "mnist":
        sizes = {"n_train": settings.train_size, "n_val": settings.val_size}
        options = {k: v for k, v in sizes.items() if v is not None}
        if reduction is None or reduction.size == 1:
            data = mnist(settings.data_dir, **options)
        else:
            reduction.check_same("MNIST files (SHA-256)", files_digest(settings.data_dir))
            data = mnist(settings.data_dir, rows=lambda n: share_rows(n, reduction), **options)
        if data.image_shape[1:] != MNIST_IMAGE:
            raise ValueError(
                f"the images in {settings.data_dir or 'the MNIST folder'} are {data.image_shape[1]} x "
                f"{data.image_shape[2]} pixels; the MNIST networks take {MNIST_IMAGE[0]} x {MNIST_IMAGE[1]}"
            )
        return data
    if settings.train_size is not None or settings.val_size is not None or settings.data_dir is not None:
        raise ValueError(
            f"train_size, val_size and data_dir are for mnist; the {settings.problem} generator makes its data"
        )
    generator = {"ellipses": concentric_ellipses, "swiss-roll": swiss_roll, "peaks": peaks}[settings.problem]
    return generator(seed=settings.seed)


def widen(Y: np.ndarray, settings: Settings) -> np.ndarray:
    """Features of the network's width: ``Y`` duplicated side by side, in ``settings.dtype``.

    2-D points ``(y1, y2)`` become ``(y1, y2, y1, y2, ...)`` (``settings.width``
    features); an MNIST image (one channel, rows flattened) becomes
    ``settings.width`` identical channels, channel-major as
    :class:`ocdl.Conv2d` reads them.

    Raises
    ------
    ValueError
        If the network's width is not a multiple of the data's features.
    """
    copies, remainder = divmod(network_width(settings), Y.shape[1])
    if remainder or copies < 1:
        raise ValueError(f"width {settings.width} is not a multiple of the data's {Y.shape[1]} features")
    # converted before it is duplicated: one s x n array of settings.dtype is made, not a float64 one
    # besides (full-size MNIST in float32: 0.9 GB instead of 0.9 + 1.9 GB)
    return np.tile(np.asarray(Y, dtype=settings.dtype), (1, copies))


def network_width(settings: Settings) -> int:
    """Features per example seen by the network: ``width`` (2-D) or ``width * 28 * 28`` (MNIST)."""
    if settings.problem == "mnist":
        return settings.width * MNIST_IMAGE[0] * MNIST_IMAGE[1]
    return settings.width
