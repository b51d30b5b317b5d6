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
wrap these for :func:`ocdl.solvers.gauss_newton_pcg` and :func:`ocdl.solvers.newton_pcg`
(the protocol of :mod:`ocdl.solvers.newton`): a model is built once per outer
iteration, computes the forward states once and reuses them for the gradient
and for every Hessian-vector product of PCG.

Every data term may be evaluated on a sub-sample of the examples (``indices``;
the paper evaluates the Hessian on a further sub-sample, ``hessian_indices``),
and every cross-example reduction goes through one :class:`ocdl.reduction.Reduction`.

Since :math:`S` is a mean over examples, every data term is a weighted sum
over any partition of the examples into chunks :math:`B_c`:

.. math::

   S = \sum_c \frac{|B_c|}{s} S_{B_c}, \qquad
   J^T \frac{\partial S}{\partial Y_N} = \sum_c \frac{|B_c|}{s}
       J_{B_c}^T \frac{\partial S_{B_c}}{\partial Y_{N, B_c}},

and likewise for the Gauss-Newton products. With ``chunk_size`` the sweeps
propagate at most that many examples at once, so the memory of the forward
states (and of the working arrays of a step) is that of one chunk, whatever
the number of examples; the results agree with the unchunked ones up to
rounding. The output features of the training examples at the last
:math:`\theta` are kept (one entry, keyed by a copy of :math:`\theta` and the
indices), so that the line search's last trial, the next model and the
training accuracy share one forward sweep.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import Any

import numpy as np

from .backend import asnumpy, get_array_module
from .fingerprint import describe, digest_rows
from .network import Network
from .objectives import Objective, one_hot
from .reduction import Reduction
from .regularizers import Regularizer, TimeSmoothness, WeightDecay
from .validation import check_array, check_nonnegative, check_positive

