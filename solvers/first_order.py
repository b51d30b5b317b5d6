r"""First-order baselines: stochastic gradient descent with momentum and Adam.

Both minimise the learning problem :math:`f(\theta, W, \mu)` in all parameters
jointly, :math:`x = (\theta, W, \mu)`, with mini-batch gradients
:math:`g_k = \nabla f_{B_k}(x_k)` (:meth:`ocdl.LearningProblem.value_and_gradient`
on the batch :math:`B_k`). One iteration is one epoch: a random permutation
of the training examples cut into batches of ``batch_size``. They share the
loop, the failure handling (a learning rate so large that the propagation
blows up stops the run with ``success=False`` and the best parameters so
far), the history and the resumable
:class:`~ocdl.solvers.block_coordinate_descent.TrainingState` of
:func:`~ocdl.solvers.block_coordinate_descent.block_coordinate_descent`; the
momentum and moments live in ``state.buffers`` (arrays, tuples of arrays and
numbers), which :mod:`ocdl.solvers.checkpoint` writes with the rest of the state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ocdl.backend import Array, get_array_module
from ocdl.checks import norm
from ocdl.learning_problem import LearningProblem
from ocdl.validation import check_nonnegative, check_positive

from .block_coordinate_descent import Callback, TrainingState, initial_state, run_training
from .result import SolverResult

Update = Callable[[TrainingState, tuple[Array, Array, Array]], tuple[Array, Array, Array]]


def _epochs(
    problem: LearningProblem,
    update: Update,
    state: TrainingState,
    max_epochs: int,
    batch_size: int,
    step: float,
    validation: tuple[Array, Array] | None,
    callback: Callback | None,
    progress: bool,
    desc: str,
) -> SolverResult:
    """Run epochs of mini-batch ``update(state, gradient) -> new (theta, W, mu)``."""
    s = problem.n_examples
    check_positive("max_epochs", max_epochs, integer=True)
    batch_size = min(check_positive("batch_size", batch_size, integer=True), s)

    def iterate(state: TrainingState) -> dict:
        order = state.rng.permutation(s)
        values, grad_norms = [], []
        for start in range(0, s, batch_size):
            batch = np.sort(order[start : start + batch_size])
            value, gradient = problem.value_and_gradient(state.theta, state.W, state.mu, batch)
            values.append(value)
            grad_norms.append(norm(gradient))
            state.theta, state.W, state.mu = update(state, gradient)
        return {
            "objective": float(np.mean(values)),
            "grad_norm": float(np.mean(grad_norms)),
            "step": step,
            "cg_iters": 0,
            "n_batches": len(values),
        }

    return run_training(problem, iterate, state, max_epochs, validation, callback, progress, desc)


def sgd(
    learning_problem: LearningProblem,
    theta0: Array | None,
    W0: Array | None = None,
    mu0: Array | None = None,
    validation: tuple[Array, Array] | None = None,
    max_epochs: int = 50,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    rng: int | np.random.Generator | None = 0,
    callback: Callback | None = None,
    progress: bool = True,
    state: TrainingState | None = None,
) -> SolverResult:
    r"""Mini-batch SGD with heavy-ball momentum on all parameters :math:`x = (\theta, W, \mu)`:

    .. math::

       v_{k+1} = \beta v_k - \eta\, g_k, \qquad x_{k+1} = x_k + v_{k+1}, \qquad v_0 = 0,

    with learning rate :math:`\eta` and momentum :math:`\beta \in [0, 1)`.

    Parameters
    ----------
    learning_problem, theta0, W0, mu0, validation, rng, callback, progress, state
        As for :func:`~ocdl.solvers.block_coordinate_descent.block_coordinate_descent`.
    max_epochs : int
        Total number of epochs (the iterations of the history).
    batch_size : int
        Examples per mini-batch.
    learning_rate : float
        :math:`\eta > 0`.
    momentum : float
        :math:`\beta`.

    Returns
    -------
    SolverResult
        As for block coordinate descent; per-epoch records ``objective`` (mean
        over the batches), ``grad_norm`` (mean), ``step`` (:math:`\eta`),
        ``cg_iters`` (0), ``n_batches``, ``train_accuracy``, ``val_accuracy``, ``time``.
    """
    learning_rate = check_positive("learning_rate", learning_rate)
    if not check_nonnegative("momentum", momentum) < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    state = initial_state(learning_problem, theta0, W0, mu0, rng, state)

    def update(state: TrainingState, gradient: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        params = (state.theta, state.W, state.mu)
        velocity = state.buffers.get("velocity", tuple(0 * x for x in params))
        velocity = tuple(momentum * v - learning_rate * g for v, g in zip(velocity, gradient))
        state.buffers["velocity"] = velocity
        return tuple(x + v for x, v in zip(params, velocity))

    desc = f"SGD N={learning_problem.network.n_steps}"
    return _epochs(
        learning_problem, update, state, max_epochs, batch_size, learning_rate, validation, callback, progress, desc
    )


def adam(
    learning_problem: LearningProblem,
    theta0: Array | None,
    W0: Array | None = None,
    mu0: Array | None = None,
    validation: tuple[Array, Array] | None = None,
    max_epochs: int = 50,
    batch_size: int = 32,
    learning_rate: float = 1e-2,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    rng: int | np.random.Generator | None = 0,
    callback: Callback | None = None,
    progress: bool = True,
    state: TrainingState | None = None,
) -> SolverResult:
    r"""Adam (Kingma & Ba 2015) on all parameters :math:`x = (\theta, W, \mu)`, entrywise:

    .. math::

       m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \qquad
       v_k = \beta_2 v_{k-1} + (1 - \beta_2) g_k^2, \\
       x_k = x_{k-1} - \eta\, \frac{m_k / (1 - \beta_1^k)}{\sqrt{v_k / (1 - \beta_2^k)} + \epsilon},

    from :math:`m_0 = v_0 = 0`, :math:`k` counting mini-batches.

    Parameters
    ----------
    learning_problem, theta0, W0, mu0, validation, rng, callback, progress, state
        As for :func:`~ocdl.solvers.block_coordinate_descent.block_coordinate_descent`.
    max_epochs, batch_size : int
        As for :func:`sgd`.
    learning_rate : float
        :math:`\eta > 0`.
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
    eps : float
        :math:`\epsilon > 0`.

    Returns
    -------
    SolverResult
        As for :func:`sgd`.
    """
    learning_rate, eps = check_positive("learning_rate", learning_rate), check_positive("eps", eps)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = check_nonnegative("betas[0]", betas[0]), check_nonnegative("betas[1]", betas[1])
    if not (beta1 < 1 and beta2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    state = initial_state(learning_problem, theta0, W0, mu0, rng, state)

    def update(state: TrainingState, gradient: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        params = (state.theta, state.W, state.mu)
        zeros = tuple(0 * x for x in params)
        k = state.buffers.get("k", 0) + 1
        m = tuple(beta1 * a + (1 - beta1) * g for a, g in zip(state.buffers.get("m", zeros), gradient))
        v = tuple(beta2 * b + (1 - beta2) * g * g for b, g in zip(state.buffers.get("v", zeros), gradient))
        state.buffers.update(k=k, m=m, v=v)
        return tuple(
            x - learning_rate * (a / (1 - beta1**k)) / (get_array_module(b).sqrt(b / (1 - beta2**k)) + eps)
            for x, a, b in zip(params, m, v)
        )

    desc = f"Adam N={learning_problem.network.n_steps}"
    return _epochs(
        learning_problem, update, state, max_epochs, batch_size, learning_rate, validation, callback, progress, desc
    )
