r"""The loop shared by the training solvers: one iteration at a time, the best parameters, failures, resumption.

A training solver (:class:`TrainingSolver`: block coordinate descent, SGD,
Adam, or a user's subclass) is a frozen dataclass of its options whose
:meth:`~TrainingSolver.iterate` advances a :class:`TrainingState` by one
iteration on the learning problem :math:`f(\theta, W, \mu)`
(:class:`ocdl.LearningProblem`, eq. 2.4) and returns the iteration's history
record. :meth:`TrainingSolver.minimize` runs the loop around it: after every
iteration it measures the training and validation accuracy, keeps the
parameters of the best validation accuracy, and calls the callback, until
the solver's number of iterations is done. Its ``repr`` names every option,
so that a checkpoint records which solver wrote it.

All loop state (iteration count, random generator, current and best
parameters, history, elapsed time, the solver's buffers) lives in one
:class:`TrainingState`, which the callback sees and which continues a run
exactly where it stopped when passed back in (``state=``): same random draws,
same iterates (:mod:`ocdl.solvers.checkpoint` writes it to disk).

Failures stop the loop with ``success=False``, a :class:`~ocdl.solvers.result.Status`,
a message in the result and a warning on the logger
``ocdl.solvers.training_loop``, never an endless loop: a non-finite objective
or a forward propagation that blows up (:class:`~ocdl.PropagationError`;
:attr:`~ocdl.solvers.result.Status.NOT_FINITE`), or a line search that fails
along both the Gauss-Newton and the steepest-descent direction
(:attr:`~ocdl.solvers.result.Status.LINE_SEARCH_FAILED`). The result then
holds the best parameters of the iterations before (the starting parameters
if none completed).
"""

from __future__ import annotations

import abc
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from ocdl.backend import Array
from ocdl.learning_problem import LearningProblem
from ocdl.validation import random_generator

from .params import Params
from .result import SolverResult, Status

logger = logging.getLogger(__name__)
Callback = Callable[[int, "TrainingState"], "bool | None"]


@dataclass
class TrainingState:
    """Everything a training loop needs to continue exactly where it stopped.

    Attributes
    ----------
    iteration : number of completed iterations.
    params : the current parameters.
    rng : the random generator (its state is the position in the random draws).
    best : the parameters of the best validation accuracy so far (``None``
        before the first iteration).
    best_accuracy : that accuracy (training accuracy without validation data).
    best_iteration : the (0-based) iteration that reached it.
    history : one record per completed iteration.
    elapsed : seconds spent in the iterations so far (over all runs).
    buffers : solver-specific values (SGD's velocity, Adam's moments: arrays,
        tuples of arrays and numbers); empty for block coordinate descent.
    """

    iteration: int
    params: Params
    rng: np.random.Generator
    best: Params | None = None
    best_accuracy: float = -np.inf
    best_iteration: int | None = None
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    buffers: dict = field(default_factory=dict)


