r"""The learning problem of Haber & Ruthotto (2017), eq. (2.4), with its derivatives.

With the network's output features :math:`Y_N(\theta) \in \mathbb{R}^{s \times n}`
(forward propagation of the examples :math:`Y_0`, one per row), classifier
weights :math:`W \in \mathbb{R}^{n \times m}` and bias :math:`\mu \in \mathbb{R}^m`,

.. math::

   f(\theta, W, \mu) = S\big(h(Y_N(\theta) W + e\mu^T), C\big)
       + \alpha_\theta R(\theta) + \alpha_W R_W(W),

where :math:`S` is the objective (loss averaged over the examples),
:math:`C` the target matrix and :math:`R, R_W` quadratic regularizers
(:math:`R(x) = \frac12 x^T H x`). With :math:`J = \partial Y_N / \partial\theta`
(sensitivities, :meth:`ocdl.Network.jvp`; :math:`J^T` is :meth:`ocdl.Network.vjp`):

.. math::

   \nabla_\theta f = J^T \frac{\partial S}{\partial Y_N} + \alpha_\theta H_R \theta,
   \qquad
   \nabla_W f = \frac{\partial S}{\partial W} + \alpha_W H_{R_W} W, \qquad
   \nabla_\mu f = \frac{\partial S}{\partial \mu},

the Gauss-Newton matrix in :math:`\theta` (symmetric positive semidefinite,
since :math:`S` is convex in :math:`Y_N` for fixed :math:`(W, \mu)`)

.. math::

   H_{GN} = J^T \frac{\partial^2 S}{\partial Y_N^2} J + \alpha_\theta H_R,

and the exact Hessian in :math:`(W, \mu)`,
:math:`\nabla^2_{(W,\mu)} S + \alpha_W \operatorname{diag}(H_{R_W}, 0)`.

:meth:`LearningProblem.theta_problem` and :meth:`LearningProblem.classifier_problem`
wrap these for :func:`solvers.gauss_newton_pcg` and :func:`solvers.newton_pcg`
(the protocol of :mod:`solvers.newton`): a model is built once per outer
iteration, computes the forward states once and reuses them for the gradient
and for every Hessian-vector product of PCG.

Every data term may be evaluated on a sub-sample of the examples (``indices``;
the paper evaluates the Hessian on a further sub-sample, ``hessian_indices``),
and every cross-example reduction goes through one :class:`ocdl.reduction.Reduction`.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import Any

import numpy as np

from .backend import get_array_module
from .network import Network
from .objectives import Objective, one_hot
from .reduction import Reduction
from .regularizers import Regularizer, TimeSmoothness, WeightDecay
from .validation import check_array

Array = Any  # a NumPy or CuPy array


def _check_alpha(name: str, value: Any) -> float:
    is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not is_number or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class LearningProblem:
    r"""The regularized learning problem :math:`f(\theta, W, \mu)` of eq. (2.4).

    Parameters
    ----------
    network : Network
        The forward propagation :math:`\theta \mapsto Y_N(\theta)`.
    objective : Objective
        The loss :math:`S` (e.g. :class:`~ocdl.SoftmaxCrossEntropy`,
        :class:`~ocdl.LogisticCrossEntropy`, :class:`~ocdl.LeastSquares`).
    Y0 : array, shape ``(s, n)``
        Training examples, one per row (NumPy or CuPy, floating); ``n`` is the
        network's width. The dynamics keep the width, so :math:`W` is ``n x m``.
    C : array
        Training labels: integer class indices ``(s,)`` or a one-hot matrix
        ``(s, n_classes)``, converted by ``objective.prepare_labels`` into the
        ``(s, m)`` target matrix. With ``regression=True``: the real ``(s, m)``
        target matrix itself.
    alpha_theta : float
        :math:`\alpha_\theta \ge 0`.
    theta_regularizer : Regularizer, optional
        :math:`R`; default :class:`~ocdl.TimeSmoothness` ``(N, p, h)`` of the
        network (eq. 5.23).
    alpha_W : float
        :math:`\alpha_W \ge 0`.
    W_regularizer : Regularizer, optional
        :math:`R_W`; default :class:`~ocdl.WeightDecay` (use
        :class:`~ocdl.SpatialSmoothness` for images, eq. 5.25).
    n_classes : int, optional
        Number of classes (inferred from ``C`` when not given).
    regression : bool
        ``C`` is a real target matrix used as is (e.g. outputs of a known
        network fitted by :class:`~ocdl.LeastSquares`); classes, for the
        accuracy, are then the ``argmax`` over its columns.
    reduction : Reduction, optional
        Completes every sum over examples (default: local).

    Raises
    ------
    ValueError
        Naming the argument: labels that are neither class indices nor
        one-hot, ``C`` rows not matching ``Y0`` rows, ``Y0`` width not the
        network's, a negative ``alpha_theta`` or ``alpha_W``, regularizers that
        do not fit ``theta`` or ``W``.
    """

    def __init__(
        self,
        network: Network,
        objective: Objective,
        Y0: Array,
        C: Array,
        alpha_theta: float = 1e-3,
        theta_regularizer: Regularizer | None = None,
        alpha_W: float = 1e-3,
        W_regularizer: Regularizer | None = None,
        n_classes: int | None = None,
        regression: bool = False,
        reduction: Reduction | None = None,
    ) -> None:
        if not isinstance(network, Network):
            raise TypeError(f"network must be an ocdl Network, got {type(network).__name__}")
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an ocdl Objective, got {type(objective).__name__}")
        self.network = network
        self.objective = objective
        self.Y0 = self._check_examples("Y0", Y0)
        self.n_examples, self.n_features = self.Y0.shape
        self.alpha_theta = _check_alpha("alpha_theta", alpha_theta)
        self.alpha_W = _check_alpha("alpha_W", alpha_W)
        self.regression = bool(regression)
        self.reduction = Reduction() if reduction is None else reduction
        self.C, self.n_classes = self._targets(C, n_classes)
        self.classes = objective.classes_of_targets(self.C)
        self.n_outputs = self.C.shape[1]
        self.theta_regularizer = (
            TimeSmoothness(network.n_steps, network.stepper.n_params, network.h)
            if theta_regularizer is None
            else theta_regularizer
        )
        self.W_regularizer = WeightDecay() if W_regularizer is None else W_regularizer
        self._check_regularizers()

    # -- validation -------------------------------------------------------
    def _check_examples(self, name: str, Y0: Array) -> Array:
        Y0 = check_array(name, Y0, ndim=2)
        width = self.network.stepper.n_features
        if width is not None and Y0.shape[1] != width:
            raise ValueError(
                f"{name} must have the network's width n = {width} columns (one example per row), "
                f"got shape {Y0.shape}"
            )
        return Y0

    def _targets(self, C: Array, n_classes: int | None) -> tuple[Array, int]:
        xp = get_array_module(self.Y0)
        C = xp.asarray(C)
        if C.ndim < 1 or C.shape[0] != self.n_examples:
            raise ValueError(
                f"C must hold one label (row) per example, i.e. per row of Y0 (s = {self.n_examples}), "
                f"got shape {C.shape}"
            )
        if self.regression:
            if n_classes is not None:
                raise ValueError("n_classes must be None with regression=True (C is the target matrix)")
            C = check_array("C", C, ndim=2).astype(self.Y0.dtype)
            return C, C.shape[1]
        n_classes = one_hot(C, n_classes).shape[1]  # validates C; infers n_classes
        return self.objective.prepare_labels(C, n_classes, self.Y0.dtype), n_classes

    def _check_regularizers(self) -> None:
        xp = get_array_module(self.Y0)
        dtype = self.Y0.dtype
        for name, reg, shape in (
            ("theta_regularizer", self.theta_regularizer, (self.network.n_params,)),
            ("W_regularizer", self.W_regularizer, (self.n_features, self.n_outputs)),
        ):
            if not isinstance(reg, Regularizer):
                raise TypeError(f"{name} must be an ocdl Regularizer, got {type(reg).__name__}")
            try:
                reg.value(xp.zeros(shape, dtype=dtype))
            except ValueError as err:
                raise ValueError(f"{name} does not accept an array of shape {shape}: {err}") from err

    def _rows(self, name: str, indices: Array | None) -> tuple[Array, Array, int]:
        """``(Y0, C, count)`` of the training examples ``indices`` (all if ``None``)."""
        if indices is None:
            return self.Y0, self.C, self.n_examples
        idx = get_array_module(indices).asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"{name} must be a non-empty 1-D integer array of example indices, got "
                f"shape {idx.shape} and dtype {idx.dtype}"
            )
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= self.n_examples:
            raise ValueError(f"{name} must lie in 0..{self.n_examples - 1}, got values in {low}..{high}")
        idx = get_array_module(self.Y0).asarray(idx)
        return self.Y0[idx], self.C[idx], int(idx.size)

    # -- the classifier as one flat vector ------------------------------------
    def pack_classifier(self, W: Array, mu: Array) -> Array:
        r"""The flat vector :math:`x = (\operatorname{vec}_\text{row}(W), \mu)` of ``n m + m`` entries."""
        n, m = self.n_features, self.n_outputs
        if W.shape != (n, m):
            raise ValueError(f"W must have shape (n, m) = ({n}, {m}), got {W.shape}")
        if mu.shape != (m,):
            raise ValueError(f"mu must have shape (m,) = ({m},), got {mu.shape}")
        return get_array_module(W, mu).concatenate([W.ravel(), mu])

    def unpack_classifier(self, x: Array) -> tuple[Array, Array]:
        """Inverse of :meth:`pack_classifier`: views ``(W, mu)`` of shapes ``(n, m)`` and ``(m,)``."""
        n, m = self.n_features, self.n_outputs
        if x.shape != (n * m + m,):
            raise ValueError(f"x must have n m + m = {n * m + m} entries (W and mu), got shape {x.shape}")
        return x[: n * m].reshape(n, m), x[n * m :]

    def initial_classifier(self) -> tuple[Array, Array]:
        """Zero ``(W, mu)`` on the device and in the dtype of the examples."""
        xp = get_array_module(self.Y0)
        return (
            xp.zeros((self.n_features, self.n_outputs), dtype=self.Y0.dtype),
            xp.zeros(self.n_outputs, dtype=self.Y0.dtype),
        )

    # -- objective and gradient -------------------------------------------
    def features(self, theta: Array, indices: Array | None = None, Y0: Array | None = None) -> Array:
        r"""Output features :math:`Y_N(\theta)` of the training examples ``indices`` (all if ``None``),
        or of the examples ``Y0`` when given (then ``indices`` must be ``None``)."""
        if Y0 is None:
            Y0, _, _ = self._rows("indices", indices)
        elif indices is not None:
            raise ValueError("give either indices (training examples) or Y0 (other examples), not both")
        else:
            Y0 = self._check_examples("Y0", Y0)
        return self.network.forward(theta, Y0)

    def value(self, theta: Array, W: Array, mu: Array, indices: Array | None = None) -> float:
        r""":math:`f(\theta, W, \mu)` with :math:`S` averaged over the examples ``indices`` (all if ``None``)."""
        Y0, C, count = self._rows("indices", indices)
        S = self.objective.value(self.network.forward(theta, Y0), W, mu, C)
        return self.reduction.mean(S, count) + self._regularization(theta, W)

    def value_and_gradient(
        self, theta: Array, W: Array, mu: Array, indices: Array | None = None
    ) -> tuple[float, tuple[Array, Array, Array]]:
        r""":math:`f` and :math:`(\nabla_\theta f, \nabla_W f, \nabla_\mu f)` on the examples ``indices``.

        One forward sweep and one adjoint sweep:
        :math:`\nabla_\theta f = J^T \partial S/\partial Y_N + \alpha_\theta H_R\theta`.
        """
        Y0, C, count = self._rows("indices", indices)
        with self.network.trajectory(theta, Y0) as traj:
            YN = self.network.stepper.output(traj.final_state)
            S, (dYN, dW, dmu) = self.objective.value_and_gradient(YN, W, mu, C)
            g_theta = self.network.vjp(theta, Y0, dYN, trajectory=traj)
        mean = self.reduction.mean
        return mean(S, count) + self._regularization(theta, W), (
            mean(g_theta, count) + self.alpha_theta * self.theta_regularizer.gradient(theta),
            mean(dW, count) + self.alpha_W * self.W_regularizer.gradient(W),
            mean(dmu, count),
        )

    def _regularization(self, theta: Array, W: Array) -> float:
        return self.alpha_theta * self.theta_regularizer.value(theta) + self.alpha_W * self.W_regularizer.value(W)

    # -- problems for the Newton-type solvers -------------------------------
    def theta_problem(
        self,
        W: Array,
        mu: Array,
        indices: Array | None = None,
        hessian_indices: Array | None = None,
        shift: float = 1e-2,
    ) -> ThetaProblem:
        r"""The problem in :math:`\theta` with :math:`(W, \mu)` fixed, for :func:`solvers.gauss_newton_pcg`.

        Parameters
        ----------
        W, mu : array
            The fixed classifier.
        indices : array of int, optional
            Training examples of the value and gradient (all if ``None``).
        hessian_indices : array of int, optional
            Training examples of the Gauss-Newton matrix (``indices`` if ``None``).
        shift : float
            :math:`\sigma > 0` of the preconditioner
            :math:`(\alpha_\theta H_R + \sigma I)^{-1}`.
        """
        return ThetaProblem(self, W, mu, indices, hessian_indices, shift)

    def classifier_problem(self, YN: Array, indices: Array | None = None, shift: float = 1e-2) -> ClassifierProblem:
        r"""The problem in the flat :math:`x = (W, \mu)` with the features fixed, for :func:`solvers.newton_pcg`.

        Parameters
        ----------
        YN : array, shape ``(len(indices), n)``
            Output features of the training examples ``indices`` (all if
            ``None``), in that order (see :meth:`features`).
        indices : array of int, optional
            Which training examples (their targets).
        shift : float
            :math:`\sigma > 0` of the preconditioner
            :math:`(\alpha_W H_{R_W} + \sigma I)^{-1}` (the regularizer's fast solve,
            e.g. the DCT-diagonalised Laplacian of :class:`~ocdl.SpatialSmoothness`).
        """
        return ClassifierProblem(self, YN, indices, shift)

    # -- prediction --------------------------------------------------------
    def class_indices(self, C: Array) -> Array:
        """Validate labels (class indices or one-hot) and return them as class indices ``(s,)``
        on the device of the training examples."""
        return one_hot(get_array_module(self.Y0).asarray(C), self.n_classes).argmax(axis=1)

    def predict(self, theta: Array, W: Array, mu: Array, Y0: Array | None = None) -> Array:
        """Predicted class indices of the examples ``Y0`` (default: the training examples)."""
        return self.objective.predict(self.features(theta, Y0=Y0), W, mu)

    def accuracy(
        self, theta: Array, W: Array, mu: Array, Y0: Array | None = None, C: Array | None = None
    ) -> float:
        """Fraction of the examples ``Y0`` with labels ``C`` (default: the training set) classified correctly.

        ``C``: class indices or one-hot matrix (required with ``Y0``).
        """
        if Y0 is None:
            labels, count = self.classes, self.n_examples
        else:
            if C is None:
                raise ValueError("accuracy on examples Y0 needs their labels C")
            labels, count = self.class_indices(C), Y0.shape[0]
            if labels.shape[0] != count:
                raise ValueError(f"C must hold one label per row of Y0 ({count}), got {labels.shape[0]}")
        correct = int((self.predict(theta, W, mu, Y0) == labels).sum())
        return self.reduction.sum(correct) / self.reduction.sum(count)

    # -- multilevel ---------------------------------------------------------
    def with_network(self, network: Network) -> LearningProblem:
        """The same problem on ``network`` (e.g. ``self.network.with_steps(2 * N)``).

        A :class:`~ocdl.TimeSmoothness` regularizer (the default) is rebuilt for
        the new number of steps and step size; any other is kept.
        """
        new = copy.copy(self)
        new.network = network
        if isinstance(self.theta_regularizer, TimeSmoothness):
            new.theta_regularizer = TimeSmoothness(network.n_steps, network.stepper.n_params, network.h)
        new._check_examples("Y0", self.Y0)
        new._check_regularizers()
        return new

    def __repr__(self) -> str:
        return (
            f"LearningProblem({self.network!r}, {type(self.objective).__name__}(), s={self.n_examples}, "
            f"n_classes={self.n_classes}, alpha_theta={self.alpha_theta:g}, alpha_W={self.alpha_W:g})"
        )


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
        if not shift > 0:
            raise ValueError(f"shift must be positive, got {shift!r}")
        self.problem = problem
        self.W, self.mu = W, mu
        self.indices = indices
        self.hessian_indices = hessian_indices
        self.shift = float(shift)
        self.rows = problem._rows("indices", indices)
        self.hessian_rows = None if hessian_indices is None else problem._rows("hessian_indices", hessian_indices)

    def value(self, theta: Array) -> float:
        """:math:`f(\\theta, W, \\mu)` on the examples ``indices`` (the line search)."""
        return self.problem.value(theta, self.W, self.mu, self.indices)

    def model(self, theta: Array) -> ThetaModel:
        """The Gauss-Newton model at ``theta`` (one forward sweep, reused by every product)."""
        return ThetaModel(self, theta)


class ThetaModel:
    r"""Value, gradient and Gauss-Newton products of :math:`f` in :math:`\theta` at one point.

    The forward states of the examples are computed once, here; the gradient
    (one adjoint sweep, computed when first read) and every Gauss-Newton
    product :math:`H_{GN} v` (one sensitivity and one adjoint sweep) reuse
    them. With ``hessian_indices``, the forward states of that sub-sample
    are computed once, at the first product.
    """

    def __init__(self, owner: ThetaProblem, theta: Array) -> None:
        lp = owner.problem
        self.owner, self.theta = owner, theta
        Y0, C, count = owner.rows
        self._trajectory = lp.network.trajectory(theta, Y0)
        self._YN = lp.network.stepper.output(self._trajectory.final_state)
        S, (self._dYN, _, _) = lp.objective.value_and_gradient(self._YN, owner.W, owner.mu, C)
        self.value = lp.reduction.mean(S, count) + lp._regularization(theta, owner.W)

    @cached_property
    def gradient(self) -> Array:
        r""":math:`\nabla_\theta f = J^T \partial S / \partial Y_N + \alpha_\theta H_R \theta`."""
        lp, (Y0, _, count) = self.owner.problem, self.owner.rows
        g = lp.network.vjp(self.theta, Y0, self._dYN, trajectory=self._trajectory)
        return lp.reduction.mean(g, count) + lp.alpha_theta * lp.theta_regularizer.gradient(self.theta)

    @cached_property
    def _hessian_data(self) -> tuple[Array, Array, int, Any, Array]:
        """``(Y0, C, count, trajectory, Y_N)`` of the Hessian's examples."""
        if self.owner.hessian_rows is None:
            Y0, C, count = self.owner.rows
            return Y0, C, count, self._trajectory, self._YN
        Y0, C, count = self.owner.hessian_rows
        traj = self.owner.problem.network.trajectory(self.theta, Y0)
        return Y0, C, count, traj, self.owner.problem.network.stepper.output(traj.final_state)

    def hessian_matvec(self, v: Array) -> Array:
        r"""Gauss-Newton product :math:`J^T \frac{\partial^2 S}{\partial Y_N^2} J v + \alpha_\theta H_R v`."""
        lp = self.owner.problem
        Y0, C, count, traj, YN = self._hessian_data
        dY = lp.network.jvp(self.theta, Y0, v, trajectory=traj)
        HdY = lp.objective.hessian_Y(YN, self.owner.W, self.owner.mu, C, dY)
        JtHJv = lp.network.vjp(self.theta, Y0, HdY, trajectory=traj)
        return lp.reduction.mean(JtHJv, count) + lp.alpha_theta * lp.theta_regularizer.hessian_matvec(v)

    def precondition(self, r: Array) -> Array:
        r""":math:`(\alpha_\theta H_R + \sigma I)^{-1} r`, the regularizer's fast solve
        (``R.precondition(r, sigma / alpha) / alpha``; ``r / sigma`` when :math:`\alpha_\theta = 0`)."""
        lp, shift = self.owner.problem, self.owner.shift
        if lp.alpha_theta == 0.0:
            return r / shift
        return lp.theta_regularizer.precondition(r, shift / lp.alpha_theta) / lp.alpha_theta

    def metrics(self) -> dict:
        """``batch_accuracy``: accuracy on the examples of the value (free: the features are at hand)."""
        lp = self.owner.problem
        _, C, count = self.owner.rows
        acc = lp.objective.accuracy(self._YN, self.owner.W, self.owner.mu, C)
        return {"batch_accuracy": float(lp.reduction.mean(acc, count))}


