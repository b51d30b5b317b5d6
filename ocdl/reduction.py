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
data-parallel version (:class:`ocdl.distributed.MPIReduction`) replaces that
object only.

The workers' shares, in rank order, make up the examples: global example
:math:`i` is row :math:`i - o_k` of worker :math:`k` with :math:`o_k = \sum_{l<k}
s_l \le i < o_k + s_k` (:meth:`Reduction.partition`), so sub-samples drawn from
the global indices ``0..s-1`` with one seed on every worker mean the same
examples as in one process. Whatever a worker decides from a reduced value
comes out the same on every worker: a data-parallel reduction returns results
equal to the last bit on all of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from .backend import Array
from .validation import check_nonnegative


class Reduction:
    """Local reduction: one worker holds all examples, the partial results are complete.

    A data-parallel subclass overrides :meth:`sum`, :meth:`mean`,
    :meth:`gather` and :meth:`errors`, and sets :attr:`rank` and :attr:`size`;
    :meth:`partition` and :meth:`check_same` follow from :meth:`gather`.

    Attributes
    ----------
    rank : int
        This worker's number, ``0 .. size - 1`` (0 here); worker 0 alone
        writes files and prints.
    size : int
        Number of workers (1 here).
    """

    rank: int = 0
    size: int = 1

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
            This worker's mean over its ``count`` examples (any value of
            the right shape when ``count`` is 0: it is left out).
        count : int
            Number :math:`s_k` of examples behind ``x``.

        Returns
        -------
        array or float
            The mean over all examples; locally ``x`` itself.

        Raises
        ------
        ValueError
            If ``count`` is not an integer >= 0, or is 0 on every worker (a
            mean over no examples).
        """
        if check_nonnegative("count", count, integer=True) == 0:
            raise ValueError("a mean over no examples: every rank passed count 0")
        return x

    def gather(self, value: Any) -> list:
        """Every worker's ``value``, in rank order, on every worker (for small Python objects).

        Locally ``[value]``.
        """
        return [value]

    def on_rank0(self, read: Callable[[], Any]) -> Any:
        """``read()`` on rank 0 alone (it reads or writes files), its value on every worker (by :meth:`gather`).

        An exception of ``read`` reaches the other workers through an enclosing :meth:`errors` block.
        """
        return self.gather(read() if self.rank == 0 else None)[0]

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """A block whose exceptions every worker raises together.

        A data-parallel reduction makes an exception raised in the block on
        some workers (a propagation that blows up on one worker's examples)
        the exception of all of them, at their next reduction, so that no
        worker waits for the others forever and every worker takes the same
        branch afterwards. Locally the block runs as it is.
        """
        yield

    def partition(self, count: int) -> tuple[int, int]:
        """``(first, total)``: the global index of this worker's first example and the number of examples.

        Parameters
        ----------
        count : int
            Examples held by this worker.
        """
        counts = self.gather(int(count))
        return sum(counts[: self.rank]), sum(counts)

    def check_same(self, what: str, value: Any) -> None:
        """Raise ``ValueError`` on every worker unless all workers pass an equal ``value``.

        Parameters
        ----------
        what : str
            What ``value`` describes, for the message (e.g. ``"data"``).
        value : Any
            A small comparable object (numbers, strings, dicts of them, digests).
        """
        values = self.gather(value)
        differ = [rank for rank, other in enumerate(values) if other != values[0]]
        if differ:
            first, other = values[0], values[differ[0]]
            if isinstance(first, dict) and isinstance(other, dict):
                keys = sorted(key for key in set(first) | set(other) if first.get(key) != other.get(key))
                detail = "; ".join(f"{key}: {other.get(key)!r} on rank {differ[0]}, {first.get(key)!r} on rank 0"
                                   for key in keys)
            else:
                detail = f"{other!r} on rank {differ[0]}, {first!r} on rank 0"
            raise ValueError(
                f"the {self.size} workers hold different {what} ({detail}); start every worker with the same "
                "data, settings and seed"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
