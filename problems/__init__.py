"""Data sets of Haber & Ruthotto, "Stable Architectures for Deep Neural Networks" (2017).

Every loader returns a :class:`Dataset`: features ``Y`` with one example per
row (``s x n``, float) and integer class labels ``C`` (``s``), split into
training, validation and, for MNIST, test sets, reproducibly for a given seed.
"""

from ocdl.problems.dataset import Dataset
from ocdl.problems.ellipses import concentric_ellipses
from ocdl.problems.idx import IDXFormatError, IDXHeader, read_idx, read_idx_header, read_idx_rows, write_idx
from ocdl.problems.mnist import mnist
from ocdl.problems.peaks import peaks, peaks_function
from ocdl.problems.swiss_roll import swiss_roll

__all__ = [
    "Dataset",
    "IDXFormatError",
    "IDXHeader",
    "concentric_ellipses",
    "mnist",
    "peaks",
    "peaks_function",
    "read_idx",
    "read_idx_header",
    "read_idx_rows",
    "swiss_roll",
    "write_idx",
]
