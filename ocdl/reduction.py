r"""The one point where sums over the training examples are completed.

Every term of the learning problem that involves the data is an average over
examples, :math:`S = \frac1s \sum_{i=1}^s \ell_i`, and so are its gradient and
Gauss-Newton products. The objective averages over the rows it is given and
the network's adjoint sums over them; what they return is complete when all
``s`` rows are in this process. With the examples split over ``P`` workers
(worker ``k`` holds ``s_k`` of them and returns the mean :math:`x_k` over its
rows), the global quantity is

.. math::

   x = \frac{\sum_k s_k\, x_k}{\sum_k s_k},

which is :meth:`Reduction.mean`; counts (correctly classified examples,
examples) add up by :meth:`Reduction.sum`. :class:`ocdl.LearningProblem` passes
every data term (value, gradients, Gauss-Newton and Newton products,
accuracies) through one :class:`Reduction` object and nothing else, so a
data-parallel version replaces that object only.
"""

from __future__ import annotations

from .backend import Array


class Reduction:
    """Local reduction: all examples live in this process, the partial results are complete.

    A data-parallel subclass overrides :meth:`sum` by an all-reduce of arrays
    or floats over the workers and :meth:`mean` by
    ``sum(count * x) / sum(count)``.
    """

    def sum(self, x: Array | float) -> Array | float:
        r"""The sum over workers :math:`\sum_k x_k` of per-worker sums over their examples.

        Parameters
        ----------
        x : array or float
            This worker's partial sum.

        Returns
        -------
        array or float
            The global sum; locally ``x`` itself.
        """
        return x

    def mean(self, x: Array | float, count: int) -> Array | float:
        r"""The example-weighted mean :math:`\sum_k s_k x_k / \sum_k s_k` of per-worker means.

        Parameters
        ----------
        x : array or float
            This worker's mean over its ``count`` examples.
        count : int
            Number :math:`s_k` of examples behind ``x``.

        Returns
        -------
        array or float
            The mean over all examples; locally ``x`` itself.
        """
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
