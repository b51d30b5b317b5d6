r"""The settings of the paper's experiments (Haber & Ruthotto 2017, section 6), one per problem.

===============  ======  ==============  ==========================  =======================
problem          T       alpha (time)    width n                     classifier
===============  ======  ==============  ==========================  =======================
``ellipses``     20      1e-3            2                           logistic, weight decay
``swiss-roll``   20      5e-3            4 (Verlet: 2)               logistic, weight decay
``peaks``        5       5e-6            8 (Verlet: 2)               softmax, weight decay
``mnist``        6       5e-3            6 channels, 3 x 3 (4,704)   softmax, Laplacian 0.01
===============  ======  ==============  ==========================  =======================

The two-dimensional points are widened to ``n`` features by duplicating them
(``(y1, y2, y1, y2, ...)``), as the paper does; the one-channel MNIST images
are lifted to six channels the same way (six copies of the image). All use
``tanh``, multilevel training from 4 layers (2-D: up to 1024; MNIST: up to 16)
and block coordinate descent: per iteration, Newton-PCG steps for the
classifier, then one Gauss-Newton-PCG step (at most 20 CG iterations,
preconditioned by the regularizer) for the network.

MNIST has the paper's values throughout (section 6.4): 50,000 training and
10,000 validation images, levels of 4, 8 and 16 layers, width 6, ``T = 6``,
``tanh``; at most 20 block-coordinate-descent iterations per level; the full
gradient and a random 5,000-example sub-sample for the Gauss-Newton matrix;
for the classifier at most 5 Newton-PCG iterations of up to 10 CG iterations
each, with the Laplacian smoothness of its weights (eq. 5.25) at weight
0.01; time smoothness (eq. 5.23) with ``alpha = 0.005``. Not from the paper,
and with no effect on the result beyond rounding: it propagates 5,000
examples at a time (``chunk_size``).

Choices the paper leaves open, fixed here (override any of them): for the
2-D problems ``max_iter = 20`` iterations per level, the classifier's 2
Newton-PCG steps of 2 CG iterations each and its weight decay
``alpha_W = 1e-3``; the antisymmetric ResNet's ``gamma = 0`` (eq. 4.12); and
network weights drawn with standard deviation ``init_scale / sqrt(fan-in)``,
``init_scale = 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..backend import cupy_available
from ..factory import KINDS, find_kind
from ..steppers import Verlet
from ..validation import is_integer

PROBLEMS = ("ellipses", "swiss-roll", "peaks", "mnist")
"""The paper's four problems, by the names the command line uses."""

PAPER_STEPPERS = ("resnet", "antisymmetric", "verlet")
"""The three networks the paper compares in section 6 (names of :data:`ocdl.KINDS`, like every ``stepper`` here)."""

DEVICES = ("cpu", "gpu")

DTYPES = ("float64", "float32")

MEMORY = ("auto", "store-all", "recompute", "reversible")
"""Memory policies of the forward states (see :func:`ocdl.experiments.model.memory_policy`)."""

#: Per problem: final time, alpha_theta, alpha_W, width (Verlet's width), maximum layers, iterations per level;
#: for MNIST also the Gauss-Newton sub-sample, the chunks and the classifier's Newton and CG iterations.
PAPER = {
    "ellipses": dict(final_time=20.0, alpha_theta=1e-3, alpha_W=1e-3, width=2, verlet_width=2, max_layers=1024,
                     max_iter=20),
    "swiss-roll": dict(final_time=20.0, alpha_theta=5e-3, alpha_W=1e-3, width=4, verlet_width=2, max_layers=1024,
                       max_iter=20),
    "peaks": dict(final_time=5.0, alpha_theta=5e-6, alpha_W=1e-3, width=8, verlet_width=2, max_layers=1024,
                  max_iter=20),
    "mnist": dict(final_time=6.0, alpha_theta=5e-3, alpha_W=1e-2, width=6, verlet_width=6, max_layers=16,
                  max_iter=20, hessian_batch_size=5000, chunk_size=5000, classifier_newton_steps=5,
                  classifier_cg_maxiter=10),
}

