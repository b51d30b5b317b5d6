"""Dense transform: ``K(theta)`` is ``theta`` reshaped to ``n_in x n_out``."""

from __future__ import annotations

import numpy as np

from .._workspace import step_empty
from ..validation import check_positive
from .base import Transform

#: Matrices with at most this many entries are copied transposed for ``Z K^T``.
_SMALL = 4096


def _product(A, B):
    """``A @ B``; NumPy products go into a buffer of the running step (:func:`~ocdl._workspace.step_empty`)."""
    if type(A) is np.ndarray and type(B) is np.ndarray and A.ndim == 2 and B.ndim == 2:
        out = step_empty(A, (A.shape[0], B.shape[1]), np.result_type(A, B))
        return np.matmul(A, B, out=out)
    return A @ B


class Dense(Transform):
    r"""A full matrix :math:`K \in \mathbb{R}^{n_{in} \times n_{out}}` (rectangular allowed).

    ``theta`` is :math:`K` flattened row-major. :math:`Y K`, :math:`Z K^T`, and
    :math:`\nabla_\theta \langle Y K, \lambda \rangle = \operatorname{vec}(Y^T \lambda)`.
    """

    explicit_kind = "matrix"
    explicit_is_theta = True
    explicit_stacks = True

    def __init__(self, n_in: int, n_out: int | None = None) -> None:
        n_out = n_in if n_out is None else n_out
        self.n_in, self.n_out = check_positive("n_in", n_in, integer=True), check_positive("n_out", n_out, integer=True)
        self.param_shape = (self.n_in, self.n_out)
        self.n_params = self.n_in * self.n_out

    def _K(self, theta):
        """``theta`` as the matrix (a stack of them for a stack of ``theta``)."""
        return theta.reshape(*theta.shape[:-1], self.n_in, self.n_out)

    def apply(self, theta, Y):
        return _product(Y, self._K(theta))

    def apply_transpose(self, theta, Z):
        K = self._K(theta)
        if K.size <= _SMALL and Z.shape[0] > K.shape[0]:
            # BLAS multiplies by a small transposed matrix slowly (3x for 8 x 8): copy it
            return _product(Z, K.T.copy())
        return _product(Z, K.T)

    def vjp(self, theta, Y, lam):
        return (Y.T @ lam).ravel()

    def matrix(self, theta):
        return self._K(theta)

    def explicit(self, theta):
        return self._K(theta)

    def explicit_vjp(self, theta, g):
        return g.reshape(*g.shape[:-2], -1)
