r"""The parameters :math:`(\theta, W, \mu)` of the learning problem as one value: what the training solvers
take and return (``x`` of their :class:`~ocdl.solvers.result.SolverResult`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ocdl.backend import Array


@dataclass(frozen=True)
class Params:
    r"""The parameters of :class:`ocdl.LearningProblem` :math:`f(\theta, W, \mu)` (paper eq. 2.4).

    Attributes
    ----------
    theta : array, shape ``(network.n_params,)``
        The network's parameters, one flat vector over all steps.
    W : array, shape ``(n_features, n_outputs)``
        The classifier's weights.
    mu : array, shape ``(n_outputs,)``
        The classifier's biases.

    Unpacks in this order, ``theta, W, mu = params``, so that
    ``problem.value(*params)`` evaluates :math:`f` there. Frozen: a solver
    makes new parameters instead of changing them, so parameters handed out
    (a result, the best so far) never change afterwards; the arrays are
    shared, not copied (:meth:`copy` copies them).
    """

    theta: Array
    W: Array
    mu: Array

    def __iter__(self) -> Iterator[Array]:
        return iter((self.theta, self.W, self.mu))

    def copy(self) -> Params:
        """The same parameters in new arrays (on the same device)."""
        return Params(self.theta.copy(), self.W.copy(), self.mu.copy())
