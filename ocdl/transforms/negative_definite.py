"""Negative (semi-)definite transform of the paper's eq. (4.14)."""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..validation import check_nonnegative
from .base import Transform


class NegativeDefinite(Transform):
    r""":math:`K(\theta) = -C(\theta)^T C(\theta) - \gamma I` from a transform :math:`C` (``m x n``).

    In row convention ``base`` maps ``s x m`` to ``s x n`` by :math:`Y C`, so
    :math:`Y K = -(Y C^T) C - \gamma Y`. :math:`K` is symmetric negative
    semi-definite (definite for :math:`\gamma > 0`) and, for a base linear in
    :math:`\theta`, quadratic in :math:`\theta`. With :math:`dC = C'(\theta)[d\theta]`
    (the base's ``jvp``, for any base):

    .. math::

       Y K'(\theta)[d\theta] = -(Y\, dC^T) C - (Y C^T)\, dC, \qquad
       \nabla_\theta \langle Y K, \lambda\rangle
       = -\nabla_\theta\langle (Y C^T) C, \lambda\rangle - \nabla_\theta\langle (\lambda C^T) C, Y\rangle .
    """

    linear_in_params = False

    def __init__(self, base: Transform, gamma: float = 0.0) -> None:
        if not isinstance(base, Transform):
            raise TypeError(f"base must be an ocdl Transform (e.g. Dense(m, n)), got {type(base).__name__}")
        self.base, self.gamma = base, check_nonnegative("gamma", gamma)
        self.n_in = self.n_out = base.n_out
        self.n_params, self.param_shape = base.n_params, base.param_shape
        # a stencil's C^T C is no stencil at the image's border: only a matrix base has an explicit K
        self.explicit_kind = "matrix" if base.explicit_kind == "matrix" else None
        self.explicit_stacks = self.explicit_kind == "matrix" and base.explicit_stacks

    def apply(self, theta, Y):
        out = -self.base.apply(theta, self.base.apply_transpose(theta, Y))
        if self.gamma:
            out = out - self.gamma * Y
        return out

    apply_transpose = apply  # K is symmetric

    def jvp(self, theta, Y, dtheta):
        # the base's own derivatives dC = C'(theta)[dtheta]: C(dtheta) only for a base linear in theta
        b = self.base
        return -b.jvp(theta, b.apply_transpose(theta, Y), dtheta) - b.apply(theta, b.transpose_jvp(theta, Y, dtheta))

    transpose_jvp = jvp

    def vjp(self, theta, Y, lam):
        b = self.base
        return -b.vjp(theta, b.apply_transpose(theta, Y), lam) - b.vjp(theta, b.apply_transpose(theta, lam), Y)

    def transpose_vjp(self, theta, Z, lam):
        """As :meth:`vjp` with ``Z`` and ``lam`` (its matrix is symmetric: :math:`K^T = K`)."""
        return self.vjp(theta, Z, lam)

    def explicit(self, theta):
        r""":math:`-C^T C - \gamma I` from the base's matrix :math:`C` (``m x n``)."""
        C = self.base.explicit(theta)
        K = -(C.swapaxes(-1, -2) @ C)  # a stack of matrices too (explicit_stacks)
        if self.gamma:
            K -= self.gamma * get_array_module(K).eye(K.shape[-1], dtype=K.dtype)
        return K

    def explicit_jvp(self, theta, dtheta):
        C, dC = self.base.explicit(theta), self.base.explicit_jvp(theta, dtheta)
        CtdC = C.swapaxes(-1, -2) @ dC
        return -(CtdC + CtdC.swapaxes(-1, -2))

    def explicit_vjp(self, theta, g):
        r""":math:`\langle -dC^T C - C^T dC, g\rangle = \langle dC, -C (g + g^T)\rangle`, pulled back through
        the base."""
        C = self.base.explicit(theta)
        return self.base.explicit_vjp(theta, -(C @ (g + g.swapaxes(-1, -2))))

    def init_params(self, rng, scale=1.0, dtype=np.float64):
        return self.base.init_params(rng, scale, dtype)

    def __repr__(self) -> str:
        return f"NegativeDefinite({self.base!r}, gamma={self.gamma})"
