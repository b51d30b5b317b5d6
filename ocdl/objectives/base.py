r"""The interface every loss (objective) of the classifier implements.

The network's final features :math:`Y_N \in \mathbb{R}^{s \times n}` (one example
per row) are mapped by the classifier weights :math:`W \in \mathbb{R}^{n \times m}`
and bias :math:`\mu \in \mathbb{R}^m` to the logits

.. math::

   Z = Y_N W + e \mu^T \in \mathbb{R}^{s \times m}, \qquad e = (1, \dots, 1)^T,

and the objective is the loss of the hypothesis averaged over the examples,

.. math::

   S(Y_N, W, \mu, C) = \frac{1}{s} \sum_{i=1}^{s} \ell(z_i, c_i),

with :math:`z_i, c_i` the rows of :math:`Z` and of the target matrix :math:`C`.
A subclass supplies :math:`S` as a function of :math:`Z` (``value_z``, its
gradient and Hessian); everything in :math:`Y_N` and :math:`(W, \mu)` follows by
the chain rule through the affine map above. Because :math:`Z` is linear in
:math:`Y_N` and in :math:`(W, \mu)` separately, the Hessians obtained this way
are exact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from numpy.typing import DTypeLike

from .._threads import row_blocks
from ..backend import Array, get_array_module
from ..validation import check_array, check_dtype_of
from .labels import check_n_classes, one_hot


class Objective(ABC):
    r"""Loss :math:`S(Y_N, W, \mu, C)` of the hypothesis :math:`h(Y_N W + e\mu^T)`.

    All methods work on NumPy and CuPy arrays alike and keep the floating dtype
    of the inputs. Shapes: ``YN`` is ``(s, n)``, ``W`` is ``(n, m)``, ``mu`` is
    ``(m,)`` and the target matrix ``C`` is ``(s, m)`` (as returned by
    :meth:`prepare_labels`); mismatches raise :class:`ValueError` naming the
    argument; so do empty feature matrices (``s = 0``: the mean over no example is
    undefined); arrays that are not float32 or float64 raise :class:`TypeError`.
    """

    #: Fewest classifier columns ``m`` for which the loss is meaningful.
    min_outputs: int = 1

    # -- the loss as a function of the logits Z (supplied by subclasses) -------

    @abstractmethod
    def value_z(self, Z: Array, C: Array) -> Array:
        r"""Loss as a function of the logits, :math:`\frac1s \sum_i \ell(z_i, c_i)`.

        Parameters
        ----------
        Z : array, shape ``(s, m)``
            Logits :math:`Z = Y_N W + e \mu^T`.
        C : array, shape ``(s, m)``
            Target matrix, same dtype as ``Z``.

        Returns
        -------
        array
            0-d array on the device of ``Z``.
        """

    @abstractmethod
    def value_and_gradient_z(self, Z: Array, C: Array) -> tuple[Array, Array]:
        r"""Loss and its gradient :math:`\partial S / \partial Z` (shape ``(s, m)``).

        Parameters
        ----------
        Z, C : array, shape ``(s, m)``
            Logits and targets.

        Returns
        -------
        value : array
            0-d, as :meth:`value_z`.
        dZ : array, shape ``(s, m)``
            Gradient, including the factor :math:`1/s`.
        """

    @abstractmethod
    def hessian_z(self, Z: Array, C: Array, dZ: Array) -> Array:
        r"""Hessian-vector product :math:`(\partial^2 S / \partial Z^2)\, dZ`.

        The loss is convex in :math:`Z`; this Hessian is symmetric positive
        semidefinite and block diagonal (one ``m x m`` block per example).

        Parameters
        ----------
        Z, C, dZ : array, shape ``(s, m)``
            Logits, targets and direction.

        Returns
        -------
        array, shape ``(s, m)``
        """

    def predict_z(self, Z: Array) -> Array:
        """Class indices predicted from logits ``Z``: ``argmax`` over columns, shape ``(s,)``."""
        return get_array_module(Z).argmax(Z, axis=1)

    def classes_of_targets(self, C: Array) -> Array:
        """Class indices encoded by a target matrix ``C``: ``argmax`` over columns, shape ``(s,)``."""
        return get_array_module(C).argmax(C, axis=1)

    # -- labels ----------------------------------------------------------------

    def check_targets(self, C: Array) -> Array:
        """Check a real target matrix ``C`` given as is (regression), for which this loss is bounded below.

        Here: at least :attr:`min_outputs` columns. Subclasses add what their
        loss needs of the entries.

        Parameters
        ----------
        C : array, shape ``(s, m)``
            A floating target matrix.

        Returns
        -------
        array
            ``C`` itself.

        Raises
        ------
        ValueError
            Naming ``C``: fewer than :attr:`min_outputs` columns, or entries
            the loss does not admit.
        """
        if C.shape[1] < self.min_outputs:
            raise ValueError(
                f"C must have at least {self.min_outputs} columns for {type(self).__name__}, got shape {C.shape}"
            )
        return C

    def n_outputs(self, n_classes: int) -> int:
        """Number ``m`` of classifier columns (logits) needed for ``n_classes`` classes.

        Parameters
        ----------
        n_classes : int
            Number of classes, at least 2.

        Returns
        -------
        int
            ``n_classes`` unless a subclass encodes the classes more compactly.

        Raises
        ------
        ValueError
            If ``n_classes`` is not an integer >= 2.
        """
        return check_n_classes(n_classes, required=True)

    def prepare_labels(
        self, C: Array, n_classes: int | None = None, dtype: DTypeLike = np.float64
    ) -> Array:
        """Validate class labels and return the ``(s, m)`` target matrix of this objective.

        Parameters
        ----------
        C : array
            Integer class indices, shape ``(s,)``, or a one-hot matrix, shape
            ``(s, n_classes)`` (see :mod:`ocdl.objectives.labels`).
        n_classes : int, optional
            Number of classes, at least 2; inferred from ``C`` when not given
            (then every class ``0..max(C)`` must have an example).
        dtype : dtype, optional
            Floating dtype of the result (default float64).

        Returns
        -------
        array, shape ``(s, n_outputs(n_classes))``
            Here the one-hot matrix.

        Raises
        ------
        ValueError
            If ``C`` is not one of the two forms (message names ``C``), or if
            ``n_classes`` (given or inferred) is below 2.
        """
        return one_hot(C, n_classes, dtype)

    # -- the objective in (Y_N, W, mu) -----------------------------------------

    def value(self, YN: Array, W: Array, mu: Array, C: Array) -> float:
        r"""Objective :math:`S(Y_N, W, \mu, C) = \frac1s \sum_i \ell(z_i, c_i)`.

        Parameters
        ----------
        YN : array, shape ``(s, n)``
            Features, one example per row.
        W : array, shape ``(n, m)``
            Classifier weights.
        mu : array, shape ``(m,)``
            Classifier bias.
        C : array, shape ``(s, m)``
            Target matrix (from :meth:`prepare_labels`).

        Returns
        -------
        float
        """
        Z, C = self._logits(YN, W, mu, C)
        return float(self.value_z(Z, C))

    def value_and_gradient(
        self, YN: Array, W: Array, mu: Array, C: Array
    ) -> tuple[float, tuple[Array, Array, Array]]:
        r"""Objective and gradient, sharing the logits and the loss's intermediates.

        With :math:`G = \partial S / \partial Z`,

        .. math::

           \frac{\partial S}{\partial Y_N} = G W^T, \qquad
           \frac{\partial S}{\partial W} = Y_N^T G, \qquad
           \frac{\partial S}{\partial \mu} = G^T e.

        Parameters
        ----------
        YN, W, mu, C : array
            As in :meth:`value`.

        Returns
        -------
        value : float
        (dYN, dW, dmu) : tuple of arrays
            Shapes ``(s, n)``, ``(n, m)``, ``(m,)``.
        """
        Z, C = self._logits(YN, W, mu, C)
        val, G = self.value_and_gradient_z(Z, C)
        return float(val), (_times(G, W.T), _transpose_times(YN, G), _column_sums(G))

    def gradient(self, YN: Array, W: Array, mu: Array, C: Array) -> tuple[Array, Array, Array]:
        r"""Gradient :math:`(\partial S/\partial Y_N, \partial S/\partial W, \partial S/\partial \mu)`.

        See :meth:`value_and_gradient` for the formulas; shapes ``(s, n)``,
        ``(n, m)``, ``(m,)``.
        """
        Z, C = self._logits(YN, W, mu, C)
        _, G = self.value_and_gradient_z(Z, C)
        return _times(G, W.T), _transpose_times(YN, G), _column_sums(G)

    def value_and_gradient_W(
        self, YN: Array, W: Array, mu: Array, C: Array
    ) -> tuple[float, tuple[Array, Array], Array]:
        r"""Objective, its gradient in the classifier alone, and the logits, in one pass over ``YN``.

        With :math:`G = \partial S / \partial Z`,

        .. math::

           \frac{\partial S}{\partial W} = Y_N^T G, \qquad \frac{\partial S}{\partial \mu} = G^T e,

        computed block by block of rows :math:`b` (:func:`_row_sums`):
        :math:`Z_b = Y_{N,b} W + e\mu^T`, then :math:`G_b`, then
        :math:`Y_{N,b}^T G_b`. For the Newton problem in :math:`(W, \mu)`
        (:class:`~ocdl.learning_problem.classifier.ClassifierModel`), which
        passes :math:`Z` to :meth:`hessian_W` at the same point: each
        Hessian product is then one sweep over the row blocks of :math:`Y_N`
        instead of three passes (:math:`Z`, :math:`Y_N dW`,
        :math:`Y_N^T H_Z dZ`), and the model's gradient no longer computes
        :math:`G W^T`. On MNIST-sized features (50,000 x 4,704, float32, 2-core
        Xeon, 2026-12-05) block coordinate descent's classifier step (5 Newton
        steps of at most 10 CG iterations) took 12.3 s instead of 22.6
        (``benchmarks/ab.py``, case ``W3L:resnet:classifier_newton``, with
        the allocation-free finiteness check of the features).

        Parameters
        ----------
        YN, W, mu, C : array
            As in :meth:`value`.

        Returns
        -------
        value : float
        (dW, dmu) : tuple of arrays
            Shapes ``(n, m)`` and ``(m,)``.
        Z : array, shape ``(s, m)``
            The logits :math:`Y_N W + e\mu^T`.
        """
        C = self._targets(YN, W, mu, C)
        xp = get_array_module(YN, W, mu)
        Z = xp.empty((YN.shape[0], W.shape[1]), dtype=C.dtype)

        def kernel(y, z, c, scale):
            xp.matmul(y, W, out=z)
            z += mu
            value, G = self.value_and_gradient_z(z, c)
            G = G * scale
            return value * scale, y.T @ G, _column_sums(G)

        value, dW, dmu = _row_sums(kernel, YN, Z, C)
        return float(value), (dW, dmu), Z

    def hessian_Y(self, YN: Array, W: Array, mu: Array, C: Array, dY: Array) -> Array:
        r"""Hessian-vector product in the features, :math:`(\partial^2 S/\partial Y_N^2)\, dY`.

        Exact, since :math:`Z` is linear in :math:`Y_N`:

        .. math::

           \frac{\partial^2 S}{\partial Y_N^2} dY
           = \Big[\frac{\partial^2 S}{\partial Z^2} (dY\, W)\Big] W^T.

        Parameters
        ----------
        YN, W, mu, C : array
            As in :meth:`value`.
        dY : array, shape ``(s, n)``
            Direction.

        Returns
        -------
        array, shape ``(s, n)``
        """
        Z, C = self._logits(YN, W, mu, C)
        _check_like("dY", dY, YN)
        return _times(self.hessian_z(Z, C, _times(dY, W)), W.T)

    def hessian_W(
        self, YN: Array, W: Array, mu: Array, C: Array, dW: Array, dmu: Array, logits: Array | None = None
    ) -> tuple[Array, Array]:
        r"""Hessian-vector product in the classifier, :math:`\nabla^2_{(W,\mu)} S\, (dW, d\mu)`.

        Exact, since :math:`Z` is linear in :math:`(W, \mu)`: with
        :math:`H_Z = \partial^2 S/\partial Z^2` and :math:`dZ = Y_N dW + e\, d\mu^T`,

        .. math::

           (H dW, H d\mu) = \big(Y_N^T H_Z dZ,\; (H_Z dZ)^T e\big).

        Parameters
        ----------
        YN, W, mu, C : array
            As in :meth:`value`.
        dW : array, shape ``(n, m)``
        dmu : array, shape ``(m,)``
            Direction.
        logits : array, shape ``(s, m)``, optional
            :math:`Z` at this point, from :meth:`value_and_gradient_W` (else
            computed: one more pass over ``YN``).

        Returns
        -------
        (HdW, Hdmu) : tuple of arrays
            Shapes ``(n, m)`` and ``(m,)``.

        Notes
        -----
        One pass over ``YN`` (:func:`_row_sums`): per block of rows,
        :math:`dZ_b`, :math:`H_Z dZ_b` and :math:`Y_{N,b}^T H_Z dZ_b`.
        """
        if logits is None:
            Z, C = self._logits(YN, W, mu, C)
        else:
            C = self._targets(YN, W, mu, C)
            if np.shape(logits) != (YN.shape[0], W.shape[1]):
                raise ValueError(f"logits must have shape (s, m) = {(YN.shape[0], W.shape[1])} (YN W + e mu^T), "
                                 f"got {np.shape(logits)}")
            Z = logits
        _check_like("dW", dW, W)
        _check_like("dmu", dmu, mu)

        def kernel(y, z, c, scale):
            HdZ = self.hessian_z(z, c, y @ dW + dmu) * scale
            return y.T @ HdZ, _column_sums(HdZ)

        return _row_sums(kernel, YN, Z, C)

    def predict(self, YN: Array, W: Array, mu: Array) -> Array:
        """Predicted class indices, shape ``(s,)``, integer dtype.

        Parameters
        ----------
        YN, W, mu : array
            As in :meth:`value`.
        """
        Z, _ = self._logits(YN, W, mu)
        return self.predict_z(Z)

    def accuracy(self, YN: Array, W: Array, mu: Array, C: Array) -> float:
        """Fraction of examples whose predicted class is the true one, in ``[0, 1]``.

        Parameters
        ----------
        YN, W, mu : array
            As in :meth:`value`.
        C : array
            Integer class indices, shape ``(s,)``, or the ``(s, m)`` target matrix.

        Returns
        -------
        float
        """
        xp = get_array_module(YN, W, mu, C)
        C = xp.asarray(C)
        if C.ndim == 1:
            if C.shape[0] != YN.shape[0]:
                raise ValueError(
                    f"C must hold one label per row of YN ({YN.shape[0]}), got shape {C.shape}"
                )
            if C.dtype.kind not in "iu" or (C.size and int(C.min()) < 0):  # -1 or 0.5 matched no class: 0.0
                raise ValueError(f"C must hold integer class indices >= 0, got {C.dtype} labels"
                                 + (f" from {C.min()}" if C.size else ""))
            labels = C
        else:
            _check_shapes(YN, W, mu, C)
            labels = self.classes_of_targets(C)
        return float((self.predict(YN, W, mu) == labels).mean())

    def _targets(self, YN: Array, W: Array, mu: Array, C: Array | None = None) -> Array | None:
        """Validate the shapes and ``W``'s columns; return ``C`` in the dtype of the logits (``None`` as is)."""
        _check_shapes(YN, W, mu, C)
        if np.shape(W)[1] < self.min_outputs:
            raise ValueError(
                f"W must have at least {self.min_outputs} columns (classes) for "
                f"{type(self).__name__}, got shape {np.shape(W)}"
            )
        if C is None:
            return None
        xp = get_array_module(YN, W, mu)
        return xp.asarray(C, dtype=xp.result_type(YN, W, mu))

    def _logits(self, YN: Array, W: Array, mu: Array, C: Array | None = None) -> tuple[Array, Array]:
        """Validate shapes; return ``Z = YN W + e mu^T`` and ``C`` in the dtype of ``Z``."""
        C = self._targets(YN, W, mu, C)
        return _times(YN, W, mu), C


