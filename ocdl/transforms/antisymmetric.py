"""Antisymmetric transform of the paper's eq. (4.12)."""

from __future__ import annotations

from ..backend import get_array_module
from ..validation import check_nonnegative
from .base import Transform
from .conv2d import transposed_stencil


class Antisymmetric(Transform):
    r""":math:`K(\theta) = \tfrac12 (B(\theta) - B(\theta)^T - \gamma I)` from a square transform :math:`B`.

    The eigenvalues of :math:`\tfrac12 (B - B^T)` are imaginary, so with
    :math:`\gamma \ge 0` their real parts are :math:`-\gamma/2 \le 0`: the
    continuous dynamics are stable and (for :math:`\gamma = 0`) non-dissipative.
    ``base`` is any square transform (``Dense(n)``, ``Conv2d`` with equal
    channels); :math:`K` is affine in :math:`\theta` for a base linear in
    :math:`\theta` (linear for :math:`\gamma = 0`), and with :math:`dB = B'(\theta)[d\theta]`
    (the base's ``jvp``, for any base)

    .. math::

       Y K'(\theta)[d\theta] = \tfrac12 (Y\, dB - Y\, dB^T), \qquad
       \nabla_\theta \langle Y K, \lambda\rangle
       = \tfrac12\big(\nabla_\theta\langle Y B, \lambda\rangle
       - \nabla_\theta\langle \lambda B, Y\rangle\big).

    When the base's parameters are its explicit form (``Dense``'s matrix,
    ``Conv2d``'s stencil: ``explicit_is_theta``), :math:`K(\theta)` is itself
    such a matrix or stencil, :math:`S(\theta)` (:meth:`explicit`), and every
    product is one product of the base with :math:`S(\theta)` as its
    parameters: :math:`Y K = Y B(S(\theta))`, and the parameter gradient is
    :math:`S'(\theta)^T` (:meth:`explicit_vjp`) of the base's gradient. One
    convolution per product instead of two (or four, for the tangent): on a
    full-size MNIST iteration the antisymmetric ResNet then costs about as
    much as ResNet. Other bases take the products of :math:`B` and
    :math:`B^T` separately.
    """

    def __init__(self, base: Transform, gamma: float = 0.0) -> None:
        if not isinstance(base, Transform):
            raise TypeError(f"base must be an ocdl Transform (e.g. Dense(n)), got {type(base).__name__}")
        if base.n_in != base.n_out:
            raise ValueError(
                f"Antisymmetric needs a square base transform, got {base.n_in} x {base.n_out}"
            )
        self.base, self.gamma = base, check_nonnegative("gamma", gamma)
        self.linear_in_params = base.linear_in_params and not self.gamma
        self.n_in = self.n_out = base.n_in
        self.n_params, self.param_shape = base.n_params, base.param_shape
        self.explicit_kind = base.explicit_kind
        if self.explicit_kind == "stencil":
            self.explicit_shape, self.image_shape = base.explicit_shape, base.image_shape
        # the products through the base with S(theta) as its parameters (see the class docstring)
        self._direct = base.explicit_kind is not None and base.explicit_is_theta
        self.explicit_stacks = self.explicit_kind == "matrix" and base.explicit_stacks

    def _S(self, theta):
        r""":math:`S(\theta)` as the base's parameter vector."""
        return self.explicit(theta).reshape(-1)

    def _dS(self, theta, dtheta):
        r""":math:`S'(\theta)[d\theta]` (:meth:`explicit_jvp`) as the base's parameter vector."""
        return self.explicit_jvp(theta, dtheta).reshape(-1)

    def _grad(self, theta, g):
        r"""The parameter gradient :math:`S'(\theta)^T g` of the base's gradient ``g``."""
        return self.explicit_vjp(theta, g.reshape(self.base.param_shape))

    def apply(self, theta, Y):
        if self._direct:
            return self.base.apply(self._S(theta), Y)
        out = self.base.apply(theta, Y) - self.base.apply_transpose(theta, Y)
        if self.gamma:
            out = out - self.gamma * Y
        return 0.5 * out

    def apply_transpose(self, theta, Z):
        if self._direct:
            return self.base.apply_transpose(self._S(theta), Z)
        out = self.base.apply_transpose(theta, Z) - self.base.apply(theta, Z)
        if self.gamma:
            out = out - self.gamma * Z
        return 0.5 * out

    def jvp(self, theta, Y, dtheta):
        if self._direct:
            return self.base.apply(self._dS(theta, dtheta), Y)
        return 0.5 * (self.base.jvp(theta, Y, dtheta) - self.base.transpose_jvp(theta, Y, dtheta))

    def transpose_jvp(self, theta, Z, dtheta):
        return -self.jvp(theta, Z, dtheta)

    def vjp(self, theta, Y, lam):
        if self._direct:
            return self._grad(theta, self.base.vjp(self._S(theta), Y, lam))
        return 0.5 * (self.base.vjp(theta, Y, lam) - self.base.vjp(theta, lam, Y))

    def tangent(self, theta, Y, dY, dtheta, transpose=False, out=None):
        if self._direct:  # the base's own tangent: one stack of [dY, Y] for a Conv2d
            return self.base.tangent(self._S(theta), Y, dY, self._dS(theta, dtheta), transpose, out)
        return super().tangent(theta, Y, dY, dtheta, transpose, out)

    def cotangent(self, theta, Y, lam, transpose=False):
        if self._direct:
            out, g = self.base.cotangent(self._S(theta), Y, lam, transpose)
            return out, self._grad(theta, g)
        return super().cotangent(theta, Y, lam, transpose)

    def _apply_blocks(self, theta, Y, consume, transpose=False):
        if self._direct:
            return self.base._apply_blocks(self._S(theta), Y, consume, transpose)
        return super()._apply_blocks(theta, Y, consume, transpose)

    def _skew(self, M):
        r""":math:`\tfrac12 (M - M^T)` of a matrix, or of a square stencil (its transpose:
        :func:`~ocdl.transforms.conv2d.transposed_stencil`)."""
        if self.explicit_kind == "stencil":
            return 0.5 * (M - transposed_stencil(M))
        return 0.5 * (M - M.swapaxes(-1, -2))  # a stack of matrices too

    def explicit(self, theta):
        r""":math:`\tfrac12 (B - B^T) - \tfrac\gamma2 I` (for a stencil, :math:`-\gamma/2` at the centre of each
        channel's own stencil)."""
        K = self._skew(self.base.explicit(theta))
        if self.gamma:
            stencil = self.explicit_kind == "stencil"  # (c, c, k, k): the channels first; a matrix (n, n)
            shift = 0.5 * self.gamma * get_array_module(K).eye(K.shape[0] if stencil else K.shape[-1], dtype=K.dtype)
            if stencil:
                r = K.shape[2] // 2
                K[:, :, r, r] -= shift
            else:
                K -= shift
        return K

    def explicit_jvp(self, theta, dtheta):
        return self._skew(self.base.explicit_jvp(theta, dtheta))

    def explicit_vjp(self, theta, g):
        # the map M -> (M - M^T) / 2 is its own adjoint (the transpose is a permutation and an involution)
        return self.base.explicit_vjp(theta, self._skew(g))

    def __repr__(self) -> str:
        return f"Antisymmetric({self.base!r}, gamma={self.gamma})"
