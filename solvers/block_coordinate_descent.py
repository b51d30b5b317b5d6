r"""Block coordinate descent of Haber & Ruthotto (2017), section 2.

Each iteration of :class:`BlockCoordinateDescent` on the learning problem
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
   the best validation accuracy (the loop of :mod:`ocdl.solvers.training_loop`,
   which also handles failures and resumption).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ocdl.learning_problem import LearningProblem
from ocdl.validation import check_positive

from .newton import gauss_newton_pcg, newton_pcg
from .params import Params
from .training_loop import TrainingSolver, TrainingState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockCoordinateDescent(TrainingSolver):
    r"""Train by block coordinate descent: Newton-PCG in :math:`(W, \mu)`, Gauss-Newton-PCG in :math:`\theta`.

    See the module docstring for one iteration; :meth:`~ocdl.solvers.training_loop.TrainingSolver.minimize`
    trains, :func:`~ocdl.solvers.multilevel.multilevel` trains level by level.

    Parameters
    ----------
    max_iter : int
        Number of iterations of a run (including those of a continued state).
    batch_size : int, optional
        Examples per iteration, drawn without replacement (all if ``None``,
        or if larger than the training set: full batch, no random draw, and a
        ``UserWarning`` from :meth:`~ocdl.solvers.training_loop.TrainingSolver.minimize`).
    hessian_batch_size : int, optional
        Examples of the Gauss-Newton matrix, drawn from the batch (the whole
        batch if ``None`` or larger: then with a ``UserWarning``, as ``batch_size``).
    classifier_newton_steps, classifier_cg_maxiter : int
        Newton steps and CG iterations per step in :math:`(W, \mu)`.
    cg_maxiter, cg_rtol : int, float
        CG iterations and relative tolerance of the Gauss-Newton step.

    Raises
    ------
    ValueError, TypeError
        For an option that is not a positive integer (``cg_rtol``: a positive number).

    Notes
    -----
    The history records ``iteration, objective`` (:math:`f` on the batch
    after the step), ``grad_norm, step, cg_iters`` (Gauss-Newton step in
    :math:`\theta`), ``classifier_grad_norm, classifier_steps,
    classifier_cg_iters, batch_accuracy, train_accuracy, val_accuracy,
    time``, ``gradient_fallback, classifier_gradient_fallback`` (whether a
    block took the steepest-descent fallback), ``negative_curvature`` (PCG met
    :math:`p^T H p \le 0` in the Gauss-Newton system, also logged) and
    ``line_search_failed``.
    """

    max_iter: int = 50
    batch_size: int | None = None
    hessian_batch_size: int | None = None
    classifier_newton_steps: int = 2
    classifier_cg_maxiter: int = 2
    cg_maxiter: int = 20
    cg_rtol: float = 1e-2

    label = "BCD"

    def __post_init__(self) -> None:
        for name in ("max_iter", "classifier_newton_steps", "classifier_cg_maxiter", "cg_maxiter"):
            object.__setattr__(self, name, check_positive(name, getattr(self, name), integer=True))
        for name in ("batch_size", "hessian_batch_size"):  # None: all
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_positive(name, getattr(self, name), integer=True))
        object.__setattr__(self, "cg_rtol", check_positive("cg_rtol", self.cg_rtol))

    @property
    def n_iterations(self) -> int:
        return self.max_iter

    def iterate(self, problem: LearningProblem, state: TrainingState) -> dict:
        s = problem.n_examples
        batch_size = s if self.batch_size is None else min(self.batch_size, s)
        hessian_batch_size = batch_size if self.hessian_batch_size is None else min(self.hessian_batch_size,
                                                                                     batch_size)
        batch = None if batch_size == s else np.sort(state.rng.choice(s, size=batch_size, replace=False))
        hessian = None
        if hessian_batch_size < batch_size:
            rows = state.rng.choice(batch_size, size=hessian_batch_size, replace=False)
            hessian = np.sort(rows if batch is None else batch[rows])
        params = state.params
        YN = problem.features(params.theta, indices=batch)
        classifier = newton_pcg(
            problem.classifier_problem(YN, batch),
            problem.pack_classifier(params.W, params.mu),
            max_iter=self.classifier_newton_steps,
            cg_maxiter=self.classifier_cg_maxiter,
        )
        W, mu = problem.unpack_classifier(classifier.x)
        theta_problem = problem.theta_problem(W, mu, batch, hessian)
        last = state.history[-1] if state.history else {}
        step0 = 1.0 if last.get("gradient_fallback", True) or not last["step"] > 0 else min(1.0, 2 * last["step"])
        gn = gauss_newton_pcg(theta_problem, params.theta, max_iter=1, cg_maxiter=self.cg_maxiter,
                              cg_rtol=self.cg_rtol, step0=step0)
        state.params = Params(gn.x, W, mu)
        step = gn.history[0] if gn.history else {}
        if step.get("negative_curvature"):
            logger.info(
                "BCD iteration %d: PCG met negative curvature (p^T H p <= 0) in the Gauss-Newton system after "
                "%d iterations; the step used %s", state.iteration, step["cg_iters"],
                "steepest descent" if step["gradient_fallback"] else "the last CG iterate",
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