def _row_sums(kernel, YN: Array, Z: Array, C: Array) -> tuple:
    r"""The sums over blocks of rows :math:`b` of ``kernel(YN_b, Z_b, C_b, scale_b)``, a tuple of arrays.

    The blocks are those of :func:`ocdl._threads.row_blocks` (one call for
    CuPy and small arrays), added in order. ``scale_b = s_b / s`` turns a
    block's mean (the ``_z`` methods average over the rows they are given)
    into its share of the mean over all ``s`` rows: the loss is a sum over
    examples, so this is exact (and ``1.0`` for one block).
    """
    s = YN.shape[0]
    return _block_sums(lambda y, z, c: kernel(y, z, c, y.shape[0] / s), YN, Z, C)


def _block_sums(kernel, *arrays) -> tuple:
    """The sums over the row blocks of :func:`ocdl._threads.row_blocks` of ``kernel``'s tuple of arrays, in order."""
    shares = row_blocks(kernel, *arrays)
    return tuple(sum(parts[1:], parts[0]) for parts in zip(*shares))


def _times(A: Array, B: Array, shift: Array | None = None) -> Array:
    r""":math:`A B` (plus ``shift``, a row added to every row), one block of rows of :math:`A` at a time.

    The blocks run on ocdl's threads with a single-threaded BLAS
    (:func:`ocdl._threads.row_blocks`; why: the module's docstring), CuPy
    arrays and small ones in one call.
    """
    xp = get_array_module(A, B)
    operands = (A, B) if shift is None else (A, B, shift)
    out = xp.empty((A.shape[0], B.shape[1]), dtype=xp.result_type(*operands))

    def kernel(a, o):
        xp.matmul(a, B, out=o)
        if shift is not None:
            xp.add(o, shift, out=o)

    row_blocks(kernel, A, out)
    return out