Array = Any  # a NumPy or CuPy array


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
        With a data-parallel ``reduction``: this worker's share of the examples
        (see :mod:`ocdl.distributed`); :attr:`n_examples` counts them all.
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
        Number of classes, at least 2 (inferred from ``C`` when not given; then
        every class ``0..max(C)`` must have an example).
    regression : bool
        ``C`` is a real target matrix used as is (e.g. outputs of a known
        network fitted by :class:`~ocdl.LeastSquares`); classes, for the
        accuracy, are then the ``argmax`` over its columns.
    reduction : Reduction, optional
        Completes every sum over examples (default: local). Example indices
        (``indices``, ``hessian_indices``) are global: ``0 .. n_examples - 1``
        over the workers' shares in rank order, each worker using those in its
        share. Building the problem is then a collective operation, which
        checks that the workers agree on everything but their examples.
    chunk_size : int, optional
        Examples propagated at once (all if ``None``): every sweep runs over
        chunks of at most ``chunk_size`` rows and sums their contributions
        (see the module docstring), which bounds the memory by one chunk's.
        The training examples ``Y0`` must not be changed in place afterwards
        (their output features are cached).

    Raises
    ------
    ValueError
        Naming the argument: labels that are neither class indices nor
        one-hot, fewer than two classes, inferred classes without an example
        (pass ``n_classes`` when a class is absent from the sample), ``C`` rows
        not matching ``Y0`` rows, no example (``s = 0``), ``Y0`` width not the
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
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(network, Network):
            raise TypeError(f"network must be an ocdl Network, got {type(network).__name__}")
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an ocdl Objective, got {type(objective).__name__}")
        self.network = network
        self.objective = objective
        self.Y0 = self._check_examples("Y0", Y0)
        self.n_examples, self.n_features = self.Y0.shape
        self.alpha_theta = check_nonnegative("alpha_theta", alpha_theta)
        self.alpha_W = check_nonnegative("alpha_W", alpha_W)
        self.regression = bool(regression)
        self.reduction = Reduction() if reduction is None else reduction
        self.chunk_size = None if chunk_size is None else check_positive("chunk_size", chunk_size, integer=True)
        self.release()
        if n_classes is None and self.reduction.size > 1 and not regression and getattr(C, "ndim", 1) == 1:
            raise ValueError("n_classes is required with class-index labels split over workers (a worker's share "
                             "may lack a class)")
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
        self.reduction.check_same("learning problems", self._description())
        self.first_example, self.n_examples = self.reduction.partition(self.Y0.shape[0])

    # -- validation -------------------------------------------------------
    def _check_examples(self, name: str, Y0: Array) -> Array:
        Y0 = check_array(name, Y0, ndim=2)
        if Y0.shape[0] == 0:
            raise ValueError(
                f"{name} must hold at least one example (one per row, s >= 1), got shape {Y0.shape}"
            )
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

    def _description(self) -> dict:
        """What the workers' problems must share (everything but their examples), as comparable values."""
        return {
            "stepper": repr(self.network.stepper),  # not the memory policy: it may depend on the share's size
            "n_steps": self.network.n_steps,
            "final_time": self.network.final_time,
            "objective": describe(self.objective),
            "alpha_theta": self.alpha_theta,
            "theta_regularizer": describe(self.theta_regularizer),
            "alpha_W": self.alpha_W,
            "W_regularizer": describe(self.W_regularizer),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "n_outputs": self.n_outputs,
            "regression": self.regression,
            "dtype": str(self.Y0.dtype),
        }

    def _rows(self, name: str, indices: Array | None) -> tuple[Array, Array, int]:
        """``(Y0, C, count)`` of this worker's training examples among ``indices`` (all if ``None``)."""
        idx = self._indices(name, indices)
        if idx is None:
            return self.Y0, self.C, self.Y0.shape[0]
        return self.Y0[idx], self.C[idx], int(idx.size)

    def _indices(self, name: str, indices: Array | None) -> Array | None:
        """``indices`` validated as global example indices; this worker's rows among them, on its device."""
        if indices is None:
            return None
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
        if self.Y0.shape[0] == self.n_examples:  # one worker holds all examples
            return idx
        first, last = self.first_example, self.first_example + self.Y0.shape[0]
        return idx[(idx >= first) & (idx < last)] - first

    def _chunks(self, count: int) -> list[slice]:
        """Slices of at most ``chunk_size`` consecutive rows covering ``0..count``."""
        size = max(count, 1) if self.chunk_size is None else self.chunk_size
        return [slice(start, min(start + size, count)) for start in range(0, max(count, 1), size)]

    def _propagate(self, theta: Array, Y0: Array) -> Array:
        r""":math:`Y_N(\theta)` of the rows ``Y0``, one chunk at a time."""
        with self.reduction.errors():  # a blow-up on this worker's examples stops every worker
            parts = [self.network.forward(theta, Y0[rows]) for rows in self._chunks(Y0.shape[0])]
        return parts[0] if len(parts) == 1 else get_array_module(Y0).concatenate(parts)

    def _pieces(self, theta: Array, Y0: Array, C: Array, close: bool = True):
        r"""Per chunk :math:`B_c` of the rows: ``(weight, Y0_c, C_c, trajectory, Y_N,c)``, weight :math:`|B_c|/s`.

        A generator of forward sweeps; with ``close`` each chunk's trajectory
        is closed (its memory released) when the next one is asked for,
        otherwise it is kept for repeated products."""
        count = Y0.shape[0]
        if count == 0:  # a worker without examples of this sub-sample adds nothing
            return
        for rows in self._chunks(count):
            with self.reduction.errors():  # a blow-up on this worker's examples stops every worker
                traj = self.network.trajectory(theta, Y0[rows])
            yield (rows.stop - rows.start) / count, Y0[rows], C[rows], traj, self.network.stepper.output(
                traj.final_state)
            if close:
                traj.close()

    def _data_gradient(self, theta: Array, W: Array, mu: Array, pieces) -> tuple[Any, Array, Array, Array]:
        r""":math:`S` and its gradients :math:`(J^T \partial S/\partial Y_N, \partial S/\partial W,
        \partial S/\partial\mu)`, summed over ``pieces`` (from :meth:`_pieces`) with their weights."""
        xp = get_array_module(theta)
        S, g_theta, dW, dmu = 0.0, xp.zeros_like(theta), xp.zeros_like(W), xp.zeros_like(mu)
        for weight, Y0_c, C_c, traj, YN in pieces:
            S_c, (dYN, dW_c, dmu_c) = self.objective.value_and_gradient(YN, W, mu, C_c)
            g_c = self.network.vjp(theta, Y0_c, dYN, trajectory=traj)
            S, g_theta = S + weight * S_c, g_theta + weight * g_c
            dW, dmu = dW + weight * dW_c, dmu + weight * dmu_c
        return S, g_theta, dW, dmu

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
        if Y0 is not None:
            if indices is not None:
                raise ValueError("give either indices (training examples) or Y0 (other examples), not both")
            return self._propagate(theta, self._check_examples("Y0", Y0))
        YN = self._last_features.get(theta, indices)
        if YN is None:
            YN = self._propagate(theta, self._rows("indices", indices)[0])
            self._last_features.put(theta, indices, YN)
        return YN

    def release(self) -> None:
        r"""Drop the kept output features :math:`Y_N(\theta)` of the last sweep (their memory,
        ``s x n`` entries); the next call that needs them propagates again."""
        self._last_features = _LastFeatures()

    def value(self, theta: Array, W: Array, mu: Array, indices: Array | None = None) -> float:
        r""":math:`f(\theta, W, \mu)` with :math:`S` averaged over the examples ``indices`` (all if ``None``)."""
        idx = self._indices("indices", indices)
        C, count = (self.C, self.Y0.shape[0]) if idx is None else (self.C[idx], int(idx.size))
        S = self.objective.value(self.features(theta, indices), W, mu, C) if count else 0.0
        return self.reduction.mean(S, count) + self._regularization(theta, W)

    def value_and_gradient(
        self, theta: Array, W: Array, mu: Array, indices: Array | None = None
    ) -> tuple[float, tuple[Array, Array, Array]]:
        r""":math:`f` and :math:`(\nabla_\theta f, \nabla_W f, \nabla_\mu f)` on the examples ``indices``.

        One forward sweep and one adjoint sweep (per chunk):
        :math:`\nabla_\theta f = J^T \partial S/\partial Y_N + \alpha_\theta H_R\theta`.
        """
        Y0, C, count = self._rows("indices", indices)
        S, g_theta, dW, dmu = self._data_gradient(theta, W, mu, self._pieces(theta, Y0, C))
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
        r"""The problem in :math:`\theta` with :math:`(W, \mu)` fixed, for :func:`ocdl.solvers.gauss_newton_pcg`.

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
        r"""The problem in the flat :math:`x = (W, \mu)` with the features fixed, for :func:`ocdl.solvers.newton_pcg`.

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
            labels, count = self.classes, self.Y0.shape[0]
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
        new.release()
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

    # -- description for checkpoints -----------------------------------------
    def fingerprint(self, validation: tuple[Array, Array] | None = None) -> dict:
        r"""What defines this problem beyond its shapes, as JSON-able values (checked on resume).

        Problems built from equal arguments have equal fingerprints, on either
        device; another objective, :math:`\alpha_\theta`, :math:`\alpha_W`,
        regularizer, or other data (even of the same size) give another.
        ``chunk_size`` and ``reduction`` are left out: they change how the
        sums are computed, not what they are.

        Parameters
        ----------
        validation : (Y_val, C_val), optional
            Validation data of a run on this problem, hashed with the rest.

        Returns
        -------
        dict
            ``objective``, ``theta_regularizer``, ``W_regularizer``: the class
            and its parameters (its ``repr`` if the class defines one, else
            its public attributes, arrays by content hash); ``alpha_theta``,
            ``alpha_W``: floats; ``Y0``, ``C`` (the target matrix) and
            ``validation`` (``None`` without): SHA-256 hex digests of the
            arrays' dtypes, shapes and bytes.

        Notes
        -----
        Hashing reads every byte of the data once, after copying CuPy arrays
        to the host: about a second per GB (MNIST's training set in float64:
        0.4 GB), paid once per run with checkpoints.
        """
        if validation is not None and (not isinstance(validation, (tuple, list)) or len(validation) != 2):
            raise TypeError(f"validation must be a pair (Y_val, C_val), got {type(validation).__name__}")
        return {
            "objective": describe(self.objective),
            "alpha_theta": self.alpha_theta,
            "theta_regularizer": describe(self.theta_regularizer),
            "alpha_W": self.alpha_W,
            "W_regularizer": describe(self.W_regularizer),
            "Y0": digest_rows(self.reduction, self.Y0),
            "C": digest_rows(self.reduction, self.C),
            "validation": None if validation is None else digest_rows(self.reduction, *validation),
        }


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
        shift = check_positive("shift", shift)
        self.problem = problem
        self.W, self.mu = W, mu
        self.indices = indices
        self.hessian_indices = hessian_indices
        self.shift = float(shift)
        self.rows = problem._rows("indices", indices)
        self.hessian_rows = (
            self.rows if hessian_indices is None else problem._rows("hessian_indices", hessian_indices)
        )

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
        _, C, count = owner.rows
        self._YN = lp.features(theta, owner.indices)
        S = lp.objective.value(self._YN, owner.W, owner.mu, C) if count else 0.0
        self.value = lp.reduction.mean(S, count) + lp._regularization(theta, owner.W)

    @cached_property
    def gradient(self) -> Array:
        r""":math:`\nabla_\theta f = \sum_c \frac{|B_c|}{s} J_{B_c}^T \partial S_{B_c} / \partial Y_N
        + \alpha_\theta H_R \theta`."""
        lp, owner = self.owner.problem, self.owner
        Y0, C, count = owner.rows
        pieces = self._hessian_pieces if owner.hessian_rows is owner.rows else lp._pieces(self.theta, Y0, C)
        _, g, _, _ = lp._data_gradient(self.theta, owner.W, owner.mu, pieces)
        return lp.reduction.mean(g, count) + lp.alpha_theta * lp.theta_regularizer.gradient(self.theta)

    @cached_property
    def _hessian_pieces(self) -> list[tuple]:
        """``(weight, Y0_c, C_c, trajectory, Y_N,c)`` per chunk of the Hessian's examples, kept."""
        Y0, C, _ = self.owner.hessian_rows
        return list(self.owner.problem._pieces(self.theta, Y0, C, close=False))

    def hessian_matvec(self, v: Array) -> Array:
        r"""Gauss-Newton product :math:`J^T \frac{\partial^2 S}{\partial Y_N^2} J v + \alpha_\theta H_R v`
        (summed over the chunks of the Hessian's examples)."""
        lp, owner = self.owner.problem, self.owner
        count = owner.hessian_rows[2]
        JtHJv = get_array_module(v).zeros_like(v)
        for weight, Y0_c, C_c, traj, YN in self._hessian_pieces:
            dY = lp.network.jvp(self.theta, Y0_c, v, trajectory=traj)
            HdY = lp.objective.hessian_Y(YN, owner.W, owner.mu, C_c, dY)
            JtHJv = JtHJv + weight * lp.network.vjp(self.theta, Y0_c, HdY, trajectory=traj)
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
        acc = lp.objective.accuracy(self._YN, self.owner.W, self.owner.mu, C) if count else 0.0
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
        S, (_, dW, dmu) = (
            lp.objective.value_and_gradient(owner.YN, self.W, self.mu, owner.C) if owner.count
            else (0.0, (None, *lp.initial_classifier()))  # a worker without examples of the sub-sample: zeros
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
        HdW, Hdmu = (lp.objective.hessian_W(owner.YN, self.W, self.mu, owner.C, dW, dmu) if owner.count
                     else lp.initial_classifier())
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


class _LastFeatures:
    r"""The output features :math:`Y_N(\theta)` of the last training rows propagated, keyed by
    a copy of :math:`\theta` and of the row indices (one entry)."""

    def __init__(self) -> None:
        self._key: tuple[Array, Array | None] | None = None
        self._YN: Array | None = None

    def get(self, theta: Array, indices: Array | None) -> Array | None:
        """The kept features if ``(theta, indices)`` equal the key, else ``None``."""
        if self._key is None:
            return None
        key_theta, key_indices = self._key
        xp = get_array_module(theta)
        if key_theta.shape != theta.shape or key_theta.dtype != theta.dtype or not bool(xp.all(key_theta == theta)):
            return None
        if (key_indices is None) != (indices is None):
            return None
        if indices is not None:
            indices = asnumpy(indices)
            if key_indices.shape != indices.shape or not np.array_equal(key_indices, indices):
                return None
        return self._YN

    def put(self, theta: Array, indices: Array | None, YN: Array) -> None:
        """Keep ``YN`` as the features at ``(theta, indices)`` (copies of the key)."""
        self._key = (theta.copy(), None if indices is None else np.array(asnumpy(indices)))
        self._YN = YN