class TrainingSolver(abc.ABC):
    """A training method: a frozen dataclass of options with :meth:`iterate`; :meth:`minimize` trains.

    Subclasses set ``label`` (the progress bar's name) and ``limit`` (the
    option that sets :attr:`n_iterations`, named in the result's message),
    implement :attr:`n_iterations` and :meth:`iterate`, and check their
    options in ``__post_init__`` (so that a bad option fails where the solver
    is made).
    """

    label: ClassVar[str]
    limit: ClassVar[str] = "max_iter"

    @property
    @abc.abstractmethod
    def n_iterations(self) -> int:
        """The number of iterations of a run (those of a continued state included)."""

    @abc.abstractmethod
    def iterate(self, problem: LearningProblem, state: TrainingState) -> dict:
        """One iteration: update ``state.params`` (and ``state.buffers``, ``state.rng``); return its record.

        The record holds at least ``objective``; ``line_search_failed: True``
        marks an iteration whose line search failed (the loop stops there).
        Raising :class:`FloatingPointError` (a blow-up) also stops the loop.
        """

    def minimize(
        self,
        problem: LearningProblem,
        params0: Params | Array | None,
        *,
        validation: tuple[Array, Array] | None = None,
        rng: int | np.random.Generator | None = 0,
        callback: Callback | None = None,
        progress: bool = True,
        state: TrainingState | None = None,
    ) -> SolverResult:
        """Train ``problem`` from ``params0`` for :attr:`n_iterations` iterations.

        Parameters
        ----------
        problem : LearningProblem
            :math:`f(\\theta, W, \\mu)` on the training examples.
        params0 : Params, tuple or array
            Initial parameters (``Params(theta, W, mu)`` or the tuple ``(theta, W, mu)``), or initial
            :math:`\\theta` alone (then the
            classifier starts at zero, :meth:`~ocdl.LearningProblem.initial_classifier`);
            ignored when ``state`` is given.
        validation : (Y_val, C_val), optional
            Validation examples and labels (class indices or one-hot). The
            best parameters are chosen by validation accuracy (training
            accuracy without it).
        rng : int or numpy.random.Generator
            Seed or generator of the random draws (ignored when ``state`` is given).
        callback : callable, optional
            ``callback(iteration, state)`` after every iteration (0-based;
            the live :class:`TrainingState`: copy it to keep it); returning
            ``True`` stops. Not called for an iteration that failed.
        progress : bool
            Show a tqdm progress bar.
        state : TrainingState, optional
            Continue this run (from a callback or a checkpoint) exactly where it stopped.

        Returns
        -------
        SolverResult
            ``x``: the :class:`~ocdl.solvers.params.Params` of the best
            validation accuracy; ``fun``: :math:`f` there on all training
            examples; ``status``: :attr:`~ocdl.solvers.result.Status.MAX_ITER`
            or :attr:`~ocdl.solvers.result.Status.CALLBACK` with
            ``success=True``, or the failure (see the module docstring) with
            ``success=False`` (the last record's ``failure`` says why). The
            history has the solver's records plus ``iteration``,
            ``train_accuracy``, ``val_accuracy`` and ``time``.

        Raises
        ------
        TypeError, ValueError
            For malformed parameters or validation data (see :func:`initial_state`).

        Warns
        -----
        UserWarning
            If the solver's ``batch_size``, set to other than its default (SGD's and Adam's 32 on a smaller data
            set says nothing), is more than the training examples (those of all workers of a
            data-parallel problem): every batch takes all of them; or block coordinate descent's
            ``hessian_batch_size`` is more than the examples of a batch.
        """
        state = initial_state(problem, params0, rng, state)
        validation = _checked_validation(problem, validation)
        for message in self._batches_too_large(problem.n_examples):
            warnings.warn(message, stacklevel=2)
        return _loop(self, problem, state, validation, callback, progress)

    def _batches_too_large(self, n_examples: int) -> list[str]:
        """What the options ``batch_size`` (BCD, SGD, Adam) and ``hessian_batch_size`` (BCD), where set to more
        than their default, ask beyond the ``n_examples`` training examples (all workers')."""
        batch_size = getattr(self, "batch_size", None)  # None: all
        batch = n_examples if batch_size is None else min(batch_size, n_examples)
        hessian_batch_size = getattr(self, "hessian_batch_size", None)
        said = []
        default = getattr(type(self), "batch_size", None)  # a dataclass's field default (or none)
        if batch_size is not None and batch_size != default and batch_size > n_examples:
            said.append(f"batch_size {batch_size} is more than the {n_examples} training examples: every batch "
                        f"takes all {n_examples}")
        if hessian_batch_size is not None and hessian_batch_size > batch:
            said.append(f"hessian_batch_size {hessian_batch_size} is more than the {batch} examples of a batch: the "
                        f"Gauss-Newton matrix takes all {batch}")
        return said


def initial_state(
    problem: LearningProblem,
    params0: Params | Array | None,
    rng: int | np.random.Generator | None,
    state: TrainingState | None,
) -> TrainingState:
    """``state`` when continuing a run, else a fresh state at ``params0`` (an array: theta, zero classifier).

    Raises
    ------
    TypeError
        If ``problem`` is not a :class:`~ocdl.LearningProblem`, ``state`` not a
        :class:`TrainingState`, ``params0`` neither :class:`~ocdl.solvers.params.Params`,
        a tuple ``(theta, W, mu)`` nor an array, or a parameter not a floating array of the examples'
        dtype and device.
    ValueError
        If ``params0`` is missing (without ``state``), or a parameter has the
        wrong shape or NaN/Inf entries.
    """
    if not isinstance(problem, LearningProblem):
        raise TypeError(f"problem must be an ocdl LearningProblem, got {type(problem).__name__}")
    if state is not None:
        if not isinstance(state, TrainingState):
            raise TypeError(f"state must be a TrainingState, got {type(state).__name__}")
        return state
    if params0 is None:
        raise ValueError("params0 is required unless a state is given to continue from")
    if isinstance(params0, tuple):  # (theta, W, mu), as a result's x unpacks
        if len(params0) != 3:
            raise ValueError(f"params0 must be Params(theta, W, mu), a tuple (theta, W, mu) or theta alone, got a "
                             f"{type(params0).__name__} of {len(params0)}")
        params0 = Params(*params0)
    if not isinstance(params0, Params):
        params0 = Params(params0, *problem.initial_classifier())
    n, m = problem.n_features, problem.n_outputs
    shapes = {"theta": (problem.network.n_params,), "W": (n, m), "mu": (m,)}
    for name, x in zip(shapes, params0):
        problem.check_like_examples(f"params0.{name}", x, shapes[name])
    return TrainingState(iteration=0, params=params0, rng=random_generator("rng", rng))


