r"""First-order baselines: stochastic gradient descent with momentum (:class:`SGD`) and :class:`Adam`.

Both minimise the learning problem :math:`f(\theta, W, \mu)` in all parameters
jointly, :math:`x = (\theta, W, \mu)`, with mini-batch gradients
:math:`g_k = \nabla f_{B_k}(x_k)` (:meth:`ocdl.LearningProblem.value_and_gradient`
on the batch :math:`B_k`). One iteration is one epoch: a random permutation
of the training examples cut into batches of ``batch_size``. They share the
loop of :mod:`ocdl.solvers.training_loop` with block coordinate descent: the
failure handling (a learning rate so large that the propagation blows up,
that a mini-batch's objective or gradient is not finite, or that a step
overflows the parameters stops the run with ``NOT_FINITE``,
``success=False`` and the best parameters so far), the
history and the resumable :class:`~ocdl.solvers.training_loop.TrainingState`;
the velocity and the moments live in ``state.buffers`` (tuples of arrays in
the order :math:`\theta, W, \mu`, and numbers), which :mod:`ocdl.solvers.checkpoint`
writes with the rest of the state.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

from ocdl.backend import Array, get_array_module
from ocdl.checks import norm
from ocdl.learning_problem import LearningProblem
from ocdl.validation import check_nonnegative, check_positive

from .params import Params
from .training_loop import TrainingSolver, TrainingState


def _finite(params: Params) -> bool:
    """Whether every entry of ``params`` is finite (one device synchronisation)."""
    xp = get_array_module(params.theta)
    return bool(xp.stack([xp.isfinite(x).all() for x in params]).all())


class _MiniBatch(TrainingSolver):
    """Epochs of mini-batch steps ``update(state, gradient) -> new Params``; options ``max_epochs``,
    ``batch_size``, ``learning_rate``."""

    max_epochs: int
    batch_size: int
    learning_rate: float
    limit = "max_epochs"

    def _check(self) -> None:
        object.__setattr__(self, "max_epochs", check_positive("max_epochs", self.max_epochs, integer=True))
        object.__setattr__(self, "batch_size", check_positive("batch_size", self.batch_size, integer=True))
        object.__setattr__(self, "learning_rate", check_positive("learning_rate", self.learning_rate))

    @property
    def n_iterations(self) -> int:
        return self.max_epochs

    @abc.abstractmethod
    def update(self, state: TrainingState, gradient: tuple[Array, Array, Array]) -> Params:
        """The parameters after one step from ``state.params`` with the mini-batch ``gradient``."""

    def iterate(self, problem: LearningProblem, state: TrainingState) -> dict:
        s = problem.n_examples
        batch_size = min(self.batch_size, s)
        order = state.rng.permutation(s)
        values, grad_norms = [], []
        n_batches = -(-s // batch_size)
        for b, start in enumerate(range(0, s, batch_size)):
            batch = np.sort(order[start : start + batch_size])
            value, gradient = problem.value_and_gradient(*state.params, batch)
            values.append(value)
            grad_norms.append(norm(gradient))
            where = f"on mini-batch {b + 1} of {n_batches}"
            if not (math.isfinite(value) and math.isfinite(grad_norms[-1])):  # a step would make NaN parameters
                raise FloatingPointError(f"the objective is {value} and its gradient's norm {grad_norms[-1]} {where} "
                                         f"(not finite); check the data and the parameters' scale")
            state.params = self.update(state, gradient)
            if not _finite(state.params):  # overflowed: the next gradient would refuse a NaN or Inf W
                raise FloatingPointError(f"{self.label}'s step {where} made parameters NaN or Inf: lower "
                                         f"learning_rate (now {self.learning_rate:g})")
        return {
            "objective": float(np.mean(values)),
            "grad_norm": float(np.mean(grad_norms)),
            "step": self.learning_rate,
            "cg_iters": 0,
            "n_batches": len(values),
        }


@dataclass(frozen=True)
class SGD(_MiniBatch):
    r"""Mini-batch SGD with heavy-ball momentum on all parameters :math:`x = (\theta, W, \mu)`:

    .. math::

       v_{k+1} = \beta v_k - \eta\, g_k, \qquad x_{k+1} = x_k + v_{k+1}, \qquad v_0 = 0,

    with learning rate :math:`\eta` and momentum :math:`\beta \in [0, 1)`.

    Parameters
    ----------
    max_epochs : int
        Number of epochs of a run (the iterations of the history); default 50.
    batch_size : int
        Examples per mini-batch (the last may be smaller; one batch of all examples if larger than the
        training set, with a ``UserWarning`` from :meth:`~ocdl.solvers.training_loop.TrainingSolver.minimize`);
        default 32.
    learning_rate : float
        :math:`\eta > 0`; default 0.01.
    momentum : float
        :math:`\beta`; default 0.9.

    Raises
    ------
    ValueError
        Naming the option: ``max_epochs`` or ``batch_size`` not an integer >= 1, ``learning_rate`` not > 0,
        ``momentum`` outside :math:`[0, 1)`.

    Notes
    -----
    Per-epoch records ``objective`` (mean over the batches), ``grad_norm``
    (mean), ``step`` (:math:`\eta`), ``cg_iters`` (0), ``n_batches``,
    ``train_accuracy``, ``val_accuracy``, ``time``.
    """

    max_epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.9

    label = "SGD"

    def __post_init__(self) -> None:
        self._check()
        momentum = check_nonnegative("momentum", self.momentum)
        if not momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        object.__setattr__(self, "momentum", momentum)

    def update(self, state: TrainingState, gradient: tuple[Array, Array, Array]) -> Params:
        params = tuple(state.params)
        velocity = state.buffers.get("velocity", tuple(0 * x for x in params))
        velocity = tuple(self.momentum * v - self.learning_rate * g for v, g in zip(velocity, gradient))
        state.buffers["velocity"] = velocity
        return Params(*(x + v for x, v in zip(params, velocity)))


@dataclass(frozen=True)
class Adam(_MiniBatch):
    r"""Adam (Kingma & Ba 2015) on all parameters :math:`x = (\theta, W, \mu)`, entrywise:

    .. math::

       m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \qquad
       v_k = \beta_2 v_{k-1} + (1 - \beta_2) g_k^2, \\
       x_k = x_{k-1} - \eta\, \frac{m_k / (1 - \beta_1^k)}{\sqrt{v_k / (1 - \beta_2^k)} + \epsilon},

    from :math:`m_0 = v_0 = 0`, :math:`k` counting mini-batches.

    Parameters
    ----------
    max_epochs, batch_size : int
        As for :class:`SGD` (defaults 50 and 32).
    learning_rate : float
        :math:`\eta > 0`; default 0.01.
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`; default (0.9, 0.999).
    eps : float
        :math:`\epsilon > 0`; default 1e-8.

    Raises
    ------
    ValueError
        Naming the option, as :class:`SGD`'s; ``betas`` not a pair in :math:`[0, 1)`, ``eps`` not > 0.

    Notes
    -----
    The history records are those of :class:`SGD`.
    """

    max_epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    label = "Adam"

    def __post_init__(self) -> None:
        self._check()
        object.__setattr__(self, "eps", check_positive("eps", self.eps))
        betas = self.betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        betas = check_nonnegative("betas[0]", betas[0]), check_nonnegative("betas[1]", betas[1])
        if not (betas[0] < 1 and betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", betas)

    def update(self, state: TrainingState, gradient: tuple[Array, Array, Array]) -> Params:
        params = tuple(state.params)
        beta1, beta2 = self.betas
        zeros = tuple(0 * x for x in params)
        k = state.buffers.get("k", 0) + 1
        m = tuple(beta1 * a + (1 - beta1) * g for a, g in zip(state.buffers.get("m", zeros), gradient))
        v = tuple(beta2 * b + (1 - beta2) * g * g for b, g in zip(state.buffers.get("v", zeros), gradient))
        state.buffers.update(k=k, m=m, v=v)
        return Params(*(
            x - self.learning_rate * (a / (1 - beta1**k)) / (get_array_module(b).sqrt(b / (1 - beta2**k)) + self.eps)
            for x, a, b in zip(params, m, v)
        ))
