r"""The interface of the (quadratic) regularizers.

Every regularizer here is a quadratic form with a constant symmetric positive
semidefinite Hessian :math:`H`,

.. math::

   R(x) = \tfrac12 x^T H x, \qquad \nabla R(x) = H x, \qquad \nabla^2 R = H,

and comes with a fast exact solver of :math:`(H + \sigma I) z = r`, the
preconditioner of Newton-Krylov methods. For a weighted term :math:`\alpha R`
use :math:`(\alpha H + \sigma I)^{-1} r = \alpha^{-1} (H + (\sigma/\alpha) I)^{-1} r`,
i.e. ``precondition(r, shift / alpha) / alpha``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..backend import Array


class Regularizer(ABC):
    """Quadratic regularizer :math:`R(x) = \\frac12 x^T H x` (see the module docstring).

    Arguments are NumPy or CuPy arrays; results keep their shape, dtype and
    device. Which shapes are accepted is stated by each subclass.
    """

    @abstractmethod
    def value(self, x: Array) -> float:
        r"""Regularizer :math:`R(x) = \frac12 x^T H x`."""

    def gradient(self, x: Array) -> Array:
        r"""Gradient :math:`\nabla R(x) = H x` (shape of ``x``)."""
        return self.hessian_matvec(x)

    @abstractmethod
    def hessian_matvec(self, v: Array) -> Array:
        r"""Hessian-vector product :math:`H v` (shape of ``v``); :math:`H` is constant."""

    @abstractmethod
    def precondition(self, r: Array, shift: float) -> Array:
        r"""Exact solution :math:`z` of :math:`(H + \sigma I) z = r`, :math:`\sigma` = ``shift``.

        Parameters
        ----------
        r : array
            Right-hand side, a shape accepted by :meth:`value`.
        shift : float
            :math:`\sigma`; must make :math:`H + \sigma I` nonsingular.

        Returns
        -------
        array
            :math:`z`, shape of ``r``.
        """