def _checked_validation(problem: LearningProblem, validation: Any) -> tuple[Array, Array] | None:
    """``validation`` as ``(Y_val, class indices)``, checked against ``problem``."""
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise TypeError("validation must be a pair (Y_val, C_val)")
    Y_val, C_val = validation
    with problem.reduction.errors():  # a worker's bad share stops every worker, at its next reduction
        Y_val = problem.check_like_examples("Y_val", problem.check_examples(Y_val, "Y_val"),
                                            (None, problem.n_features), finite=False)  # the entries: check_examples
        C_val = problem.class_indices(C_val)
        if C_val.shape[0] != Y_val.shape[0]:
            raise ValueError(
                f"validation labels must hold one label per row of Y_val ({Y_val.shape[0]}), got {C_val.shape[0]}"
            )
    return Y_val, C_val


def _loop(
    solver: TrainingSolver,
    problem: LearningProblem,
    state: TrainingState,
    validation: tuple[Array, Array] | None,
    callback: Callback | None,
    progress: bool,
) -> SolverResult:
    """Iterate ``solver`` until ``state.iteration == solver.n_iterations``, a failure or the callback's stop."""
    n_iterations = solver.n_iterations
    desc = f"{solver.label} N={problem.network.n_steps}"
    status, success, message = Status.MAX_ITER, True, f"completed {solver.limit} = {n_iterations} iterations"
    start_params = state.params
    base, start = state.elapsed, time.perf_counter()
    with tqdm(total=n_iterations, initial=state.iteration, disable=not progress, desc=desc) as bar:
        while state.iteration < n_iterations:
            k = state.iteration
            record = {"iteration": k}
            try:
                record.update(solver.iterate(problem, state))
                failure = _failure(record)
                if failure is None:
                    record["train_accuracy"] = problem.accuracy(*state.params)
                    if validation is not None:
                        record["val_accuracy"] = problem.accuracy(*state.params, *validation)
            except FloatingPointError as err:
                failure = Status.NOT_FINITE, str(err)
            if failure is None:
                score = record.get("val_accuracy", record["train_accuracy"])
                if score >= state.best_accuracy:  # ties: the later (better trained) parameters
                    state.best, state.best_accuracy, state.best_iteration = state.params, score, k
            state.elapsed = base + time.perf_counter() - start
            record["time"] = state.elapsed
            state.history.append(record)
            state.iteration = k + 1
            bar.update(1)
            if failure is not None:
                status, record["failure"] = failure
                success, message = False, f"stopped at iteration {k}: {record['failure']}"
                logger.warning("%s: %s", desc, message)
                break
            bar.set_postfix(objective=f"{record['objective']:.3g}", accuracy=f"{score:.3f}")
            if callback is not None and callback(k, state):
                status, message = Status.CALLBACK, f"stopped by callback after {state.iteration} iterations"
                break
    best = state.best if state.best is not None else start_params
    which = "validation" if validation is not None else "training"
    if state.best_iteration is not None:
        message += f"; best {which} accuracy {state.best_accuracy:.4f} at iteration {state.best_iteration}"
    try:
        fun = problem.value(*best)
    except FloatingPointError:  # only when no iteration completed and the start itself blows up
        fun = math.nan
    return SolverResult(x=best, fun=fun, nit=state.iteration, status=status, success=success, message=message,
                        history=state.history)


def _failure(record: dict) -> tuple[Status, str] | None:
    """The status and the reason of the failure of the iteration of ``record``, or ``None``."""
    if record.get("line_search_failed"):
        return Status.LINE_SEARCH_FAILED, (
            "the line search in theta failed along the Gauss-Newton and the steepest-descent directions "
            "(no decrease even for tiny steps: the objective is flat to rounding, or not smooth there)"
        )
    if not math.isfinite(record["objective"]):
        return Status.NOT_FINITE, (
            f"the objective is {record['objective']} (not finite); check the data and the parameters' scale"
        )
    return None
