r"""Discrete Neumann Laplacians on tensor grids and their DCT-II diagonalisation.

Along one axis of length :math:`N`, :math:`D \in \mathbb{R}^{(N-1) \times N}` is
the forward difference :math:`(Dv)_j = v_{j+1} - v_j` (unit spacing, no
differences across the boundary: homogeneous Neumann). The 1-D Laplacian

.. math::

   D^T D = \begin{pmatrix} 1 & -1 \\ -1 & 2 & -1 \\ & \ddots & \ddots & \ddots \\
           && -1 & 2 & -1 \\ &&& -1 & 1 \end{pmatrix}

is diagonalised by the orthonormal DCT-II :math:`Q`:
:math:`D^T D = Q^T \operatorname{diag}(\lambda) Q`,
:math:`\lambda_k = 2 - 2\cos(\pi k / N)`, :math:`k = 0, \dots, N-1`. On a tensor
grid the sum over axes of these operators is diagonalised by the
multidimensional DCT-II, with eigenvalues the sums of the 1-D ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np
import scipy.fft

from ..backend import Array, get_array_module
from ..validation import check_positive


def fft_module(x: Array) -> ModuleType:
    """``scipy.fft`` for NumPy arrays, ``cupyx.scipy.fft`` for CuPy arrays (same API)."""
    if get_array_module(x) is np:
        return scipy.fft
    import cupyx.scipy.fft

    return cupyx.scipy.fft


def laplacian(v: Array, axes: Sequence[int]) -> Array:
    r""":math:`\sum_{a \in \text{axes}} D_a^T D_a v`, the Neumann Laplacian (positive semidefinite)."""
    xp = get_array_module(v)
    out = xp.zeros_like(v)
    for axis in axes:
        g = xp.diff(v, axis=axis)
        pad_shape = list(v.shape)
        pad_shape[axis] = 1
        pad = xp.zeros(pad_shape, dtype=v.dtype)
        out += xp.concatenate([pad, g], axis=axis) - xp.concatenate([g, pad], axis=axis)
    return out


def squared_differences(v: Array, axes: Sequence[int]) -> float:
    r""":math:`\sum_{a \in \text{axes}} \|D_a v\|^2` (equals :math:`v^T (\sum_a D_a^T D_a) v`)."""
    xp = get_array_module(v)
    return float(sum((xp.diff(v, axis=a) ** 2).sum() for a in axes))


def eigenvalues(shape: Sequence[int], axes: Sequence[int], like: Array) -> Array:
    r"""Eigenvalues :math:`\sum_a (2 - 2\cos(\pi k_a / N_a))` of :func:`laplacian`.

    Returned in the DCT-II ordering, broadcastable against an array of ``shape``,
    on the device and in the dtype of ``like``.
    """
    xp = get_array_module(like)
    lam = xp.zeros([shape[a] if a in axes else 1 for a in range(len(shape))])
    for a in axes:
        k = xp.arange(shape[a], dtype=xp.float64)
        view = [1] * len(shape)
        view[a] = shape[a]
        lam = lam + (2.0 - 2.0 * xp.cos(np.pi * k / shape[a])).reshape(view)
    return lam.astype(like.dtype)


def dct_solve(r: Array, diagonal: Array, axes: Sequence[int]) -> Array:
    r"""Solve :math:`Q^T \operatorname{diag}(d)\, Q z = r` with :math:`Q` the orthonormal DCT-II over ``axes``."""
    fft = fft_module(r)
    r_hat = fft.dctn(r, type=2, axes=tuple(axes), norm="ortho")
    return fft.idctn(r_hat / diagonal, type=2, axes=tuple(axes), norm="ortho")


def check_shift(shift: float) -> float:
    """``shift`` as a Python float (a NumPy float64 would promote float32 arrays); the Neumann Laplacians are
    singular (constants), only ``shift > 0`` is solvable."""
    try:
        return float(check_positive("shift", shift))
    except ValueError:
        raise ValueError(
            f"shift must be positive and finite: the Hessian is singular (constants lie in its "
            f"null space), got shift = {shift!r}"
        ) from None
