r"""Activation functions :math:`\sigma` with their derivatives.

Each activation is applied entry by entry and returns, in one pass, the value
:math:`\sigma(x)` and the derivative :math:`\sigma'(x)` that the layer's
linearisation reuses.
"""

from __future__ import annotations

from typing import Any

from .backend import get_array_module
from .validation import check_positive, missing_method


class Activation:
    """Base class: subclasses implement :meth:`value_and_derivative`."""

    name = "activation"
    #: Whether :math:`\sigma` is differentiable everywhere (the Taylor tests assume it).
    smooth = True
    #: CUDA C statements setting ``s`` :math:`= \sigma(z)` and ``ds`` :math:`= \sigma'(z)` from ``z``, all of
    #: type ``T`` (``float`` or ``double``), for the fused GPU kernels (:mod:`ocdl.kernels`); ``None``: the
    #: layer takes the plain path on the GPU (a subclass's own activation, until it gives its source).
    cuda: str | None = None

    def value_and_derivative(self, x: Any) -> tuple[Any, Any]:
        """Return :math:`(\\sigma(x), \\sigma'(x))` entry by entry."""
        raise NotImplementedError(missing_method(self, "value_and_derivative(x) -> (sigma, sigma')"))

    def __call__(self, x: Any) -> Any:
        return self.value_and_derivative(x)[0]

    def derivative(self, x: Any) -> Any:
        """:math:`\\sigma'(x)` entry by entry."""
        return self.value_and_derivative(x)[1]

    def _axpy_into(self, z: Any, b: Any, c: float, X: Any, out: Any, d_out: Any = None) -> None:
        """``out = X + c sigma(z + b)`` and, unless ``d_out`` is ``None``, ``d_out = c sigma'(z + b)``.

        The elementwise part of :meth:`ocdl.Layer.step` (``z`` is left
        unchanged; ``X = None`` stands for zero), run on one row block at a
        time; subclasses fuse it into fewer passes and skip the derivative's
        passes when it is not wanted.
        """
        xp = get_array_module(z)
        value, deriv = self.value_and_derivative(z + b)
        xp.multiply(value, c, out=out)
        if X is not None:
            xp.add(out, X, out=out)
        if d_out is not None:
            xp.multiply(deriv, c, out=d_out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Tanh(Activation):
    r""":math:`\sigma(x) = \tanh x`, :math:`\sigma'(x) = 1 - \tanh^2 x`."""

    name = "tanh"
    cuda = "s = tanh(z); ds = (T)1 - s * s;"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        t = xp.tanh(x)
        d = xp.multiply(t, t)
        xp.subtract(1, d, out=d)
        return t, d

    def _axpy_into(self, z, b, c, X, out, d_out=None):
        # t = tanh(z + b) (in d_out, else in out); out = c t; [d_out = c t^2 -> c (1 - t^2)]; out = X + c t
        xp = get_array_module(z)
        t = out if d_out is None else d_out
        xp.add(z, b, out=t)
        xp.tanh(t, out=t)
        xp.multiply(t, c, out=out)
        if d_out is not None:
            xp.multiply(out, d_out, out=d_out)
            xp.subtract(c, d_out, out=d_out)
        if X is not None:
            xp.add(out, X, out=out)


class ReLU(Activation):
    r""":math:`\sigma(x) = \max(x, 0)`, :math:`\sigma'(x) = [x > 0]`.

    Not differentiable at 0; Taylor tests hold for step lengths that do not
    move a pre-activation across 0.
    """

    name = "relu"
    smooth = False
    cuda = "s = z > (T)0 ? z : (T)0; ds = z > (T)0 ? (T)1 : (T)0;"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        positive = x > 0
        return xp.where(positive, x, 0).astype(x.dtype), positive.astype(x.dtype)


class SmoothReLU(Activation):
    r"""A smooth (:math:`C^\infty`) ReLU of width :math:`\eta`:

    .. math::

       \sigma(x) = \tfrac12\big(x + \sqrt{x^2 + \eta^2}\big), \qquad
       \sigma'(x) = \tfrac12\big(1 + x / \sqrt{x^2 + \eta^2}\big).

    It tends to :math:`\max(x, 0)` as :math:`\eta \to 0` (the error is at
    most :math:`\eta/2`, at 0) and, being smooth, keeps the second-order
    Taylor behaviour that Gauss-Newton and the derivative checks rely on.
    """

    name = "smoothrelu"

    def __init__(self, eta: float = 0.1) -> None:
        self.eta = check_positive("eta", eta)
        self.cuda = (f"const T r = sqrt(z * z + (T)({self.eta**2!r})); "
                     "s = (T)0.5 * (z + r); ds = (T)0.5 * ((T)1 + z / r);")

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        root = xp.sqrt(x * x + self.eta**2)
        return 0.5 * (x + root), 0.5 * (1 + x / root)

    def __repr__(self) -> str:
        return f"SmoothReLU(eta={self.eta})"


class Identity(Activation):
    r""":math:`\sigma(x) = x`, :math:`\sigma'(x) = 1`."""

    name = "identity"
    cuda = "s = z; ds = (T)1;"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        return x, xp.ones_like(x)


ACTIVATIONS = {cls.name: cls for cls in (Tanh, ReLU, SmoothReLU, Identity)}


def get_activation(activation: str | Activation) -> Activation:
    """An :class:`Activation` from an instance or one of the names in ``ACTIVATIONS``."""
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]()
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be an Activation or one of {sorted(ACTIVATIONS)}, got {activation!r}"
        ) from None
