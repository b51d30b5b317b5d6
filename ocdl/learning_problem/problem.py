r"""The learning problem :math:`f(\theta, W, \mu)` of eq. (2.4): value, gradient, prediction, sub-problems.

The mathematics, the chunked sums and the reduction are described in :mod:`ocdl.learning_problem`.
"""

from __future__ import annotations

import copy

from ..backend import Array, get_array_module
from ..fingerprint import describe, digest, digest_rows
from ..objectives import Objective
from ..propagation import Network
from ..reduction import Reduction
from ..regularizers import Regularizer, TimeSmoothness, WeightDecay
from ..validation import check_array, check_nonnegative, check_positive
from .classifier import ClassifierProblem, pack_classifier, unpack_classifier
from .examples import Rows, check_examples, check_indices, share_of
from .features import FeatureCache
from .sweeps import data_gradient, forward_chunks, propagate
from .targets import class_indices, training_targets
from .theta import ThetaProblem


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
        Number of classes, at least 2. When not given: from class indices
        ``0..max(C)``, every one of which must have an example; from a one-hot
        ``C``, its number of columns (a column without an example stays a class).
    regression : bool
        ``C`` is a real target matrix used as is (e.g. outputs of a known
        network fitted by :class:`~ocdl.LeastSquares`); classes, for the
        accuracy, are then the ``argmax`` over its columns.
    reduction : Reduction, optional
        Completes every sum over examples (default: local). Example indices
        (``indices``, ``hessian_indices``) are global: ``0 .. n_examples - 1``
        over the workers' shares in rank order, each worker using those in its
        share. Building the problem is then a collective operation, which
        checks that the workers agree on everything but their examples (and
        needs ``n_classes`` with class-index labels: a share may lack a class).
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
        one-hot, fewer than two classes, classes inferred from indices without
        an example (pass ``n_classes`` when a class is absent from the sample), ``C`` rows
        not matching ``Y0`` rows, no example (``s = 0``), ``Y0`` width not the
        network's, a negative ``alpha_theta`` or ``alpha_W``, regularizers that
        do not fit ``theta`` or ``W``.
    TypeError
        Naming the argument: ``network``, ``objective``, a regularizer or
        ``reduction`` not of its ocdl class, ``Y0`` not a float32 or float64
        array.
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
        if reduction is not None and not isinstance(reduction, Reduction):
            raise TypeError(f"reduction must be an ocdl Reduction (e.g. ocdl.distributed.MPIReduction), got "
                            f"{type(reduction).__name__}")
        self.network = network
        self.objective = objective
        self.alpha_theta = check_nonnegative("alpha_theta", alpha_theta)
        self.alpha_W = check_nonnegative("alpha_W", alpha_W)
        self.regression = bool(regression)
        self.reduction = Reduction() if reduction is None else reduction
        self.chunk_size = None if chunk_size is None else check_positive("chunk_size", chunk_size, integer=True)
        self.release()
        if n_classes is None and self.reduction.size > 1 and not self.regression and getattr(C, "ndim", 1) == 1:
            raise ValueError("n_classes is required with class-index labels split over workers (a worker's share "
                             "may lack a class)")
        with self.reduction.errors():  # a worker's bad share stops every worker, at check_same below
            self.Y0 = self.check_examples(Y0)
            self.n_features = self.Y0.shape[1]
            self.C, self.n_classes, self.classes = training_targets(objective, C, self.Y0, n_classes, self.regression)
            self.n_outputs = self.C.shape[1]
            self.theta_regularizer = (
                TimeSmoothness(network.n_steps, network.stepper.n_params, network.h)
                if theta_regularizer is None
                else theta_regularizer
            )
            self.W_regularizer = WeightDecay() if W_regularizer is None else W_regularizer
            _check_regularizers(self)
        self.reduction.check_same("learning problems", self._description())
        self.first_example, self.n_examples = self.reduction.partition(self.Y0.shape[0])

    # -- the examples -------------------------------------------------------
    def check_examples(self, Y0: Array, name: str = "Y0") -> Array:
        """Check ``Y0`` as examples for this problem's network (e.g. validation examples) and return it.

        Parameters
        ----------
        Y0 : array, shape ``(s, n)``
            Examples, one per row: a float32 or float64 NumPy or CuPy array,
            finite, with at least one row and the network's width ``n``
            columns (any width for a network of free width).
        name : str
            The argument's name in error messages.

        Returns
        -------
        array
            ``Y0`` itself.

        Raises
        ------
        TypeError
            Not a float32 or float64 array.
        ValueError
            Naming ``name``: not 2-D, no row, NaN or Inf entries, or not the
            network's width.
        """
        return check_examples(name, Y0, self.network.stepper.n_features)

    def rows(self, indices: Array | None = None, name: str = "indices") -> Rows:
        """The training examples ``indices`` (all if ``None``), with their targets and their number.

        Parameters
        ----------
        indices : array of int, optional
            Row indices into the training examples (non-empty, 1-D, in
            ``0..n_examples-1``; repeats allowed), NumPy or CuPy.
        name : str
            The argument's name in error messages.

        Returns
        -------
        Rows
            ``(Y0, C, count)``: ``Y0[indices]``, ``C[indices]`` (the target
            matrix's rows) and ``len(indices)``; the arrays themselves and
            their number of rows if ``indices`` is ``None``. On this process
            (its share's rows among ``indices``, none possibly): the ``count``
            to pass to :meth:`ocdl.reduction.Reduction.mean`.

        Raises
        ------
        ValueError
            Naming ``name``: indices empty, not 1-D, not integers or out of range.
        """
        idx = self._own_indices(name, indices)
        if idx is None:
            return Rows(self.Y0, self.C, self.Y0.shape[0])
        return Rows(self.Y0[idx], self.C[idx], int(idx.size))

    def _own_indices(self, name: str, indices: Array | None) -> Array | None:
        """``indices`` checked as global example indices; this worker's rows among them (all if ``None``)."""
        idx = check_indices(name, indices, self.n_examples, self.Y0)
        return share_of(idx, self.first_example, self.Y0.shape[0], self.n_examples)

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

    # -- the parameters and other arrays ---------------------------------------
    def check_like_examples(self, name: str, x: Array, shape: tuple, finite: bool = True) -> Array:
        """Check ``x`` as an array of this problem, of the examples' module and dtype (a parameter ``theta``,
        ``W`` or ``mu``, or other examples), and return it.

        Parameters
        ----------
        name : str
            The argument's name in error messages.
        x : array
            A NumPy or CuPy array, as the examples are, of their dtype.
        shape : tuple
            Its shape (``None`` for a free dimension): ``(network.n_params,)`` for :math:`\\theta`,
            ``(n_features, n_outputs)`` for :math:`W`, ``(n_outputs,)`` for :math:`\\mu`.
        finite : bool
            Also check that every entry is finite.

        Raises
        ------
        TypeError
            Not a float array of the examples' module (NumPy or CuPy) and dtype.
        ValueError
            Another shape, or NaN or Inf entries (when ``finite``).
        """
        check_array(name, x, shape=shape, finite=finite)
        xp = get_array_module(self.Y0)
        if get_array_module(x) is not xp or x.dtype != self.Y0.dtype:
            raise TypeError(
                f"{name} must be a {xp.__name__} array of the examples' dtype {self.Y0.dtype}, "
                f"got a {get_array_module(x).__name__} array of dtype {x.dtype}"
            )
        return x

    def _check_classifier(self, W: Array, mu: Array, finite: bool = True) -> None:
        """``W`` and ``mu`` checked on every worker alike, before any reduction (an error raised only where a
        worker's rows use them would leave the others waiting); their entries too where ``finite``: not in
        :meth:`value`, whose NaN or Inf an Armijo line search takes as a failed trial."""
        self.check_like_examples("W", W, (self.n_features, self.n_outputs), finite=finite)
        self.check_like_examples("mu", mu, (self.n_outputs,), finite=finite)

    # -- the classifier as one flat vector ------------------------------------
    def pack_classifier(self, W: Array, mu: Array) -> Array:
        r"""The flat vector :math:`x = (\operatorname{vec}_\text{row}(W), \mu)` of ``n m + m`` entries."""
        return pack_classifier(W, mu, self.n_features, self.n_outputs)

    def unpack_classifier(self, x: Array) -> tuple[Array, Array]:
        """Inverse of :meth:`pack_classifier`: views ``(W, mu)`` of shapes ``(n, m)`` and ``(m,)``."""
        return unpack_classifier(x, self.n_features, self.n_outputs)

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
            with self.reduction.errors():  # a blow-up on this worker's examples stops every worker
                return propagate(self.network, theta, self.check_examples(Y0), self.chunk_size)
        YN = self._last_features.get(theta, indices)
        if YN is None:
            with self.reduction.errors():
                YN = propagate(self.network, theta, self.rows(indices).Y0, self.chunk_size)
            self._last_features.put(theta, indices, YN)
        return YN

    def release(self) -> None:
        r"""Drop the kept output features :math:`Y_N(\theta)` of the last sweep (their memory,
        ``s x n`` entries); the next call that needs them propagates again."""
        self._last_features = FeatureCache()

    def value(self, theta: Array, W: Array, mu: Array, indices: Array | None = None) -> float:
        r""":math:`f(\theta, W, \mu)` with :math:`S` averaged over the examples ``indices`` (all if ``None``)."""
        self._check_classifier(W, mu, finite=False)
        idx = self._own_indices("indices", indices)
        C, count = (self.C, self.Y0.shape[0]) if idx is None else (self.C[idx], int(idx.size))
        with self.reduction.errors():
            S = self.objective.value(self.features(theta, indices), W, mu, C) if count else 0.0
        return self.reduction.mean(S, count) + self.regularization(theta, W)

    def value_and_gradient(
        self, theta: Array, W: Array, mu: Array, indices: Array | None = None
    ) -> tuple[float, tuple[Array, Array, Array]]:
        r""":math:`f` and :math:`(\nabla_\theta f, \nabla_W f, \nabla_\mu f)` on the examples ``indices``.

        One forward sweep and one adjoint sweep (per chunk):
        :math:`\nabla_\theta f = J^T \partial S/\partial Y_N + \alpha_\theta H_R\theta`,
        :math:`\nabla_W f = \partial S/\partial W + \alpha_W H_{R_W} W`,
        :math:`\nabla_\mu f = \partial S/\partial\mu`.

        Parameters
        ----------
        theta : array, shape ``(n_params,)``
        W : array, shape ``(n_features, n_outputs)``
        mu : array, shape ``(n_outputs,)``
        indices : array of int, optional
            The training examples of :math:`S` (all if ``None``), global indices.

        Returns
        -------
        (float, (array, array, array))
            :math:`f` and its gradients, shaped like ``theta``, ``W`` and ``mu``. Where the data term
            overflows (not finite), the gradient in :math:`\theta` is NaN (no adjoint sweep).
        """
        self._check_classifier(W, mu)
        Y0, C, count = self.rows(indices)
        swept = forward_chunks(self.network, theta, Y0, C, self.chunk_size)
        with self.reduction.errors():  # a blow-up on this worker's examples stops every worker
            S, g_theta, dW, dmu = data_gradient(self.network, self.objective, theta, W, mu, swept)
        mean = self.reduction.mean
        return mean(S, count) + self.regularization(theta, W), (
            mean(g_theta, count) + self.alpha_theta * self.theta_regularizer.gradient(theta),
            mean(dW, count) + self.alpha_W * self.W_regularizer.gradient(W),
            mean(dmu, count),
        )

    def regularization(self, theta: Array, W: Array) -> float:
        r"""The regularization terms :math:`\alpha_\theta R(\theta) + \alpha_W R_W(W)` of :math:`f`.

        Parameters
        ----------
        theta : array, shape ``(n_params,)``
            The network's parameters.
        W : array, shape ``(n, m)``
            The classifier weights.

        Returns
        -------
        float
            No data term: the same on every process, never reduced.
        """
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

        Returns
        -------
        ThetaProblem
            ``value(theta)`` and ``model(theta)``, whose ``hessian_matvec(v)`` is the Gauss-Newton product
            :math:`J^T \nabla^2_{Y_N} S\, J v + \alpha_\theta H_R v` (on ``hessian_indices``) and whose
            ``gradient`` and ``precondition`` go with it.
        """
        self._check_classifier(W, mu)
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
        """Validate labels (class indices or one-hot; with ``regression``, class indices or a real
        ``(s, n_outputs)`` target matrix, whose classes are the objective's
        :meth:`~ocdl.Objective.classes_of_targets`) and return them as class indices ``(s,)`` on the device of
        the training examples."""
        return class_indices(self.objective, C, self.n_classes, self.Y0, self.regression)

    def predict(self, theta: Array, W: Array, mu: Array, Y0: Array | None = None) -> Array:
        """Predicted class indices of the examples ``Y0`` (default: the training examples)."""
        self._check_classifier(W, mu)
        return self.objective.predict(self.features(theta, Y0=Y0), W, mu)

    def accuracy(
        self, theta: Array, W: Array, mu: Array, Y0: Array | None = None, C: Array | None = None
    ) -> float:
        """Fraction of the examples ``Y0`` with labels ``C`` (default: the training set) classified correctly.

        ``C``: class indices or one-hot matrix, or with ``regression`` also the target matrix (required with
        ``Y0``).
        """
        with self.reduction.errors():  # a worker's bad labels stop every worker, at the sums below
            if Y0 is None:
                if C is not None:
                    raise ValueError("C is only used with Y0 (the labels of other examples); the training "
                                     "examples' labels are the problem's")
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
        if not isinstance(network, Network):
            raise TypeError(f"network must be an ocdl Network, got {type(network).__name__}")
        new = copy.copy(self)
        new.network = network
        new.release()
        if isinstance(self.theta_regularizer, TimeSmoothness):
            new.theta_regularizer = TimeSmoothness(network.n_steps, network.stepper.n_params, network.h)
        new.check_examples(self.Y0)
        _check_regularizers(new)
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
            ``alpha_W``: floats; ``Y0_rows``, ``C_rows`` (the target matrix)
            and ``validation_rows`` (``None`` without): SHA-256 hex digests of
            the arrays over all workers that do not depend on how the rows are
            split (:func:`ocdl.fingerprint.digest_rows`), so that a run resumes
            on another number of processes; on one worker also ``Y0``, ``C``
            and ``validation``, the digests of the whole arrays that
            checkpoints written before ``digest_rows`` record.

        Notes
        -----
        Hashing reads every byte of the data once per digest, after copying
        CuPy arrays to the host: about a second per GB (MNIST's training set
        in float64: 0.4 GB), paid once per run with checkpoints. With a
        data-parallel reduction, a collective operation.
        """
        if validation is not None and (not isinstance(validation, (tuple, list)) or len(validation) != 2):
            raise TypeError(f"validation must be a pair (Y_val, C_val), got {type(validation).__name__}")
        return {
            "objective": describe(self.objective),
            "alpha_theta": self.alpha_theta,
            "theta_regularizer": describe(self.theta_regularizer),
            "alpha_W": self.alpha_W,
            "W_regularizer": describe(self.W_regularizer),
            **({
                "Y0": digest(self.Y0),
                "C": digest(self.C),
                "validation": None if validation is None else digest(*validation),
            } if self.reduction.size == 1 else {}),
            "Y0_rows": digest_rows(self.reduction, self.Y0),
            "C_rows": digest_rows(self.reduction, self.C),
            "validation_rows": None if validation is None else digest_rows(self.reduction, *validation),
        }


def _check_regularizers(problem: LearningProblem) -> None:
    """Check that the problem's regularizers are :class:`~ocdl.Regularizer` s that accept its ``theta`` and ``W``."""
    xp = get_array_module(problem.Y0)
    for name, reg, shape in (
        ("theta_regularizer", problem.theta_regularizer, (problem.network.n_params,)),
        ("W_regularizer", problem.W_regularizer, (problem.n_features, problem.n_outputs)),
    ):
        if not isinstance(reg, Regularizer):
            raise TypeError(f"{name} must be an ocdl Regularizer, got {type(reg).__name__}")
        try:
            reg.value(xp.zeros(shape, dtype=problem.Y0.dtype))
        except ValueError as err:
            raise ValueError(f"{name} does not accept an array of shape {shape}: {err}") from err
