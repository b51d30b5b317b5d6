r"""Block coordinate descent of Haber & Ruthotto (2017), section 2, and the resumable training loop.

Each iteration of :func:`block_coordinate_descent` on the learning problem
:math:`f(\theta, W, \mu)` (:class:`ocdl.LearningProblem`, eq. 2.4):

1. draws a random batch :math:`B` of ``batch_size`` training examples;
2. computes the features :math:`Y_N(\theta)` of :math:`B` and takes at most
   ``classifier_newton_steps`` Newton-PCG steps on the convex problem in
   :math:`(W, \mu)` with the features fixed (:func:`ocdl.solvers.newton_pcg`);
3. takes one Gauss-Newton-PCG step on :math:`\theta` with :math:`(W, \mu)`
   fixed (:func:`ocdl.solvers.gauss_newton_pcg`), the gradient on :math:`B` and the
   Gauss-Newton matrix on a random sub-sample of ``hessian_batch_size``
   examples of :math:`B` (a step of either block whose Newton direction fails
   the line search is a steepest-descent step, see :func:`ocdl.solvers.newton_pcg`).
   The backtracking starts from :math:`t_0 = \min(1, 2 t_\text{prev})`, twice
   the previous iteration's accepted Gauss-Newton step (1 in the first
   iteration and after a steepest-descent step): where the Gauss-Newton model
   keeps overshooting (e.g. :math:`t = 2^{-5}` in every iteration), each trial
   is a forward sweep over :math:`B`, and this saves all but one or two of
   them, while a model that has become good is back at :math:`t = 1` after
   a few iterations;
4. measures the training and validation accuracy and keeps the parameters of
   the best validation accuracy.

All loop state (iteration count, random generator, current and best
parameters, history, elapsed time) lives in one :class:`TrainingState`, which
the callback sees and which continues a run exactly where it stopped when
passed back in (``state=``): same random draws, same iterates
(:mod:`ocdl.solvers.checkpoint` writes it to disk).

Failures stop the loop with ``success=False``, a message in the result and a
warning on the logger ``ocdl.solvers.block_coordinate_descent``, never an endless
loop: a non-finite objective, a forward propagation that blows up
(:class:`~ocdl.PropagationError`) or, in block coordinate descent, a line
search in :math:`\theta` that fails along both the Gauss-Newton and the
steepest-descent direction. The result then holds the best parameters of the
iterations before (the starting parameters if none completed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ocdl.backend import Array, get_array_module
from ocdl.learning_problem import LearningProblem
from ocdl.validation import check_array, check_positive

from .newton import gauss_newton_pcg, newton_pcg
from .result import SolverResult

logger = logging.getLogger(__name__)
Callback = Callable[[int, "TrainingState"], "bool | None"]


@dataclass
class TrainingState:
    """Everything a training loop needs to continue exactly where it stopped.

    Attributes
    ----------
    iteration : number of completed iterations.
    theta, W, mu : the current parameters.
    rng : the random generator (its state is the position in the random draws).
    best : ``dict(theta=, W=, mu=)`` with the best validation accuracy so far
        (``None`` before the first iteration).
    best_accuracy : that accuracy (training accuracy without validation data).
    best_iteration : the (0-based) iteration that reached it.
    history : one record per completed iteration.
    elapsed : seconds spent in the iterations so far (over all runs).
    buffers : solver-specific arrays (momentum, Adam moments); empty for
        block coordinate descent.
    """

    iteration: int
    theta: Array
    W: Array
    mu: Array
    rng: np.random.Generator
    best: dict | None = None
    best_accuracy: float = -np.inf
    best_iteration: int | None = None
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    buffers: dict = field(default_factory=dict)


def initial_state(
    problem: LearningProblem,
    theta0: Array | None,
    W0: Array | None,
    mu0: Array | None,
    rng: int | np.random.Generator | None,
    state: TrainingState | None,
) -> TrainingState:
    """``state`` when continuing a run, else a fresh state at ``(theta0, W0, mu0)`` (zero classifier by default).

    Raises
    ------
    TypeError
        If ``problem`` is not a :class:`~ocdl.LearningProblem`, ``state`` not a
        :class:`TrainingState`, or a parameter not a floating array of the
        examples' dtype and device.
    ValueError
        If ``theta0`` is missing (without ``state``), or a parameter has the
        wrong shape or NaN/Inf entries.
    """
    if not isinstance(problem, LearningProblem):
        raise TypeError(f"learning_problem must be an ocdl LearningProblem, got {type(problem).__name__}")
    if state is not None:
        if not isinstance(state, TrainingState):
            raise TypeError(f"state must be a TrainingState, got {type(state).__name__}")
        return state
    if theta0 is None:
        raise ValueError("theta0 is required unless a state is given to continue from")
    W_zero, mu_zero = problem.initial_classifier()
    n, m = problem.n_features, problem.n_outputs
    params = {
        "theta0": (theta0, (problem.network.n_params,)),
        "W0": (W_zero if W0 is None else W0, (n, m)),
        "mu0": (mu_zero if mu0 is None else mu0, (m,)),
    }
    xp = get_array_module(problem.Y0)
    for name, (x, shape) in params.items():
        check_array(name, x, shape=shape)
        if get_array_module(x) is not xp or x.dtype != problem.Y0.dtype:
            raise TypeError(
                f"{name} must be a {xp.__name__} array of the examples' dtype {problem.Y0.dtype}, "
                f"got a {get_array_module(x).__name__} array of dtype {x.dtype}"
            )
    return TrainingState(
        iteration=0,
        theta=params["theta0"][0],
        W=params["W0"][0],
        mu=params["mu0"][0],
        rng=np.random.default_rng(rng),
    )


def run_training(
    problem: LearningProblem,
    iterate: Callable[[TrainingState], dict],
    state: TrainingState,
    max_iter: int,
    validation: tuple[Array, Array] | None,
    callback: Callback | None,
    progress: bool,
    desc: str,
) -> SolverResult:
    """The loop shared by the training solvers.

    ``iterate(state)`` performs one iteration, updating ``state.theta``,
    ``state.W``, ``state.mu`` (and ``state.buffers``, ``state.rng``) and
    returning its history record; this loop adds ``iteration``,
    ``train_accuracy``, ``val_accuracy`` and ``time``, tracks the best
    parameters, and calls ``callback(iteration, state)`` (0-based; returning
    ``True`` stops) until ``state.iteration == max_iter``.

    An iteration fails when it or the accuracies after it raise
    :class:`FloatingPointError` (e.g. :class:`~ocdl.PropagationError`), when
    its record's ``objective`` is not finite, or when the record says
    ``line_search_failed``. The loop then appends the record (``failure``:
    the reason), logs a warning and stops with ``success=False``; the
    callback is not called for that iteration.
    """
    max_iter = check_positive("max_iter", max_iter, integer=True)
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a pair (Y_val, C_val)")
        Y_val, C_val = validation
        Y_val = problem.check_examples(Y_val, "Y_val")
        C_val = problem.class_indices(C_val)
        if C_val.shape[0] != Y_val.shape[0]:
            raise ValueError(
                f"validation labels must hold one label per row of Y_val ({Y_val.shape[0]}), got {C_val.shape[0]}"
            )
    message, success = f"completed max_iter = {max_iter} iterations", True
    start_params = dict(theta=state.theta, W=state.W, mu=state.mu)
    base, start = state.elapsed, time.perf_counter()
    with tqdm(total=max_iter, initial=state.iteration, disable=not progress, desc=desc) as bar:
        while state.iteration < max_iter:
            k = state.iteration
            record = {"iteration": k}
            try:
                record.update(iterate(state))
                failure = _failure(record)
                if failure is None:
                    record["train_accuracy"] = problem.accuracy(state.theta, state.W, state.mu)
                    if validation is not None:
                        record["val_accuracy"] = problem.accuracy(state.theta, state.W, state.mu, Y_val, C_val)
            except FloatingPointError as err:
                failure = str(err)
            if failure is None:
                score = record.get("val_accuracy", record["train_accuracy"])
                if score >= state.best_accuracy:  # ties: the later (better trained) parameters
                    state.best = dict(theta=state.theta, W=state.W, mu=state.mu)
                    state.best_accuracy, state.best_iteration = score, k
            state.elapsed = base + time.perf_counter() - start
            record["time"] = state.elapsed
            state.history.append(record)
            state.iteration = k + 1
            bar.update(1)
            if failure is not None:
                record["failure"] = failure
                message, success = f"stopped at iteration {k}: {failure}", False
                logger.warning("%s: %s", desc, message)
                break
            bar.set_postfix(objective=f"{record['objective']:.3g}", accuracy=f"{score:.3f}")
            if callback is not None and callback(k, state):
                message = f"stopped by callback after {state.iteration} iterations"
                break
    best = state.best if state.best is not None else start_params
    which = "validation" if validation is not None else "training"
    if state.best_iteration is not None:
        message += f"; best {which} accuracy {state.best_accuracy:.4f} at iteration {state.best_iteration}"
    try:
        fun = problem.value(best["theta"], best["W"], best["mu"])
    except FloatingPointError:  # only when no iteration completed and the start itself blows up
        fun = math.nan
    return SolverResult(x=best, fun=fun, nit=state.iteration, success=success, message=message, history=state.history)


def _failure(record: dict) -> str | None:
    """Why the iteration of ``record`` failed, or ``None``."""
    if record.get("line_search_failed"):
        return (
            "the line search in theta failed along the Gauss-Newton and the steepest-descent directions "
            "(no decrease even for tiny steps: the objective is flat to rounding, or not smooth there)"
        )
    if not math.isfinite(record["objective"]):
        return f"the objective is {record['objective']} (not finite); check the data and the parameters' scale"
    return None


def block_coordinate_descent(
    learning_problem: LearningProblem,
    theta0: Array | None,
    W0: Array | None = None,
    mu0: Array | None = None,
    validation: tuple[Array, Array] | None = None,
    max_iter: int = 50,
    batch_size: int | None = None,
    hessian_batch_size: int | None = None,
    classifier_newton_steps: int = 2,
    classifier_cg_maxiter: int = 2,
    cg_maxiter: int = 20,
    cg_rtol: float = 1e-2,
    rng: int | np.random.Generator | None = 0,
    callback: Callback | None = None,
    progress: bool = True,
    state: TrainingState | None = None,
) -> SolverResult:
    r"""Train by block coordinate descent: Newton-PCG in :math:`(W, \mu)`, Gauss-Newton-PCG in :math:`\theta`.

    See the module docstring for one iteration.

    Parameters
    ----------
    learning_problem : LearningProblem
        :math:`f(\theta, W, \mu)` on the training examples.
    theta0 : array
        Initial network parameters (ignored when ``state`` is given).
    W0, mu0 : array, optional
        Initial classifier (default zero).
    validation : (Y_val, C_val), optional
        Validation examples and labels (class indices or one-hot). The best
        parameters are chosen by validation accuracy (training accuracy
        without it).
    max_iter : int
        Total number of iterations (including those of a continued ``state``).
    batch_size : int, optional
        Examples per iteration, drawn without replacement (all if ``None``:
        full batch, no random draw).
    hessian_batch_size : int, optional
        Examples of the Gauss-Newton matrix, drawn from the batch (the whole
        batch if ``None``).
    classifier_newton_steps, classifier_cg_maxiter : int
        Newton steps and CG iterations per step in :math:`(W, \mu)`.
    cg_maxiter, cg_rtol : int, float
        CG iterations and relative tolerance of the Gauss-Newton step.
    rng : int or numpy.random.Generator
        Seed or generator of the batches (ignored when ``state`` is given).
    callback : callable, optional
        ``callback(iteration, state)`` after every iteration (0-based; the
        live :class:`TrainingState`: copy it to keep it); returning ``True``
        stops.
    progress : bool
        Show a tqdm progress bar.
    state : TrainingState, optional
        Continue this run (from a callback) exactly where it stopped.

    Returns
    -------
    SolverResult
        ``x = dict(theta=, W=, mu=)``: the parameters with the best validation
        accuracy; ``fun``: :math:`f` there on all training examples; history
        records ``iteration, objective`` (:math:`f` on the batch after the
        step), ``grad_norm, step, cg_iters`` (Gauss-Newton step in
        :math:`\theta`), ``classifier_grad_norm, classifier_steps,
        classifier_cg_iters, batch_accuracy, train_accuracy, val_accuracy,
        time``, ``gradient_fallback, classifier_gradient_fallback``
        (whether a block took the steepest-descent fallback),
        ``negative_curvature`` (PCG met :math:`p^T H p \le 0` in the
        Gauss-Newton system, also logged) and ``line_search_failed``.
        ``success`` is ``True`` once the requested iterations (or the
        callback's stop) are done, ``False`` after a failure (see the module
        docstring; ``message`` and the last record's ``failure`` say which).

    Raises
    ------
    TypeError, ValueError
        For malformed parameters, validation data or options (see
        :func:`initial_state`).
    """
    problem = learning_problem
    state = initial_state(problem, theta0, W0, mu0, rng, state)
    for name, value in (("classifier_newton_steps", classifier_newton_steps),
                        ("classifier_cg_maxiter", classifier_cg_maxiter), ("cg_maxiter", cg_maxiter)):
        check_positive(name, value, integer=True)
    check_positive("cg_rtol", cg_rtol)
    s = problem.n_examples
    batch_size = s if batch_size is None else min(check_positive("batch_size", batch_size, integer=True), s)
    hessian_batch_size = (
        batch_size
        if hessian_batch_size is None
        else min(check_positive("hessian_batch_size", hessian_batch_size, integer=True), batch_size)
    )

    def iterate(state: TrainingState) -> dict:
        batch = None if batch_size == s else np.sort(state.rng.choice(s, size=batch_size, replace=False))
        hessian = None
        if hessian_batch_size < batch_size:
            rows = state.rng.choice(batch_size, size=hessian_batch_size, replace=False)
            hessian = np.sort(rows if batch is None else batch[rows])
        YN = problem.features(state.theta, indices=batch)
        classifier = newton_pcg(
            problem.classifier_problem(YN, batch),
            problem.pack_classifier(state.W, state.mu),
            max_iter=classifier_newton_steps,
            cg_maxiter=classifier_cg_maxiter,
        )
        state.W, state.mu = problem.unpack_classifier(classifier.x)
        theta_problem = problem.theta_problem(state.W, state.mu, batch, hessian)
        last = state.history[-1] if state.history else {}
        step0 = 1.0 if last.get("gradient_fallback", True) or not last["step"] > 0 else min(1.0, 2 * last["step"])
        gn = gauss_newton_pcg(theta_problem, state.theta, max_iter=1, cg_maxiter=cg_maxiter, cg_rtol=cg_rtol,
                              step0=step0)
        state.theta = gn.x
        step = gn.history[0] if gn.history else {}
        if step.get("negative_curvature"):
            logger.info(
                "BCD iteration %d: PCG met negative curvature (p^T H p <= 0) in the Gauss-Newton system after "
                "%d iterations; the step used %s", state.iteration, step["cg_iters"],
                "steepest descent" if step["gradient_fallback"] or step["cg_iters"] == 0 else "the last CG iterate",
            )
        return {
            "objective": gn.fun,
            "grad_norm": step.get("grad_norm", np.nan),
            "step": step.get("step", 0.0),
            "cg_iters": step.get("cg_iters", 0),
            "classifier_grad_norm": classifier.history[0]["grad_norm"] if classifier.history else np.nan,
            "classifier_steps": classifier.nit,
            "classifier_cg_iters": int(sum(rec["cg_iters"] for rec in classifier.history)),
            "batch_accuracy": step.get("batch_accuracy", np.nan),
            "gradient_fallback": step.get("gradient_fallback", False),
            "classifier_gradient_fallback": any(rec["gradient_fallback"] for rec in classifier.history),
            "negative_curvature": step.get("negative_curvature", False),
            "line_search_failed": step.get("step", 1.0) == 0.0,
        }

    desc = f"BCD N={problem.network.n_steps}"
    return run_training(problem, iterate, state, max_iter, validation, callback, progress, desc)
