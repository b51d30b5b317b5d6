r"""Multilevel training (Haber & Ruthotto 2017, section 5.3): coarse-to-fine in the number of layers.

The network is the discretisation of an ODE on :math:`[0, T]`; a network with
:math:`N` layers (step :math:`h = T/N`) trained on a problem gives, after
prolongation in time, a good initial guess for :math:`2N` layers
(:math:`h/2`). :func:`multilevel` trains with :math:`N_0` layers, prolongates,
trains with :math:`2N_0`, ... up to ``max_layers``, each level warm-started
from the last (:math:`\theta` prolongated, :math:`W, \mu` kept).

With ``checkpoint=path`` the run is resumable: :mod:`ocdl.solvers.checkpoint` writes
its full state every ``checkpoint_every`` iterations, at each level's end and
on Ctrl-C, and ``resume=True`` continues from the file exactly, so that the
final parameters equal those of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ocdl.backend import device_of, get_array_module
from ocdl.learning_problem import LearningProblem
from ocdl.network import Network
from ocdl.validation import is_integer

from .block_coordinate_descent import block_coordinate_descent
from .checkpoint import CheckpointWriter
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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    settings: dict | None = None,
    **options: Any,
) -> SolverResult:
    r"""Train coarse to fine: :math:`N_0, 2N_0, 4N_0, \dots \le` ``max_layers`` layers.

    :math:`N_0` is ``learning_problem.network.n_steps`` and ``theta0`` its
    parameters. Level :math:`\ell` solves
    ``learning_problem.with_network(network.with_steps(N_l))`` (the default
    time-smoothness regularizer is rebuilt for :math:`N_\ell, h_\ell`) by
    ``solver`` from the previous level's best parameters, :math:`\theta`
    prolongated by :func:`prolongate`. A level whose line search fails
    (no decrease even for tiny steps: the objective is flat to rounding at
    this level) ends that level only, and the next level starts from its
    best parameters. A level that fails otherwise (see
    :mod:`ocdl.solvers.block_coordinate_descent`: non-finite objective, blow-up)
    ends the run with ``success=False``.

    Parameters
    ----------
    learning_problem : LearningProblem
        The problem with the coarsest network.
    theta0, W0, mu0 : array
        Initial parameters of the coarsest level (zero classifier by default);
        not used when resuming from a checkpoint past the start of level 0.
    validation : (Y_val, C_val), optional
        Validation data, passed to every level.
    max_layers : int
        Largest number of layers, ``>= N_0``.
    solver : callable
        :func:`~ocdl.solvers.block_coordinate_descent.block_coordinate_descent`,
        :func:`~ocdl.solvers.first_order.sgd` or :func:`~ocdl.solvers.first_order.adam`
        (with checkpoints, any solver taking ``callback=`` and ``state=`` as they do).
    rng : int or numpy.random.Generator
        One generator, continued through all levels (when resuming, the
        checkpoint's generator is used instead).
    progress : bool
        Progress bars of the levels.
    checkpoint : str or os.PathLike, optional
        Checkpoint file (:mod:`ocdl.solvers.checkpoint`; the command line uses
        ``DIR / ocdl.solvers.checkpoint.CHECKPOINT_NAME``). Written at the start
        (replacing an existing file unless ``resume``), every
        ``checkpoint_every`` iterations, at the end of each level and on
        Ctrl-C. Default: no checkpoints.
    checkpoint_every : int
        Iterations (counted over all levels) between checkpoints.
    resume : bool
        Continue from ``checkpoint`` if the file exists (a fresh start if
        not): level, iteration, parameters, best parameters, solver buffers,
        history and random generator are restored, so the result equals that
        of an uninterrupted run. A finished checkpoint returns its result
        without training. A checkpoint of another run, or of another problem
        (its :meth:`~ocdl.LearningProblem.fingerprint`), is refused (see Raises).
    settings : dict, optional
        JSON-able description of the run stored in the checkpoint
        (:attr:`ocdl.solvers.checkpoint.Checkpoint.settings`), e.g. the command
        line's settings. When resuming without it, the checkpoint's are kept.
    **options
        Passed to ``solver`` at every level (e.g. ``max_iter``, ``batch_size``,
        ``callback``).

    Returns
    -------
    SolverResult
        ``x = dict(theta=, W=, mu=, network=)``: the last level's best
        parameters and its network; ``nit``: iterations over all levels;
        ``history``: one record per level with ``level, n_layers, iterations,
        objective, train_accuracy, best_val_accuracy`` (NaN without
        validation data), ``time_s`` (over all sessions of a resumed level)
        and ``result`` (the level's :class:`SolverResult`).

    Raises
    ------
    TypeError, ValueError
        For malformed arguments; ``ValueError`` also when resuming from a
        checkpoint written by a run with another solver, options or problem
        (sizes, or an entry of :meth:`~ocdl.LearningProblem.fingerprint`:
        objective, :math:`\alpha_\theta`, :math:`\alpha_W`, regularizers,
        training or validation data), naming what changed. A checkpoint
        written before fingerprints were recorded is checked for the rest.
    ocdl.io.OcdlFileError
        When resuming from a file that is not a readable checkpoint.
    ocdl.solvers.checkpoint.TrainingInterrupted
        On Ctrl-C with ``checkpoint`` (a ``KeyboardInterrupt``), after the
        last completed iteration is written. Without ``checkpoint`` Ctrl-C
        raises the plain ``KeyboardInterrupt``.
    """
    if not isinstance(learning_problem, LearningProblem):
        raise TypeError(f"learning_problem must be an ocdl LearningProblem, got {type(learning_problem).__name__}")
    network = learning_problem.network
    if not is_integer(max_layers) or max_layers < network.n_steps:
        raise ValueError(f"max_layers must be an integer >= the network's {network.n_steps} layers, got {max_layers!r}")
    if not callable(solver):
        raise TypeError(f"solver must be a callable such as block_coordinate_descent, got {solver!r}")
    if "state" in options:
        raise ValueError("multilevel continues a run from checkpoint=... with resume=True, not from state=")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint file (checkpoint=...)")
    callback = options.pop("callback", None)
    layers = [network.n_steps]
    while 2 * layers[-1] <= max_layers:
        layers.append(2 * layers[-1])

    def level_problem(n_layers: int) -> LearningProblem:
        if n_layers == network.n_steps:
            return learning_problem
        return learning_problem.with_network(network.with_steps(n_layers))

    writer = saved = None
    if checkpoint is not None:
        run = {
            "solver": getattr(solver, "__name__", repr(solver)),
            "layers": layers,
            "options": options,
            "params_per_layer": network.stepper.n_params,
            "n_features": learning_problem.n_features,
            "n_outputs": learning_problem.n_outputs,
            "n_examples": learning_problem.n_examples,
            "stepper": repr(network.stepper),
            "final_time": network.final_time,
            "dtype": str(learning_problem.Y0.dtype),
            "problem": learning_problem.fingerprint(validation),
        }
        writer = CheckpointWriter(checkpoint, checkpoint_every, run, settings)
        saved = writer.resume(device_of(learning_problem.Y0)) if resume else None
    if saved is not None:
        rng, history, first, state = saved.rng, saved.levels, saved.level, saved.state
    else:
        rng, history, first, state = np.random.default_rng(rng), [], 0, None
        if writer is not None:
            writer.start(rng)
    problem = level_problem(layers[min(first, len(layers) - 1)])  # a finished checkpoint: the last level's
    try:
        for level in range(first, len(layers)):
            problem = level_problem(layers[level])
            if state is not None:  # continued from the checkpoint's state
                theta = W = mu = None
            elif level == 0:
                theta, W, mu = theta0, W0, mu0
            else:
                best = history[-1]["result"].x
                theta = prolongate(best["theta"], network.with_steps(layers[level - 1]))
                W, mu = best["W"], best["mu"]
            extra = {} if state is None else {"state": state}
            if writer is not None or callback is not None:
                extra["callback"] = _level_callback(writer, callback, level, history)
            start, resumed_time = time.perf_counter(), 0.0 if state is None else state.elapsed
            result = solver(problem, theta, W, mu, validation=validation, rng=rng, progress=progress,
                            **extra, **options)
            state = None
            best = result.x
            val = [rec["val_accuracy"] for rec in result.history if "val_accuracy" in rec]
            history.append(
                {
                    "level": level,
                    "n_layers": layers[level],
                    "iterations": result.nit,
                    "objective": result.fun,
                    "train_accuracy": problem.accuracy(best["theta"], best["W"], best["mu"]),
                    "best_val_accuracy": max(val) if val else np.nan,
                    "time_s": resumed_time + time.perf_counter() - start,
                    "result": result,
                }
            )
            problem.release()  # its kept output features: no later level reads them
            if _failed(result):
                break
            if writer is not None:
                writer.level_done(history, rng)
    except KeyboardInterrupt as interrupt:
        if writer is None:
            raise
        raise writer.interrupted() from interrupt
    result = history[-1]["result"]
    x = dict(result.x, network=problem.network)
    message = f"{len(history)} levels, {history[0]['n_layers']} to {history[-1]['n_layers']} layers"
    stalled = [rec["n_layers"] for rec in history if _stalled(rec["result"])]
    if stalled:
        message += f"; the line search stalled (level ended early) at {', '.join(map(str, stalled))} layers"
    if _failed(result):
        message += f"; the {history[-1]['n_layers']}-layer level {result.message}"
    return SolverResult(
        x=x,
        fun=result.fun,
        nit=sum(rec["iterations"] for rec in history),
        success=not _failed(result) and len(history) == len(layers),
        message=message,
        history=history,
    )


def _stalled(result: SolverResult) -> bool:
    """Whether a level ended because its line search found no decrease (the objective is flat)."""
    return bool(result.history) and bool(result.history[-1].get("line_search_failed"))


def _failed(result: SolverResult) -> bool:
    """Whether a level ended by a failure that ends the run (anything but a stalled line search)."""
    return bool(result.history) and "failure" in result.history[-1] and not _stalled(result)


def _level_callback(
    writer: CheckpointWriter | None, callback: Callable | None, level: int, history: list[dict]
) -> Callable:
    """The solver's callback at ``level``: the checkpoint writer, then the caller's ``callback``."""

    def level_callback(k: int, state: Any) -> bool | None:
        if writer is not None:
            writer.iteration(level, history, state)
        return callback(k, state) if callback is not None else None

    return level_callback