MNIST_IMAGE = (28, 28)
"""Height and width of the MNIST images."""


@dataclass(frozen=True)
class Settings:
    """Everything that defines one training run; :func:`paper_settings` fills in the paper's values.

    Attributes
    ----------
    problem : str
        One of :data:`PROBLEMS`.
    stepper : str
        A name of :data:`ocdl.KINDS` (the networks of :func:`ocdl.network`),
        or a :class:`~ocdl.LayerStepper` subclass of yours by its import path,
        ``"module:Class"`` (:func:`ocdl.factory.find_kind`; built with its
        defaults over the same transforms as ``"resnet"``).
    width : int
        Features ``n`` of the network (2-D problems; a multiple of 2, the
        points duplicated) or channels (MNIST; the image duplicated).
    final_time : float
        :math:`T`; layer ``j`` of ``N`` has step :math:`h = T / N`.
    alpha_theta : float
        Weight of the time-smoothness regularizer of the network (eq. 5.23).
    alpha_W : float
        Weight of the classifier's regularizer: weight decay (2-D) or the
        squared discrete Laplacian over the image grid (MNIST, eq. 5.25).
    first_layers, max_layers : int
        Multilevel training with ``first_layers, 2 first_layers, ... <= max_layers`` layers.
    max_iter : int
        Block-coordinate-descent iterations per level (20 for every problem;
        the paper's for MNIST).
    batch_size, hessian_batch_size : int or None
        Examples of the gradient and of the Gauss-Newton matrix per iteration
        (``None``: all training examples).
    chunk_size : int or None
        Examples propagated at once (``None``: all; MNIST: 5,000): the
        sweeps run over chunks and sum their contributions, which bounds the
        memory (see :class:`ocdl.LearningProblem`).
    classifier_newton_steps, classifier_cg_maxiter, cg_maxiter : int
        Newton steps and CG iterations per step for the classifier (2-D: 2
        and 2; MNIST, the paper's: 5 and 10); CG iterations of the
        Gauss-Newton step (20).
    gamma : float
        :math:`\\gamma` of the antisymmetric ResNet (eq. 4.12).
    init_scale : float
        Standard deviation of the initial weights times ``sqrt(fan-in)``.
    seed : int
        Seed of the initial weights and of the batches (and of the 2-D data).
    device : str
        ``"cpu"`` or ``"gpu"`` (CuPy; needs a CUDA device).
    dtype : str
        ``"float64"`` or ``"float32"``: the floating type of data and parameters.
    memory : str
        How the forward states are kept for the derivative sweeps, one of
        :data:`MEMORY`: ``"store-all"`` (fastest), ``"recompute"``
        (:math:`\\lceil\\sqrt{N}\\,\\rceil` checkpoints), ``"reversible"``
        (Leapfrog and Verlet only) or ``"auto"``: store-all when the states
        fit in half the memory (the host's, or the GPU's free memory), else
        reversible or recompute (see
        :func:`ocdl.experiments.model.memory_policy`).
    train_size, val_size : int or None
        MNIST: training and validation examples (paper: 50,000 and 10,000).
        Not used by the 2-D problems, whose generators fix the sizes.
    data_dir : str or None
        MNIST: folder of the four IDX files (default: ``ocdl.problems.mnist.default_data_dir``).
    """

    problem: str
    stepper: str
    width: int
    final_time: float
    alpha_theta: float
    alpha_W: float
    first_layers: int = 4
    max_layers: int = 1024
    max_iter: int = 20
    batch_size: int | None = None
    hessian_batch_size: int | None = None
    chunk_size: int | None = None
    classifier_newton_steps: int = 2
    classifier_cg_maxiter: int = 2
    cg_maxiter: int = 20
    gamma: float = 0.0
    init_scale: float = 1.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    memory: str = "auto"
    train_size: int | None = None
    val_size: int | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}; got {self.problem!r}")
        kind = find_kind(self.stepper)
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.memory not in MEMORY:
            raise ValueError(f"memory must be one of {', '.join(MEMORY)}; got {self.memory!r}")
        if self.memory == "reversible" and not kind.reversible:
            reversible = ", ".join(name for name, kind in KINDS.items() if kind.reversible)
            raise ValueError(f"memory 'reversible' needs a reversible stepper ({reversible}, or one of yours that "
                             f"sets reversible = True and writes reverse_step), not {self.stepper!r}")
        if self.device == "gpu" and not cupy_available():
            raise ValueError("device 'gpu' needs CuPy and a CUDA device (pip install ocdl[gpu]); use device 'cpu'")
        for name in ("width", "first_layers", "max_layers", "max_iter", "classifier_newton_steps",
                     "classifier_cg_maxiter", "cg_maxiter"):
            _check_int(name, getattr(self, name), optional=False)
        for name in ("batch_size", "hessian_batch_size", "chunk_size", "train_size", "val_size"):
            _check_int(name, getattr(self, name), optional=True)
        if not is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name, positive in (("final_time", True), ("init_scale", True), ("alpha_theta", False),
                               ("alpha_W", False), ("gamma", False)):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        if self.max_layers < self.first_layers:
            raise ValueError(f"max_layers ({self.max_layers}) must be at least first_layers ({self.first_layers})")
        if self.problem != "mnist" and self.width % 2:
            raise ValueError(f"width must be a multiple of 2 (the points are duplicated), got {self.width}")
        if self.gamma and self.stepper != "antisymmetric":
            yours = " (a stepper of yours takes its settings as its class's defaults)" if ":" in self.stepper else ""
            raise ValueError(f"gamma is only used by the antisymmetric stepper, not {self.stepper!r}{yours}")

    @property
    def levels(self) -> list[int]:
        """The numbers of layers of the levels: ``first_layers`` doubled while ``<= max_layers``."""
        layers = [self.first_layers]
        while 2 * layers[-1] <= self.max_layers:
            layers.append(2 * layers[-1])
        return layers

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    def replace(self, **changes) -> Settings:
        """A copy with ``changes`` (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)


def paper_settings(problem: str, stepper: str, **overrides) -> Settings:
    """The paper's settings for ``problem`` with ``stepper`` (see the module docstring), with ``overrides``.

    Parameters
    ----------
    problem : str
        One of :data:`PROBLEMS`.
    stepper : str
        A name of :data:`ocdl.KINDS`, or ``"module:Class"`` (see :class:`Settings`); a subclass
        of :class:`~ocdl.Verlet` has Verlet's width.
    **overrides
        Any :class:`Settings` field; ``None`` values are ignored (so command
        line options left out keep the paper's value).

    Returns
    -------
    Settings

    Raises
    ------
    ValueError
        For an unknown problem, stepper or setting, or an invalid value.
    """
    if problem not in PAPER:
        raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}; got {problem!r}")
    paper = dict(PAPER[problem])
    verlet_width = paper.pop("verlet_width")
    if issubclass(find_kind(stepper).stepper, Verlet):  # the paper's Verlet width, a subclass's too
        paper["width"] = verlet_width
    settings = Settings(problem=problem, stepper=stepper, **paper)
    return settings.replace(**{k: v for k, v in overrides.items() if v is not None})


def folder_name(stepper: str) -> str:
    """The folder of ``stepper``'s run in a comparison (and in ``ocdl train``'s default ``--out``): its name, a
    user's ``"module:Class"`` as ``module.Class``."""
    return stepper.replace(":", ".")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _check_int(name: str, value, optional: bool) -> None:
    if optional and value is None:
        return
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
