"""Running an experiment: multilevel block coordinate descent with the settings of the paper."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from ocdl.problems import Dataset
from ocdl.solvers import BlockCoordinateDescent, Checkpointing, MultilevelResult, multilevel

from ..backend import asnumpy, device_name, to_device
from ..checks import check_stepper
from ..distributed import check_share, select_gpu, share
from ..factory import KINDS
from ..learning_problem import LearningProblem
from ..propagation import Network
from ..reduction import Reduction
from .data import load_data, network_width, widen
from .model import build_network, build_problem, initial_parameters, memory_policy
from .settings import Settings

CHUNK = 2048
"""Examples per forward propagation in :meth:`Run.features` and :meth:`Run.predict`."""


@dataclass
class Run:
    """A finished training run.

    Attributes
    ----------
    settings : Settings
    data : ocdl.problems.Dataset
        The data set before widening (on the host): as :func:`train` was given
        it, whole or this process's share (MNIST under ``mpiexec``).
    problem : LearningProblem
        The learning problem with the finest level's network (this process's
        share of the training examples when they are split over processes).
    result : ocdl.solvers.MultilevelResult
        :func:`ocdl.solvers.multilevel`'s result: ``x``, the last level's
        parameters of best validation accuracy (:class:`ocdl.solvers.Params`),
        ``network``, that level's network, and one history record per level. A level that fails (e.g. its line search)
        ends the training there: ``result.success`` is then ``False`` and
        ``result.message`` says why.
    """

    settings: Settings
    data: Dataset
    problem: LearningProblem
    result: MultilevelResult

    @property
    def ranks(self) -> int:
        """Number of processes the training examples were split over (:mod:`ocdl.distributed`)."""
        return self.problem.reduction.size

    @property
    def network(self) -> Network:
        """The finest level's network."""
        return self.result.network

    def params(self) -> dict[str, np.ndarray]:
        """``theta, W, mu`` of the finest level (best validation accuracy), on the host."""
        return dict(zip(("theta", "W", "mu"), map(asnumpy, self.result.x)))

    def levels(self) -> list[dict]:
        """Per level: ``n_layers, iterations, objective, train_accuracy, best_val_accuracy, time_s, val_accuracy``.

        ``train_accuracy`` is that of the level's parameters of best
        validation accuracy on all training examples; ``val_accuracy`` lists
        the validation accuracy after every iteration.
        """
        return [
            {
                "n_layers": int(rec["n_layers"]),
                "iterations": int(rec["iterations"]),
                "objective": float(rec["objective"]),
                "train_accuracy": float(rec["train_accuracy"]),
                "best_val_accuracy": float(rec["best_val_accuracy"]),
                "time_s": float(rec["time_s"]),
                "val_accuracy": [_finite_or_none(v) for v in rec["result"].trace("val_accuracy")],
            }
            for rec in self.result.history
        ]

    @property
    def time_s(self) -> float:
        """Wall time of the training in seconds (the levels', over all sessions of a resumed run)."""
        return float(sum(rec["time_s"] for rec in self.result.history))

    def summary(self) -> dict:
        """The content of ``results.json`` (JSON-ready; ``None`` where a failed iteration has no accuracy).

        ``time_s`` is the wall time of the training, summed over the sessions
        of a resumed run; ``device_name`` (:func:`ocdl.backend.device_name`)
        the device of the session that finished it, rank 0's under
        ``mpiexec`` (``ranks`` says how many processes).
        """
        levels = self.levels()
        scored = [rec for rec in levels if np.isfinite(rec["best_val_accuracy"])] or levels
        best = max(scored, key=lambda rec: rec["best_val_accuracy"])
        return {
            "problem": self.settings.problem,
            "stepper": self.settings.stepper,
            "settings": self.settings.to_dict(),
            "n_train": self.data.whole_size("train"),
            "n_val": self.data.whole_size("val"),
            "n_features": int(self.problem.n_features),
            "n_params": int(self.network.n_params),
            "levels": levels,
            "best_val_accuracy": best["best_val_accuracy"],
            "best_val_n_layers": best["n_layers"],
            "final_val_accuracy": levels[-1]["best_val_accuracy"],
            "time_s": self.time_s,
            "device_name": device_name(self.settings.device),
            "ranks": self.ranks,
            "success": bool(self.result.success),
            "message": self.result.message,
        }

    def features(self, Y: np.ndarray) -> np.ndarray:
        """Output features :math:`Y_N` of the examples ``Y`` (before widening), on the host."""
        return self._in_chunks(lambda Y0: self.problem.features(self.result.x.theta, Y0=Y0), Y)

    def predict(self, Y: np.ndarray) -> np.ndarray:
        """Predicted classes of the examples ``Y`` (before widening), on the host."""
        return self._in_chunks(lambda Y0: self.problem.predict(*self.result.x, Y0), Y)

    def _in_chunks(self, f, Y: np.ndarray) -> np.ndarray:
        """``f`` of the widened examples ``Y``, ``CHUNK`` rows at a time (the widened copy is made per chunk)."""
        parts = []
        for start in range(0, Y.shape[0], CHUNK):
            Y0 = to_device(widen(Y[start : start + CHUNK], self.settings), self.settings.device)
            parts.append(asnumpy(f(Y0)))
        return np.concatenate(parts)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _problem_and_validation(settings: Settings, data: Dataset,
                            reduction: Reduction | None) -> tuple[LearningProblem, tuple]:
    """The learning problem and the validation pair on ``settings.device``; with a data-parallel
    ``reduction``, of this process's share of the examples (rank ``r`` on GPU ``r mod (GPUs)``): the rows of
    ``data`` that :func:`~ocdl.distributed.share` gives it, or ``data`` itself if it is that share already
    (a :attr:`~ocdl.problems.Dataset.part`, checked)."""
    reduction = Reduction() if reduction is None else reduction
    train_rows, val_rows = (data.Y_train, data.C_train), (data.Y_val, data.C_val)
    if reduction.size > 1:
        reduction.check_same("settings", settings.to_dict())
        if settings.device == "gpu":
            select_gpu(reduction.rank)
    if data.part is not None:
        for split, (Y, _) in (("train", train_rows), ("val", val_rows)):
            first, total = data.part[split]
            check_share(reduction, f"{split} examples", first, Y.shape[0], total)
    elif reduction.size > 1:
        train_rows, val_rows = share(reduction, *train_rows), share(reduction, *val_rows)

    def device(x):
        return to_device(x, settings.device)

    Y, C = train_rows
    problem = build_problem(settings, device(widen(Y, settings)), device(C), data.n_classes, reduction)
    return problem, (device(widen(val_rows[0], settings)), device(val_rows[1]))


