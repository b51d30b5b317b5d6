r"""The Gauss-Newton sub-problem in the network's parameters :math:`\theta`, with :math:`(W, \mu)` fixed.

.. math::

   \nabla_\theta f = J^T \frac{\partial S}{\partial Y_N} + \alpha_\theta H_R \theta,
   \qquad
   H_{GN} = J^T \frac{\partial^2 S}{\partial Y_N^2} J + \alpha_\theta H_R,

for :func:`ocdl.solvers.gauss_newton_pcg` (:meth:`ocdl.LearningProblem.theta_problem`).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from ..backend import Array
from ..validation import check_positive
from .sweeps import Chunk, data_gradient, forward_chunks, gauss_newton_product

if TYPE_CHECKING:
    from .problem import LearningProblem


class ThetaProblem:
    r"""Minimise :math:`\theta \mapsto f(\theta, W, \mu)` for fixed :math:`(W, \mu)` (see
    :meth:`LearningProblem.theta_problem`)."""

    def __init__(
        self,
        problem: LearningProblem,
        W: Array,
        mu: Array,
        indices: Array | None,
        hessian_indices: Array | None,
        shift: float,
    ) -> None:
        self.shift = float(check_positive("shift", shift))
        self.problem = problem
        self.W, self.mu = W, mu
        self.indices = indices
        self.hessian_indices = hessian_indices
        self.rows = problem.rows(indices)
        self.hessian_rows = self.rows if hessian_indices is None else problem.rows(hessian_indices, "hessian_indices")

    def value(self, theta: Array) -> float:
        """:math:`f(\\theta, W, \\mu)` on the examples ``indices`` (the line search)."""
        return self.problem.value(theta, self.W, self.mu, self.indices)

    def model(self, theta: Array) -> ThetaModel:
        """The Gauss-Newton model at ``theta`` (one forward sweep, reused by every product)."""
        return ThetaModel(self, theta)


class ThetaModel:
    r"""Value, gradient and Gauss-Newton products of :math:`f` in :math:`\theta` at one point.

    The value comes from the output features of the examples (shared with
    :meth:`LearningProblem.features`: no sweep when they are at hand). The
    gradient (computed when first read) takes one forward and one adjoint
    sweep per chunk of examples. Every Gauss-Newton product :math:`H_{GN} v`
    (one sensitivity and one adjoint sweep per chunk) reads the forward
    states of the Hessian's examples, computed once, at the first product
    (or by the gradient, when the Hessian's examples are the gradient's),
    and kept for all products.
    """

    def __init__(self, owner: ThetaProblem, theta: Array) -> None:
        lp = owner.problem
        self.owner, self.theta = owner, theta
        self._YN = lp.features(theta, owner.indices)
        S = lp.objective.value(self._YN, owner.W, owner.mu, owner.rows.C) if owner.rows.count else 0.0
        self.value = lp.reduction.mean(S, owner.rows.count) + lp.regularization(theta, owner.W)

    @cached_property
    def gradient(self) -> Array:
        r""":math:`\nabla_\theta f = \sum_c \frac{|B_c|}{s} J_{B_c}^T \partial S_{B_c} / \partial Y_N
        + \alpha_\theta H_R \theta`."""
        lp, owner = self.owner.problem, self.owner
        Y0, C, count = owner.rows
        swept = (
            self._hessian_chunks
            if owner.hessian_rows is owner.rows
            else forward_chunks(lp.network, self.theta, Y0, C, lp.chunk_size)
        )
        with lp.reduction.errors():  # a blow-up on this worker's examples stops every worker
            _, g, _, _ = data_gradient(lp.network, lp.objective, self.theta, owner.W, owner.mu, swept)
        return lp.reduction.mean(g, count) + lp.alpha_theta * lp.theta_regularizer.gradient(self.theta)

    @cached_property
    def _hessian_chunks(self) -> list[Chunk]:
        """The forward sweeps of the chunks of the Hessian's examples, kept open."""
        lp = self.owner.problem
        Y0, C, _ = self.owner.hessian_rows
        with lp.reduction.errors():
            return list(forward_chunks(lp.network, self.theta, Y0, C, lp.chunk_size, close=False))

    def hessian_matvec(self, v: Array) -> Array:
        r"""Gauss-Newton product :math:`J^T \frac{\partial^2 S}{\partial Y_N^2} J v + \alpha_\theta H_R v`
        (summed over the chunks of the Hessian's examples)."""
        lp, owner = self.owner.problem, self.owner
        JtHJv = gauss_newton_product(lp.network, lp.objective, self.theta, owner.W, owner.mu, v, self._hessian_chunks)
        regularization = lp.alpha_theta * lp.theta_regularizer.hessian_matvec(v)
        return lp.reduction.mean(JtHJv, owner.hessian_rows.count) + regularization

    def precondition(self, r: Array) -> Array:
        r""":math:`(\alpha_\theta H_R + \sigma I)^{-1} r`, the regularizer's fast solve
        (``R.precondition(r, sigma / alpha) / alpha``; ``r / sigma`` when :math:`\alpha_\theta = 0`)."""
        lp, shift = self.owner.problem, self.owner.shift
        if lp.alpha_theta == 0.0:
            return r / shift
        return lp.theta_regularizer.precondition(r, shift / lp.alpha_theta) / lp.alpha_theta

    def metrics(self) -> dict:
        """``batch_accuracy``: accuracy on the examples of the value (free: the features are at hand)."""
        lp, rows = self.owner.problem, self.owner.rows
        acc = lp.objective.accuracy(self._YN, self.owner.W, self.owner.mu, rows.C) if rows.count else 0.0
        return {"batch_accuracy": float(lp.reduction.mean(acc, rows.count))}
