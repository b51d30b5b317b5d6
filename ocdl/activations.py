r"""Activation functions :math:`\sigma` with their derivatives.

Each activation is applied entry by entry and returns, in one pass, the value
:math:`\sigma(x)` and the derivative :math:`\sigma'(x)` that the layer's
linearisation reuses.
"""

from __future__ import annotations

from typing import Any

from .backend import get_array_module


class Activation:
    """Base class: subclasses implement :meth:`value_and_derivative`."""

    name = "activation"

    def value_and_derivative(self, x: Any) -> tuple[Any, Any]:
        """Return :math:`(\\sigma(x), \\sigma'(x))` entry by entry."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.value_and_derivative(x)[0]

    def derivative(self, x: Any) -> Any:
        """:math:`\\sigma'(x)` entry by entry."""
        return self.value_and_derivative(x)[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Tanh(Activation):
    r""":math:`\sigma(x) = \tanh x`, :math:`\sigma'(x) = 1 - \tanh^2 x`."""

    name = "tanh"

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        t = xp.tanh(x)
        return t, 1 - t * t


class ReLU(Activation):
    r""":math:`\sigma(x) = \max(x, 0)`, :math:`\sigma'(x) = [x > 0]`.

    Not differentiable at 0; Taylor tests hold for step lengths that do not
    move a pre-activation across 0.
    """

    name = "relu"

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
        if not eta > 0:
            raise ValueError(f"eta must be positive, got {eta}")
        self.eta = float(eta)

    def value_and_derivative(self, x):
        xp = get_array_module(x)
        root = xp.sqrt(x * x + self.eta**2)
        return 0.5 * (x + root), 0.5 * (1 + x / root)

    def __repr__(self) -> str:
        return f"SmoothReLU(eta={self.eta})"


class Identity(Activation):
    r""":math:`\sigma(x) = x`, :math:`\sigma'(x) = 1`."""

    name = "identity"

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
