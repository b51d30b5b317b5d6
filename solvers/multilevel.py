r"""Multilevel training (Haber & Ruthotto 2017, section 5.3): coarse-to-fine in the number of layers.

The network is the discretisation of an ODE on :math:`[0, T]`; a network with
:math:`N` layers (step :math:`h = T/N`) trained on a problem gives, after
prolongation in time, an initial guess for :math:`2N` layers (:math:`h/2`),
as good as the coarse network approximates the ODE: after a large coarse step
(:math:`h = 5`) the finer network classifies quite differently and trains back
up; between fine levels of a stable stepper little changes. :func:`multilevel`
trains with :math:`N_0` layers, prolongates, trains with :math:`2N_0`, ... up
to ``max_layers``, each level warm-started from the last (:math:`\theta`
prolongated, :math:`W, \mu` kept).

The method of each level is a strategy object (``solver=``:
:class:`~ocdl.solvers.block_coordinate_descent.BlockCoordinateDescent`,
:class:`~ocdl.solvers.first_order.SGD`, :class:`~ocdl.solvers.first_order.Adam`),
and so is checkpointing (``checkpoint=``: :class:`~ocdl.solvers.checkpoint.Checkpointing`):
with it the run is resumable: :mod:`ocdl.solvers.checkpoint` writes its full
state every ``every`` iterations, at each level's end and on Ctrl-C, and
``resume=True`` continues from the file exactly, so that the final parameters
equal those of an uninterrupted run with the same seed. A larger ``max_layers``
on resuming adds levels: a finished run continues deeper, from its finest
level, as if it had planned them from the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ocdl.backend import Array, device_of, get_array_module
from ocdl.learning_problem import LearningProblem
from ocdl.memory import MemoryPolicy
from ocdl.propagation import Network
from ocdl.validation import is_integer, random_generator

from .block_coordinate_descent import BlockCoordinateDescent
from .checkpoint import Checkpointing, CheckpointWriter, InterruptLatch
from .params import Params
from .result import MultilevelResult, SolverResult, Status
from .training_loop import Callback, TrainingSolver

logger = logging.getLogger(__name__)


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
    problem: LearningProblem,
    params0: Params | Array | None,
    *,
    max_layers: int = 64,
    solver: TrainingSolver | None = None,
    validation: tuple[Array, Array] | None = None,
    rng: int | np.random.Generator | None = 0,
    callback: Callback | None = None,
    progress: bool = True,
    checkpoint: Checkpointing | None = None,
    memory: Callable[[int], MemoryPolicy] | None = None,
) -> MultilevelResult:
    r"""Train coarse to fine: :math:`N_0, 2N_0, 4N_0, \dots \le` ``max_layers`` layers.

    :math:`N_0` is ``problem.network.n_steps`` and ``params0`` its
    parameters. Level :math:`\ell` solves
    ``problem.with_network(network.with_steps(N_l))`` (the default
    time-smoothness regularizer is rebuilt for :math:`N_\ell, h_\ell`) by
    ``solver`` from the previous level's best parameters, :math:`\theta`
    prolongated by :func:`prolongate`. A level whose line search fails
    (status :attr:`~ocdl.solvers.result.Status.LINE_SEARCH_FAILED`: no
    decrease even for tiny steps, the objective is flat to rounding at this
    level) ends that level only, and the next level starts from its best
    parameters. A level that fails otherwise (a non-finite objective or a
    blow-up, see :mod:`ocdl.solvers.training_loop`) ends the run with
    ``success=False``.

    Parameters
    ----------
    problem : LearningProblem
        The problem with the coarsest network.
    params0 : Params, tuple or array
        Initial parameters of the coarsest level (``Params`` or ``(theta, W, mu)``), or its :math:`\theta`
        alone (zero classifier); not used when resuming from a checkpoint
        past the start of level 0 (``None`` is then allowed).
    max_layers : int
        Largest number of layers, ``>= N_0``.
    solver : TrainingSolver, optional
        The method of every level: ``BlockCoordinateDescent(...)`` (the
        default, ``BlockCoordinateDescent()``: ``max_iter=50``), ``SGD(...)``,
        ``Adam(...)``.
    validation : (Y_val, C_val), optional
        Validation data, passed to every level.
    rng : int or numpy.random.Generator
        One generator, continued through all levels (when resuming, the
        checkpoint's generator is used instead).
    callback : callable, optional
        ``callback(iteration, state)`` after every iteration of every level,
        as for :meth:`~ocdl.solvers.training_loop.TrainingSolver.minimize`;
        returning ``True`` ends the level.
    progress : bool
        Progress bars of the levels.
    checkpoint : Checkpointing, optional
        Where and how often to write checkpoints and whether to resume
        (:class:`~ocdl.solvers.checkpoint.Checkpointing`). A resumed run
        continues exactly: level, iteration, parameters, best parameters,
        solver buffers, history and random generator are restored, so the
        result equals that of an uninterrupted run; a finished checkpoint
        returns its result without training. A checkpoint of a run with
        fewer levels (a smaller ``max_layers``, all else the same) continues
        with the levels it lacks, finished or not: training to 16 layers and
        then resuming its checkpoint with ``max_layers=32`` gives, bit for
        bit, the result of a run straight to 32 layers, without training
        the first levels again. A checkpoint of another run
        (another solver, ``repr`` compared, or levels, sizes) or of another
        problem (its :meth:`~ocdl.LearningProblem.fingerprint`) is refused
        (see Raises), and so is one of a run with more levels. A checkpoint
        written by another number of processes (a data-parallel problem,
        :mod:`ocdl.distributed`) continues a valid run, not bit for bit the
        writer's: it resumes with a
        :class:`~ocdl.solvers.checkpoint.ResumeWarning` (on rank 0). Default:
        no checkpoints.
    memory : callable, optional
        ``memory(N)``: the memory policy (:mod:`ocdl.memory`) of the level
        with :math:`N` layers, called when that level's network is built, so
        that a level stores its forward states when they fit and only the
        deeper ones rebuild or recompute them (e.g.
        :func:`ocdl.experiments.memory_policy` planned for :math:`N`). Called on
        every worker of a data-parallel problem at the same level, so it may
        be a collective operation. Default: the coarsest network's policy at
        every level. The policies give the same derivatives up to rounding.

    Returns
    -------
    MultilevelResult
        ``x``: the :class:`~ocdl.solvers.params.Params` of the last level's
        best parameters; ``network``: that level's network; ``nit``:
        iterations over all levels; ``status``: :attr:`~ocdl.solvers.result.Status.MAX_ITER`
        when every level ran (``success=True``; levels whose line search
        stalled are named in ``message``), else the failed level's status;
        ``history``: one record per level with ``level, n_layers,
        iterations, objective, train_accuracy, best_val_accuracy`` (NaN
        without validation data), ``time_s`` (over all sessions of a resumed
        level) and ``result`` (the level's :class:`~ocdl.solvers.result.SolverResult`).

    Raises
    ------
    TypeError, ValueError
        For malformed arguments; ``ValueError`` also when resuming from a
        checkpoint written by a run with another solver or problem (sizes,
        or an entry of :meth:`~ocdl.LearningProblem.fingerprint`: objective,
        :math:`\alpha_\theta`, :math:`\alpha_W`, regularizers, training or
        validation data), naming what changed. A checkpoint written before
        fingerprints were recorded is checked for the rest.
    ocdl.io.OcdlFileError
        When resuming from a file that is not a readable checkpoint.
    ocdl.solvers.checkpoint.TrainingInterrupted
        On Ctrl-C with ``checkpoint`` (a ``KeyboardInterrupt``), after the
        last completed iteration is written. Without ``checkpoint`` Ctrl-C
        raises the plain ``KeyboardInterrupt``.

    Warns
    -----
    UserWarning
        If the solver's ``batch_size`` is more than the training examples, as
        :meth:`~ocdl.solvers.training_loop.TrainingSolver.minimize` (at every level; Python's
        default filter shows it once).
    """
    if not isinstance(problem, LearningProblem):
        raise TypeError(f"problem must be an ocdl LearningProblem, got {type(problem).__name__}")
    network = problem.network
    if not is_integer(max_layers) or max_layers < network.n_steps:
        raise ValueError(f"max_layers must be an integer >= the network's {network.n_steps} layers, got {max_layers!r}")
    solver = BlockCoordinateDescent() if solver is None else solver
    if not isinstance(solver, TrainingSolver):
        raise TypeError(f"solver must be a TrainingSolver such as BlockCoordinateDescent(...), got {solver!r}")
    if checkpoint is not None and not isinstance(checkpoint, Checkpointing):
        raise TypeError(f"checkpoint must be a Checkpointing(path, every=..., resume=...), got {checkpoint!r}")
    if memory is not None and not callable(memory):
        raise TypeError(f"memory must be a function of the number of layers returning a memory policy, got {memory!r}")
    layers = [network.n_steps]
    while 2 * layers[-1] <= max_layers:
        layers.append(2 * layers[-1])
    if layers[-1] != max_layers:
        logger.warning("max_layers = %d: the levels double from the network's %d layers, so the finest has %d; "
                       "pass max_layers=%d, or %d for one more level", max_layers, network.n_steps, layers[-1],
                       layers[-1], 2 * layers[-1])

    def level_problem(n_layers: int) -> LearningProblem:
        policy = None if memory is None else memory(n_layers)
        if policy is not None and not isinstance(policy, MemoryPolicy):
            raise TypeError(f"memory({n_layers}) must return an ocdl memory policy (StoreAll(), Recompute(n), "
                            f"HDF5(path), Reversible()), got {policy!r}")
        if n_layers == network.n_steps and policy is None:
            return problem
        return problem.with_network(network.with_steps(n_layers, policy))

    writer = saved = None
    if checkpoint is not None:
        run = {
            "solver": repr(solver),
            "layers": layers,
            "params_per_layer": network.stepper.n_params,
            "n_features": problem.n_features,
            "n_outputs": problem.n_outputs,
            "n_examples": problem.n_examples,
            "stepper": repr(network.stepper),
            "final_time": network.final_time,
            "dtype": str(problem.Y0.dtype),
            "problem": problem.fingerprint(validation),
        }
        shares = problem.reduction.gather(problem.Y0.shape[0])  # the split of the examples over the processes
        writer = CheckpointWriter(checkpoint, run, shares, problem.reduction,
                                  earlier={"stepper": network.stepper.repr_before_settings()})
        saved = writer.resume(device_of(problem.Y0)) if checkpoint.resume else None
    if saved is not None:
        rng, history, first, state = saved.rng, saved.levels, saved.level, saved.state
    else:
        rng, history, first, state = random_generator("rng", rng), [], 0, None
        if writer is not None:
            writer.start(rng)
    level_lp = None
    with InterruptLatch(problem.reduction) as latch:  # a Ctrl-C that Python loses stops the run after its iteration
        try:
            for level in range(first, len(layers)):
                level_lp = level_problem(layers[level])
                if state is not None:  # continued from the checkpoint's state
                    start_params = None
                elif level == 0:
                    start_params = params0
                else:
                    best = history[-1]["result"].x
                    theta = prolongate(best.theta, network.with_steps(layers[level - 1]))
                    start_params = Params(theta, best.W, best.mu)
                start, resumed_time = time.perf_counter(), 0.0 if state is None else state.elapsed
                result = solver.minimize(level_lp, start_params, validation=validation, rng=rng,
                                         callback=_level_callback(writer, callback, level, history, latch),
                                         progress=progress, state=state)
                state = None
                val = [rec["val_accuracy"] for rec in result.history if "val_accuracy" in rec]
                history.append(
                    {
                        "level": level,
                        "n_layers": layers[level],
                        "iterations": result.nit,
                        "objective": result.fun,
                        "train_accuracy": level_lp.accuracy(*result.x),
                        "best_val_accuracy": max(val) if val else np.nan,
                        "time_s": resumed_time + time.perf_counter() - start,
                        "result": result,
                    }
                )
                level_lp.release()  # its kept output features: no later level reads them
                if _failed(result):
                    break
                if writer is not None:
                    writer.level_done(history, rng)
        except KeyboardInterrupt as interrupt:
            if writer is None:
                raise
            raise writer.interrupted(everywhere=latch.agreed or problem.reduction.size == 1) from interrupt
    if level_lp is None:  # a finished checkpoint: its last level's network
        level_lp = level_problem(history[-1]["n_layers"])
    result = history[-1]["result"]
    message = f"{len(history)} levels, {history[0]['n_layers']} to {history[-1]['n_layers']} layers"
    stalled = [rec["n_layers"] for rec in history if rec["result"].status is Status.LINE_SEARCH_FAILED]
    if stalled:
        message += f"; the line search stalled (level ended early) at {', '.join(map(str, stalled))} layers"
    failed = _failed(result)
    if failed:
        message += f"; the {history[-1]['n_layers']}-layer level {result.message}"
    return MultilevelResult(
        x=result.x,
        network=level_lp.network,
        fun=result.fun,
        nit=sum(rec["iterations"] for rec in history),
        status=result.status if failed else Status.MAX_ITER,
        success=not failed and len(history) == len(layers),
        message=message,
        history=history,
    )


def _failed(result: SolverResult) -> bool:
    """Whether a level ended by a failure that ends the run (anything but a stalled line search)."""
    return not result.success and result.status is not Status.LINE_SEARCH_FAILED


def _level_callback(
    writer: CheckpointWriter | None, callback: Callback | None, level: int, history: list[dict],
    latch: InterruptLatch,
) -> Callback:
    """The solver's callback at ``level``: the checkpoint writer, the caller's ``callback``, then a Ctrl-C that
    arrived in the iteration and was lost (:class:`~ocdl.solvers.checkpoint.InterruptLatch`)."""

    def level_callback(k: int, state: Any) -> bool | None:
        if writer is not None:
            writer.iteration(level, history, state)
        stop = callback(k, state) if callback is not None else None
        latch.check()
        return stop

    return level_callback
