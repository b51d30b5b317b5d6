"""Weight decay (Tikhonov regularization with the identity)."""

from __future__ import annotations

from ..backend import Array
from .base import Regularizer


class WeightDecay(Regularizer):
    r""":math:`R(x) = \frac12 \|x\|^2`, :math:`H = I`, for an array ``x`` of any shape."""

    def value(self, x: Array) -> float:
        return 0.5 * float((x * x).sum())

    def hessian_matvec(self, v: Array) -> Array:
        return v.copy()

    def precondition(self, r: Array, shift: float) -> Array:
        r""":math:`z = r / (1 + \sigma)`; requires ``shift > -1``."""
        if not shift > -1:
            raise ValueError(f"shift must be > -1 so that (1 + shift) I is invertible, got {shift}")
        return r / (1.0 + shift)