def _solver(settings: Settings, **changes) -> BlockCoordinateDescent:
    """Block coordinate descent with the options of ``settings`` (``changes`` replacing some)."""
    options = dict(
        max_iter=settings.max_iter,
        batch_size=settings.batch_size,
        hessian_batch_size=settings.hessian_batch_size,
        classifier_newton_steps=settings.classifier_newton_steps,
        classifier_cg_maxiter=settings.classifier_cg_maxiter,
        cg_maxiter=settings.cg_maxiter,
    )
    return BlockCoordinateDescent(**(options | changes))


def train(settings: Settings, data: Dataset | None = None, progress: bool = True,
          checkpoint: Checkpointing | None = None, reduction: Reduction | None = None) -> Run:
    """Train by multilevel block coordinate descent (:func:`ocdl.solvers.multilevel`) with ``settings``.

    Parameters
    ----------
    settings : Settings
    data : ocdl.problems.Dataset, optional
        The data (default :func:`load_data` ``(settings, reduction)``): the
        whole data set, or with a data-parallel ``reduction`` this process's
        share of it (a :attr:`~ocdl.problems.Dataset.part`).
    progress : bool
        Show a tqdm progress bar per level.
    checkpoint : ocdl.solvers.Checkpointing, optional
        Where and how often to write checkpoints, and whether to continue from
        one (the same result as an uninterrupted run); the checkpoints record
        ``settings.to_dict()`` (in place of the Checkpointing's own settings).
        Default: none.
    reduction : Reduction, optional
        With a data-parallel reduction (:func:`ocdl.distributed.world` under
        ``mpiexec``), every process passes the whole ``data`` or its share of
        it (as :func:`load_data` reads MNIST) and trains on its share of the
        training and validation examples; the run is the same on every
        process, and only rank 0 writes the checkpoints. Default: local.

    Returns
    -------
    Run

    Raises
    ------
    ValueError
        For settings that do not fit the data, a checkpoint of another run,
        or a stepper of yours that fails :func:`check_users_stepper`.
    FileNotFoundError
        If the MNIST files are missing.
    ocdl.solvers.checkpoint.TrainingInterrupted
        On Ctrl-C with a checkpoint (after writing it).
    """
    check_users_stepper(settings)
    data = load_data(settings, reduction) if data is None else data
    problem, validation = _problem_and_validation(settings, data, reduction)
    theta0 = to_device(initial_parameters(settings, problem.network), settings.device)
    if checkpoint is not None:
        checkpoint = dataclasses.replace(checkpoint, settings=settings.to_dict())
    result = multilevel(
        problem, theta0, max_layers=settings.levels[-1], solver=_solver(settings), validation=validation,
        rng=settings.seed, progress=progress, checkpoint=checkpoint,
        memory=lambda n_layers: memory_policy(settings, problem.Y0.shape[0], reduction=reduction, n_layers=n_layers),
    )
    return Run(settings, data, problem.with_network(result.network), result)


