"""Weight decay (Tikhonov regularization with the identity)."""

from __future__ import annotations

from ..backend import Array
from ..validation import ArgumentTypeError, check_array, is_real
from .base import Regularizer


class WeightDecay(Regularizer):
    r""":math:`R(x) = \frac12 \|x\|^2`, :math:`H = I`, for a float32 or float64 array ``x`` of any shape
    (others raise, naming the argument: integers overflowed in :math:`x^T x`, float16 at 256)."""

    def value(self, x: Array) -> float:
        x = check_array("x", x, finite=False)
        return 0.5 * float((x * x).sum())

    def gradient(self, x: Array) -> Array:
        return check_array("x", x, finite=False).copy()

    def hessian_matvec(self, v: Array) -> Array:
        return check_array("v", v, finite=False).copy()

    def precondition(self, r: Array, shift: float) -> Array:
        r""":math:`z = r / (1 + \sigma)`; requires ``shift > -1``."""
        if not is_real(shift):
            raise ArgumentTypeError(f"shift must be a number > -1, got {shift!r}")
        if not shift > -1:
            raise ValueError(f"shift must be > -1 so that (1 + shift) I is invertible, got {shift}")
        return check_array("r", r, finite=False) / (1.0 + float(shift))  # float: a NumPy float64 promotes
