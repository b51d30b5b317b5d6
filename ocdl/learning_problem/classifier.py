r"""The classifier :math:`(W, \mu)` as one flat vector, and the Newton sub-problem in it.

For fixed output features :math:`Y_N`, :math:`x = (W, \mu) \mapsto
S(h(Y_N W + e\mu^T), C) + \alpha_W R_W(W)` is convex, with the exact Hessian
:math:`\nabla^2_{(W,\mu)} S + \alpha_W \operatorname{diag}(H_{R_W}, 0)`, so
:func:`ocdl.solvers.newton_pcg` applies (:meth:`ocdl.LearningProblem.classifier_problem`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend import Array, get_array_module
from ..validation import check_positive

if TYPE_CHECKING:
    from .problem import LearningProblem


def pack_classifier(W: Array, mu: Array, n: int, m: int) -> Array:
    r"""The flat vector :math:`x = (\operatorname{vec}_\text{row}(W), \mu)` of ``n m + m`` entries.

    Raises
    ------
    ValueError
        ``W`` not of shape ``(n, m)`` or ``mu`` not of shape ``(m,)``.
    """
    if W.shape != (n, m):
        raise ValueError(f"W must have shape (n, m) = ({n}, {m}), got {W.shape}")
    if mu.shape != (m,):
        raise ValueError(f"mu must have shape (m,) = ({m},), got {mu.shape}")
    return get_array_module(W, mu).concatenate([W.ravel(), mu])


def unpack_classifier(x: Array, n: int, m: int) -> tuple[Array, Array]:
    """Inverse of :func:`pack_classifier`: views ``(W, mu)`` of shapes ``(n, m)`` and ``(m,)``.

    Raises
    ------
    ValueError
        ``x`` not of shape ``(n m + m,)``.
    """
    if x.shape != (n * m + m,):
        raise ValueError(f"x must have n m + m = {n * m + m} entries (W and mu), got shape {x.shape}")
    return x[: n * m].reshape(n, m), x[n * m :]


class ClassifierProblem:
    r"""Minimise :math:`x = (W, \mu) \mapsto f` for fixed features (see
    :meth:`LearningProblem.classifier_problem`); convex, so Newton's method applies."""

    def __init__(self, problem: LearningProblem, YN: Array, indices: Array | None, shift: float = 1e-2) -> None:
        self.problem, self.shift = problem, float(check_positive("shift", shift))
        _, self.C, self.count = problem.rows(indices)
        self.YN = problem.check_like_examples("YN", YN, (self.count, problem.n_features))

    def value(self, x: Array) -> float:
        r""":math:`S(Y_N W + e\mu^T, C) + \alpha_W R_W(W)` (+ the constant :math:`\alpha_\theta R(\theta)`, omitted)."""
        lp = self.problem
        W, mu = lp.unpack_classifier(x)
        S = lp.objective.value(self.YN, W, mu, self.C) if self.count else 0.0
        return lp.reduction.mean(S, self.count) + lp.alpha_W * lp.W_regularizer.value(W)

    def model(self, x: Array) -> ClassifierModel:
        """The Newton model at ``x``."""
        return ClassifierModel(self, x)


class ClassifierModel:
    r"""Value, gradient and exact Hessian products of :math:`f` in :math:`(W, \mu)` at one point."""

    def __init__(self, owner: ClassifierProblem, x: Array) -> None:
        lp = owner.problem
        self.owner = owner
        self.W, self.mu = lp.unpack_classifier(x)
        # the logits Z are kept for the Hessian products at this point (each then one pass over YN)
        S, (dW, dmu), self.Z = (
            lp.objective.value_and_gradient_W(owner.YN, self.W, self.mu, owner.C) if owner.count
            else (0.0, lp.initial_classifier(), None)  # a worker without examples of the sub-sample: zeros
        )
        mean = lp.reduction.mean
        self.value = mean(S, owner.count) + lp.alpha_W * lp.W_regularizer.value(self.W)
        self.gradient = lp.pack_classifier(
            mean(dW, owner.count) + lp.alpha_W * lp.W_regularizer.gradient(self.W), mean(dmu, owner.count)
        )

    def hessian_matvec(self, v: Array) -> Array:
        r""":math:`\nabla^2_{(W,\mu)} S\,(dW, d\mu) + \alpha_W (H_{R_W} dW, 0)`, exact."""
        lp, owner = self.owner.problem, self.owner
        dW, dmu = lp.unpack_classifier(v)
        HdW, Hdmu = (lp.objective.hessian_W(owner.YN, self.W, self.mu, owner.C, dW, dmu, logits=self.Z)
                     if owner.count else lp.initial_classifier())
        mean = lp.reduction.mean
        return lp.pack_classifier(
            mean(HdW, owner.count) + lp.alpha_W * lp.W_regularizer.hessian_matvec(dW), mean(Hdmu, owner.count)
        )

    def precondition(self, r: Array) -> Array:
        r""":math:`(\alpha_W H_{R_W} + \sigma I)^{-1}` on the :math:`W` block and :math:`1/\sigma` on
        :math:`\mu`: the regularizer's fast solve (paper section 6.4)."""
        lp, shift = self.owner.problem, self.owner.shift
        rW, rmu = lp.unpack_classifier(r)
        if lp.alpha_W == 0.0:
            return r / shift
        return lp.pack_classifier(lp.W_regularizer.precondition(rW, shift / lp.alpha_W) / lp.alpha_W, rmu / shift)

    def metrics(self) -> dict:
        """``batch_accuracy`` of the classifier on the fixed features."""
        lp, owner = self.owner.problem, self.owner
        acc = lp.objective.accuracy(owner.YN, self.W, self.mu, owner.C) if owner.count else 0.0
        return {"batch_accuracy": float(lp.reduction.mean(acc, owner.count))}
