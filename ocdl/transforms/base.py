r"""The linear transform :math:`K(\theta)` of a layer, acting on rows.

A transform maps features ``Y`` (``s x n_in``, one example per row) to
``Y K(theta)`` (``s x n_out``) and gives

* ``apply(theta, Y)`` :math:`= Y K(\theta)`,
* ``apply_transpose(theta, Z)`` :math:`= Z K(\theta)^T`,
* ``jvp(theta, Y, dtheta)`` :math:`= Y\, K'(\theta)[d\theta]`,
* ``vjp(theta, Y, lam)`` :math:`= \nabla_\theta \langle Y K(\theta), \lambda\rangle` (``lam``, a
  cotangent of ``Y K``: ``s x n_out``),
* ``transpose_jvp(theta, Z, dtheta)`` :math:`= Z\, K'(\theta)[d\theta]^T`,
* ``transpose_vjp(theta, Z, lam)`` :math:`= \nabla_\theta \langle Z K(\theta)^T, \lambda\rangle`,
* ``tangent(theta, Y, dY, dtheta)`` :math:`= dY\, K(\theta) + Y\, K'(\theta)[d\theta]`,
  the linearisation of :math:`(\theta, Y) \mapsto Y K(\theta)`,
* ``cotangent(theta, Y, lam)``
  :math:`= \big(\lambda K(\theta)^T,\ \nabla_\theta \langle Y K(\theta), \lambda\rangle\big)`, its adjoint,

the last two with ``transpose=True`` for the map :math:`(\theta, Z) \mapsto Z K(\theta)^T`.

For a transform linear in its parameters, :math:`K'(\theta)[d\theta] =
K(d\theta)`, so the defaults below derive the ``jvp`` methods from ``apply``.
Since :math:`\langle Z K^T, \lambda\rangle = \langle \lambda K, Z\rangle`, the default
``transpose_vjp`` is ``vjp`` with the two arguments exchanged. A subclass
linear in :math:`\theta` implements ``apply``, ``apply_transpose`` and
``vjp``; a nonlinear one overrides the ``jvp`` methods too. ``tangent`` and
``cotangent`` default to sums and pairs of the others; a transform overrides
them where doing both at once is cheaper (``Conv2d``: one im2col stack
instead of two).

Each example is transformed alone: row ``i`` of ``apply(theta, Y)`` depends
only on row ``i`` of ``Y``, so ``apply(theta, Y[rows]) == apply(theta,
Y)[rows]``, and ``vjp`` is a sum over the rows. The layer's step kernels
(:meth:`ocdl.Layer.step`) rely on it to run large states in row blocks on
several threads;
:func:`ocdl.check_stepper` checks it ("rows step alone").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..validation import missing_method


class Transform:
    """Base class of layer transforms; the contract: :mod:`ocdl.transforms.base` (above in the API reference)."""

    n_in: int
    n_out: int
    n_params: int
    param_shape: tuple[int, ...]
    linear_in_params = True
    #: How :meth:`explicit` writes :math:`K(\theta)` for the fused GPU kernels (:mod:`ocdl.kernels`):
    #: ``"matrix"`` (``n_in x n_out``), ``"stencil"`` (``explicit_shape = (c_out, c_in, k, k)`` on
    #: images of ``image_shape``, the correlation of :class:`~ocdl.transforms.Conv2d`), or ``None``
    #: (no explicit form: the plain path).
    explicit_kind: str | None = None
    #: Whether :meth:`explicit` is ``theta`` itself, reshaped (its gradient is the parameter gradient).
    explicit_is_theta = False
    #: Whether :meth:`explicit`, :meth:`explicit_jvp` and :meth:`explicit_vjp` also take a stack of
    #: parameter vectors (``theta`` of shape ``(N, n_params)``, ``g`` of ``(N, *form)``) and return the stack
    #: of their results, one per row: the whole sweeps of :mod:`ocdl.kernels.sweeps` form every step's
    #: matrix at once. :func:`~ocdl.checks.check_transform` checks the stacks against the rows.
    explicit_stacks = False

    def apply(self, theta: Any, Y: Any) -> Any:
        """:math:`Y K(\\theta)`, ``s x n_out``."""
        raise NotImplementedError(missing_method(self, "apply(theta, Y) -> Y K"))

    def apply_transpose(self, theta: Any, Z: Any) -> Any:
        """:math:`Z K(\\theta)^T`, ``s x n_in``."""
        raise NotImplementedError(missing_method(self, "apply_transpose(theta, Z) -> Z K^T"))

    def vjp(self, theta: Any, Y: Any, lam: Any) -> Any:
        """:math:`\\nabla_\\theta \\langle Y K(\\theta), \\lambda\\rangle`, ``n_params`` entries."""
        raise NotImplementedError(missing_method(self, "vjp(theta, Y, lam) -> grad_theta <Y K, lam>"))

    def jvp(self, theta: Any, Y: Any, dtheta: Any) -> Any:
        """:math:`Y K'(\\theta)[d\\theta]`: here :math:`Y K(d\\theta)`, right for a transform linear in
        :math:`\\theta` (``linear_in_params``); any other overrides it."""
        return self.apply(dtheta, Y)

    def transpose_jvp(self, theta: Any, Z: Any, dtheta: Any) -> Any:
        """:math:`Z K'(\\theta)[d\\theta]^T`; as :meth:`jvp`, here :math:`Z K(d\\theta)^T`."""
        return self.apply_transpose(dtheta, Z)

    def transpose_vjp(self, theta: Any, Z: Any, lam: Any) -> Any:
        """:math:`\\nabla_\\theta \\langle Z K(\\theta)^T, \\lambda\\rangle` (``Z`` is ``s x n_out``, ``lam``
        ``s x n_in``): the adjoint of :meth:`transpose_jvp`; here :meth:`vjp` with ``Z`` and ``lam``
        exchanged, :math:`\\langle Z K^T, \\lambda\\rangle = \\langle \\lambda K, Z\\rangle`."""
        return self.vjp(theta, lam, Z)

    def tangent(self, theta: Any, Y: Any, dY: Any, dtheta: Any, transpose: bool = False, out: Any = None) -> Any:
        """``dY K + Y K'[dtheta]``; with ``transpose``, ``dY K^T + Y K'[dtheta]^T``; into ``out`` if given."""
        xp = get_array_module(Y, dY)
        if transpose:
            return xp.add(self.apply_transpose(theta, dY), self.transpose_jvp(theta, Y, dtheta), out=out)
        return xp.add(self.apply(theta, dY), self.jvp(theta, Y, dtheta), out=out)

    def cotangent(self, theta: Any, Y: Any, lam: Any, transpose: bool = False) -> tuple[Any, Any]:
        """The adjoint of :meth:`tangent` at the cotangent ``lam``: ``(lam K^T, vjp(theta, Y, lam))``;
        with ``transpose``, ``(lam K, transpose_vjp(theta, Y, lam))``."""
        if transpose:
            return self.apply(theta, lam), self.transpose_vjp(theta, Y, lam)
        return self.apply_transpose(theta, lam), self.vjp(theta, Y, lam)

    def explicit(self, theta: Any) -> Any:
        r""":math:`K(\theta)` as the array :attr:`explicit_kind` names (a matrix or a stencil)."""
        raise NotImplementedError(missing_method(self, "explicit(theta) -> K as a matrix or stencil"))

    def explicit_jvp(self, theta: Any, dtheta: Any) -> Any:
        r""":math:`K'(\theta)[d\theta]` in the form of :meth:`explicit` (by default, for a linear
        :math:`K`: ``explicit(dtheta)``)."""
        return self.explicit(dtheta)

    def explicit_vjp(self, theta: Any, g: Any) -> Any:
        r"""The parameter gradient :math:`K'(\theta)^T g` of :math:`\langle K(\theta), g\rangle`, ``g`` in the
        form of :meth:`explicit`; ``n_params`` entries."""
        raise NotImplementedError(missing_method(self, "explicit_vjp(theta, g) -> K'(theta)^T g"))

    def _apply_blocks(self, theta: Any, Y: Any, consume, transpose: bool = False) -> None:
        """``consume(rows, Z[rows])`` over row blocks covering ``Z = Y K`` (``Y K^T`` with ``transpose``).

        For the layer's step kernel: a transform that computes its product in
        blocks (``Conv2d``) hands each on while it is in cache; by default
        one block, all rows.
        """
        consume(slice(None), (self.apply_transpose if transpose else self.apply)(theta, Y))

    def matrix(self, theta: Any) -> Any:
        """The ``n_in x n_out`` matrix :math:`K(\\theta)` (``I K``; for small transforms)."""
        xp = get_array_module(theta)
        return self.apply(theta, xp.eye(self.n_in, dtype=theta.dtype))

    def init_params(self, rng: np.random.Generator, scale: float = 1.0, dtype=np.float64) -> np.ndarray:
        """Random parameters with standard deviation ``scale / sqrt(fan-in)``."""
        return (scale / np.sqrt(self.n_in) * rng.standard_normal(self.n_params)).astype(dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_in={self.n_in}, n_out={self.n_out})"