def check_users_stepper(settings: Settings) -> None:
    """Refuse a stepper of yours (``settings.stepper`` a ``"module:Class"``) that fails :func:`ocdl.check_stepper`.

    Its derivatives are checked once, before any data are read: Taylor and dot
    tests of one step and of three, in float64 on the CPU, on three random
    examples of the network's width (the ``3 x 3`` convolution's for MNIST), at
    a step of the run's length; 0.01 s for a dense ``4 x 4`` step, 0.06 s for
    MNIST's convolution. A stepper with wrong derivatives would train on in
    silence: the gradient and Gauss-Newton products come from its ``step_jvp``
    and ``step_vjp``. The built-in steppers are tested by ocdl's own tests.

    Raises
    ------
    ValueError
        Naming the failed checks; ``ocdl.check_stepper`` prints the whole report.
    """
    if settings.stepper in KINDS:
        return
    net = build_network(settings, settings.first_layers)
    Y0 = np.random.default_rng(0).standard_normal((3, network_width(settings)))
    report = check_stepper(net.stepper, Y0, h=net.h)
    if not report.passed:
        failed = ", ".join(name for name, result in report.results.items() if not result.passed)
        raise ValueError(f"stepper {settings.stepper!r} fails ocdl.check_stepper ({failed}); "
                         "print(ocdl.check_stepper(stepper, Y0)) shows the report")


def iteration_cost(settings: Settings, n_layers: int, data: Dataset | None = None, progress: bool = True,
                   reduction: Reduction | None = None) -> dict:
    """Measure one block-coordinate-descent iteration and one Gauss-Newton product with ``n_layers`` layers.

    The iteration is the first one of a level as :func:`train` runs it (the
    classifier's Newton steps, one Gauss-Newton-PCG step with the gradient on
    ``batch_size`` and the Gauss-Newton matrix on ``hessian_batch_size``
    examples, the training and validation accuracies), from the initial
    weights. The product :math:`H_{GN} v` is timed separately on the
    Hessian's examples (the second of two, so that the forward states are
    computed already). Their difference, ``iteration_s - cg_iters *
    gn_product_s``, is the work that scales with the training set.

    Returns
    -------
    dict
        ``iteration_s, gn_product_s, cg_iters, n_layers, n_train, n_val, n_hessian`` (seconds, counts).
    """
    data = load_data(settings, reduction) if data is None else data
    problem, validation = _problem_and_validation(settings, data, reduction)
    problem = problem.with_network(problem.network.with_steps(n_layers))
    theta0 = to_device(initial_parameters(settings, problem.network), settings.device)
    result = _solver(settings, max_iter=1).minimize(problem, theta0, validation=validation, rng=settings.seed,
                                                    progress=progress)
    n_hessian = min(settings.hessian_batch_size or problem.n_examples, problem.n_examples)
    x = result.x
    model = problem.theta_problem(x.W, x.mu, hessian_indices=np.arange(n_hessian)).model(x.theta)
    v = model.gradient
    model.hessian_matvec(v)
    start = time.perf_counter()
    model.hessian_matvec(v)
    return {
        "iteration_s": float(result.history[0]["time"]),
        "gn_product_s": time.perf_counter() - start,
        "cg_iters": int(result.history[0]["cg_iters"]),
        "n_layers": n_layers,
        "n_train": problem.n_examples,
        "n_val": data.whole_size("val"),
        "n_hessian": n_hessian,
    }