def _column_sums(G: Array) -> Array:
    r""":math:`G^T e`, the sum of the rows of ``G`` (the :math:`\mu`-derivatives), accumulated in float64 for float32.

    NumPy adds the rows of a C-ordered array one after another (its pairwise
    summation is along a contiguous axis only): the float32 sum of 200,000
    rows was 5e-6 relative off (``Y_N^T G``, by BLAS, 2e-7); accumulated in
    float64 it is float32's rounding, at 1.2x the time of a reduction that is
    small beside the products with :math:`Y_N`. float64 sums as before.
    """
    if G.dtype == np.float32:
        return G.sum(axis=0, dtype=np.float64).astype(np.float32)
    return G.sum(axis=0)


def _transpose_times(A: Array, G: Array) -> Array:
    r""":math:`A^T G = \sum_b A_b^T G_b`, the sum over blocks of rows :math:`b` (as :func:`_times`)."""
    return _block_sums(lambda a, g: (a.T @ g,), A, G)[0]


def _check_shapes(YN: Array, W: Array, mu: Array, C: Array | None = None) -> None:
    """Raise ValueError naming the argument unless YN (s, n), W (n, m), mu (m,), C (s, m) agree; TypeError
    unless YN, W and mu are float32 or float64 arrays (float16 and complex were computed, lists failed inside)
    of one dtype (float32 features with a float64 classifier gave float64 results, as Network refuses)."""
    for name, x in (("YN", YN), ("W", W), ("mu", mu)):
        check_array(name, x, finite=False)
        check_dtype_of(name, x, "YN", YN)
    shape_Y, shape_W, shape_mu = np.shape(YN), np.shape(W), np.shape(mu)
    if len(shape_Y) != 2:
        raise ValueError(f"YN must be 2-D (s x n, one example per row), got shape {shape_Y}")
    s, n = shape_Y
    if s == 0:
        raise ValueError(f"YN must hold at least one example (row), got shape {shape_Y}")
    if len(shape_W) != 2 or shape_W[0] != n:
        raise ValueError(f"W must have shape (n, m) with n = {n} (columns of YN), got {shape_W}")
    m = shape_W[1]
    if shape_mu != (m,):
        raise ValueError(f"mu must have shape (m,) = ({m},) (columns of W), got {shape_mu}")
    if C is not None and np.shape(C) != (s, m):
        raise ValueError(
            f"C must be the ({s}, {m}) target matrix (rows of YN x columns of W) returned by "
            f"prepare_labels, got shape {np.shape(C)}"
        )


def _check_like(name: str, d: Array, like: Array) -> None:
    """Raise ValueError unless the direction ``d`` has ``like``'s shape, TypeError unless its dtype."""
    if np.shape(d) != like.shape:
        raise ValueError(f"{name} must have shape {like.shape}, got {np.shape(d)}")
    check_dtype_of(name, d, "its point", like)