class ClassifierProblem:
    r"""Minimise :math:`x = (W, \mu) \mapsto f` for fixed features (see
    :meth:`LearningProblem.classifier_problem`); convex, so Newton's method applies."""

    def __init__(self, problem: LearningProblem, YN: Array, indices: Array | None, shift: float = 1e-2) -> None:
        if not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        self.problem, self.shift = problem, float(shift)
        _, self.C, self.count = problem._rows("indices", indices)
        self.YN = check_array("YN", YN, shape=(self.count, problem.n_features))

    def value(self, x: Array) -> float:
        r""":math:`S(Y_N W + e\mu^T, C) + \alpha_W R_W(W)` (+ the constant :math:`\alpha_\theta R(\theta)`, omitted)."""
        lp = self.problem
        W, mu = lp.unpack_classifier(x)
        S = lp.objective.value(self.YN, W, mu, self.C)
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
        S, (_, dW, dmu) = lp.objective.value_and_gradient(owner.YN, self.W, self.mu, owner.C)
        mean = lp.reduction.mean
        self.value = mean(S, owner.count) + lp.alpha_W * lp.W_regularizer.value(self.W)
        self.gradient = lp.pack_classifier(
            mean(dW, owner.count) + lp.alpha_W * lp.W_regularizer.gradient(self.W), mean(dmu, owner.count)
        )

    def hessian_matvec(self, v: Array) -> Array:
        r""":math:`\nabla^2_{(W,\mu)} S\,(dW, d\mu) + \alpha_W (H_{R_W} dW, 0)`, exact."""
        lp, owner = self.owner.problem, self.owner
        dW, dmu = lp.unpack_classifier(v)
        HdW, Hdmu = lp.objective.hessian_W(owner.YN, self.W, self.mu, owner.C, dW, dmu)
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
        acc = lp.objective.accuracy(owner.YN, self.W, self.mu, owner.C)
        return {"batch_accuracy": float(lp.reduction.mean(acc, owner.count))}
