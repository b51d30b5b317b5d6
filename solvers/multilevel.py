r"""Multilevel training (Haber & Ruthotto 2017, section 5.3): coarse-to-fine in the number of layers.

The network is the discretisation of an ODE on :math:`[0, T]`; a network with
:math:`N` layers (step :math:`h = T/N`) trained on a problem gives, after
prolongation in time, a good initial guess for :math:`2N` layers
(:math:`h/2`). :func:`multilevel` trains with :math:`N_0` layers, prolongates,
trains with :math:`2N_0`, ... up to ``max_layers``, each level warm-started
from the last (:math:`\theta` prolongated, :math:`W, \mu` kept).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ocdl.backend import get_array_module
from ocdl.learning_problem import LearningProblem
from ocdl.network import Network

from .block_coordinate_descent import block_coordinate_descent
from .result import SolverResult

Array = Any  # a NumPy or CuPy array


def prolongate(theta: Array, network: Network) -> Array:
    r"""Parameters of ``network`` (:math:`N` steps) interpolated to :math:`2N` steps.

    The parameters :math:`\theta_j` of step :math:`j` live at the left end of
    their step, :math:`t_j = j h`, :math:`j = 0, \dots, N-1` (where forward
    Euler evaluates the layer), and :math:`\theta(t)` is the piecewise linear
    interpolant of these values, constant after :math:`t_{N-1}`. The new
    parameters sample it at :math:`t'_i = i h/2`, :math:`i = 0, \dots, 2N-1`:

    .. math::

       \theta'_{2j} = \theta_j, \qquad
       \theta'_{2j+1} = \tfrac12 (\theta_j + \theta_{j+1}) \quad (j < N-1), \qquad
       \theta'_{2N-1} = \theta_{N-1}.

    A :math:`\theta` piecewise linear in time with nodes :math:`t_j` is
    reproduced exactly on :math:`[0, t_{N-1}]`. Every entry of a step's
    parameter vector is interpolated (linear transforms such as
    :class:`~ocdl.Antisymmetric` commute with this).

    Parameters
    ----------
    theta : array, shape ``(network.n_params,)``
    network : Network
        The network of ``theta``; the result belongs to ``network.with_steps(2 * N)``.

    Returns
    -------
    array, shape ``(2 * network.n_params,)``
    """
    steps = network.theta_steps(theta)
    xp = get_array_module(theta)
    fine = xp.empty((2 * network.n_steps, steps.shape[1]), dtype=steps.dtype)
    fine[0::2] = steps
    fine[1:-1:2] = 0.5 * (steps[:-1] + steps[1:])
    fine[-1] = steps[-1]
    return fine.ravel()


def multilevel(
    learning_problem: LearningProblem,
    theta0: Array,
    W0: Array | None = None,
    mu0: Array | None = None,
    validation: tuple[Array, Array] | None = None,
    max_layers: int = 64,
    solver: Callable[..., SolverResult] = block_coordinate_descent,
    rng: int | np.random.Generator | None = 0,
    progress: bool = True,
    **options: Any,
) -> SolverResult:
    r"""Train coarse to fine: :math:`N_0, 2N_0, 4N_0, \dots \le` ``max_layers`` layers.

    :math:`N_0` is ``learning_problem.network.n_steps`` and ``theta0`` its
    parameters. Level :math:`\ell` solves
    ``learning_problem.with_network(network.with_steps(N_l))`` (the default
    time-smoothness regularizer is rebuilt for :math:`N_\ell, h_\ell`) by
    ``solver`` from the previous level's best parameters, :math:`\theta`
    prolongated by :func:`prolongate`.

    Parameters
    ----------
    learning_problem : LearningProblem
        The problem with the coarsest network.
    theta0, W0, mu0 : array
        Initial parameters of the coarsest level (zero classifier by default).
    validation : (Y_val, C_val), optional
        Validation data, passed to every level.
    max_layers : int
        Largest number of layers, ``>= N_0``.
    solver : callable
        :func:`~solvers.block_coordinate_descent.block_coordinate_descent`,
        :func:`~solvers.first_order.sgd` or :func:`~solvers.first_order.adam`.
    rng : int or numpy.random.Generator
        One generator, continued through all levels.
    progress : bool
        Progress bars of the levels.
    **options
        Passed to ``solver`` at every level (e.g. ``max_iter``, ``batch_size``).

    Returns
    -------
    SolverResult
        ``x = dict(theta=, W=, mu=, network=)``: the finest level's best
        parameters and its network; ``nit``: iterations over all levels;
        ``history``: one record per level with ``level, n_layers, iterations,
        objective, train_accuracy, best_val_accuracy`` (NaN without
        validation data), ``time_s`` and ``result`` (the level's
        :class:`SolverResult`).
    """
    network = learning_problem.network
    if not isinstance(max_layers, (int, np.integer)) or max_layers < network.n_steps:
        raise ValueError(f"max_layers must be an integer >= the network's {network.n_steps} layers, got {max_layers!r}")
    rng = np.random.default_rng(rng)
    layers = [network.n_steps]
    while 2 * layers[-1] <= max_layers:
        layers.append(2 * layers[-1])
    theta, W, mu = theta0, W0, mu0
    problem, result = learning_problem, None
    history: list[dict] = []
    for level, n_layers in enumerate(layers):
        if result is not None:
            theta, W, mu = prolongate(result.x["theta"], problem.network), result.x["W"], result.x["mu"]
            problem = learning_problem.with_network(network.with_steps(n_layers))
        start = time.perf_counter()
        result = solver(problem, theta, W, mu, validation=validation, rng=rng, progress=progress, **options)
        best = result.x
        val = [rec["val_accuracy"] for rec in result.history if "val_accuracy" in rec]
        history.append(
            {
                "level": level,
                "n_layers": n_layers,
                "iterations": result.nit,
                "objective": result.fun,
                "train_accuracy": problem.accuracy(best["theta"], best["W"], best["mu"]),
                "best_val_accuracy": max(val) if val else np.nan,
                "time_s": time.perf_counter() - start,
                "result": result,
            }
        )
    x = dict(result.x, network=problem.network)
    message = f"{len(history)} levels, {history[0]['n_layers']} to {history[-1]['n_layers']} layers"
    return SolverResult(
        x=x,
        fun=result.fun,
        nit=sum(rec["iterations"] for rec in history),
        success=all(rec["result"].success for rec in history),
        message=message,
        history=history,
    )
