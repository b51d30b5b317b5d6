"""``ocdl.network``: the paper's networks by name, over the general classes.

:data:`KINDS` is the one registry of those names: :func:`ocdl.network`, the
experiments' settings, the command line, the examples and the tests take
their names, stepper classes and transforms from it. A user's own stepper
joins them by its import path, ``"module:Class"`` (:func:`find_kind`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .activations import Activation
from .layer import Layer
from .memory import MemoryPolicy
from .propagation import Network
from .steppers import RK4, LayerStepper, Leapfrog, ResNet, Stepper, Verlet
from .transforms import Antisymmetric, Dense, Transform
from .validation import check_nonnegative, check_positive


@dataclass(frozen=True)
class Kind:
    r"""One named network of the paper: its stepper class and what its transform may be.

    Attributes
    ----------
    stepper : type of LayerStepper
        The time stepper, built over one :class:`~ocdl.Layer`.
    dynamics : str
        The dynamics and the paper's equation, for tables and help texts.
    antisymmetric : bool
        Whether the transform is made antisymmetric, :math:`\tfrac12 (K - K^T - \gamma I)`
        (eq. 4.12; ``gamma`` is used by this kind only).
    rectangular : bool
        Whether ``K`` may be ``n x m`` (``hidden_width`` is used by this kind only).
    """

    stepper: type[LayerStepper]
    dynamics: str
    antisymmetric: bool = False
    rectangular: bool = False

    @property
    def reversible(self) -> bool:
        """Whether the stepper rebuilds its states backward exactly (memory policy :class:`~ocdl.Reversible`)."""
        return self.stepper.reversible

    def build(self, transform: Transform, activation: str | Activation = "tanh", gamma: float = 0.0) -> LayerStepper:
        """The stepper over ``Layer(transform, activation)``; ``transform`` made antisymmetric with ``gamma``
        for an antisymmetric kind."""
        if self.antisymmetric:
            transform = Antisymmetric(transform, gamma)
        return self.stepper(Layer(transform, activation))


KINDS = MappingProxyType({
    "resnet": Kind(ResNet, "forward Euler, K dense n x n (eq. 2.1)"),
    "antisymmetric": Kind(ResNet, "forward Euler, 0.5 (K - K^T - gamma I) (eq. 4.12)", antisymmetric=True),
    "leapfrog": Kind(Leapfrog, "second order, K dense n x n (eq. 4.16)"),
    "verlet": Kind(Verlet, "Hamiltonian, K dense n x m (eqs. 4.15, 4.17)", rectangular=True),
    "rk4": Kind(RK4, "classical Runge-Kutta, K dense n x n"),
})
"""The paper's networks by name (a read-only mapping, in the order the paper introduces them)."""


def find_kind(name: str, argument: str = "stepper") -> Kind:
    r"""The network named ``name``: a name of :data:`KINDS`, or a user's stepper by its import path.

    ``"module:Class"`` names a subclass of :class:`~ocdl.LayerStepper` of
    yours, built as ``Class(Layer(transform, activation))`` (its other
    arguments at their defaults) over the same transforms as ``"resnet"``:
    dense ``n x n`` in :func:`network` and the 2-D experiments, the ``3 x 3``
    convolution for MNIST. ``module`` is imported as Python imports it (an
    installed package, ``PYTHONPATH``), else from the current folder, so that
    ``ocdl train --stepper my_steppers:DampedResNet`` finds ``my_steppers.py``
    beside the command. Run settings, checkpoints and run folders keep the
    name; resuming a run or loading it (:func:`ocdl.experiments.load_run`)
    imports the module again: load only run folders you trust, as with any
    file that names code.

    A stepper whose class writes ``square = False`` (as :class:`~ocdl.Verlet`)
    may take an ``n x m`` matrix (``hidden_width``).

    Raises
    ------
    ValueError
        If ``name`` is neither; the module cannot be found or fails to import
        (its error in one line, with where it was raised); it holds no such
        class, or one that is no ``LayerStepper``, does not write ``step``,
        ``step_jvp`` and ``step_vjp``, or cannot be built from a layer alone; or
        the module is ``__main__`` (the running script, which a resumed run or
        another process would not find). The message names ``argument``.
    """
    if not isinstance(name, str):
        raise ValueError(f"{argument} must be a name (str), got {type(name).__name__}")
    if name in KINDS:
        return KINDS[name]
    module_name, colon, class_name = name.partition(":")
    if not (colon and module_name and class_name):
        raise ValueError(f"{argument} must be one of {', '.join(KINDS)}, or MODULE:CLASS naming a LayerStepper "
                         f"subclass of yours; got {name!r}")
    named = f"{argument} {name!r}"
    if module_name == "__main__":
        raise ValueError(f"{named}: a class of the running script cannot be found again (by --resume, load_run or "
                         "other processes); put it in a module of its own")
    module = _import(module_name, named)
    try:
        stepper = functools.reduce(getattr, class_name.split("."), module)
    except AttributeError:
        where = getattr(module, "__file__", None) or "a namespace package"
        raise ValueError(f"{named}: module {module_name!r} ({where}) has no {class_name!r}") from None
    if not (isinstance(stepper, type) and issubclass(stepper, LayerStepper)):
        raise ValueError(f"{named} is {stepper!r}, not a subclass of ocdl.LayerStepper (a stepper built "
                         "over one ocdl.Layer, as ResNet)")
    missing = [method for method in ("step", "step_jvp", "step_vjp")
               if getattr(stepper, method) is getattr(Stepper, method)]
    if missing:
        raise ValueError(f"{named} does not write {', '.join(missing)} (the stepper contract: docs/own-dynamics.md)")
    try:
        inspect.signature(stepper).bind(None)
    except TypeError:
        raise ValueError(f"{named} is built as {stepper.__name__}(layer), its other arguments at their defaults: give "
                         f"{stepper.__name__}{inspect.signature(stepper)} defaults (or a subclass that does)") from None
    summary = (inspect.getdoc(stepper) or "").partition("\n")[0]
    return Kind(stepper, summary or f"{stepper.__name__}, a user's stepper", rectangular=not stepper.square)


def _import(module_name: str, named: str):
    """The module ``module_name`` (of what ``named`` names, for a message); searched in the current folder too.

    The ``ocdl`` command's script, unlike ``python -m``, does not search the
    current folder; it is searched last, and stays on the path only where the
    module was found there (whose steps may import its neighbours later). An
    error raised by the import (a syntax error, a missing dependency) becomes a
    ``ValueError`` naming the stepper, the error and where it was raised.
    """
    here = os.getcwd()
    searched = here in sys.path or "" in sys.path
    found_here = False
    if not searched:
        sys.path.append(here)
    try:
        module = importlib.import_module(module_name)
        where = Path(getattr(module, "__file__", None) or os.devnull).resolve()
        found_here = where.is_relative_to(Path(here).resolve())
        return module
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name + ".").startswith(error.name + "."):
            raise ValueError(f"{named}: no module {module_name!r} (install it, put it on PYTHONPATH or run "
                             "from its folder)") from None
        raise ValueError(f"{named}: importing {module_name!r} failed: {_said(error)}") from error
    except Exception as error:  # the user's module failed: one line, as every error of a stepper name
        raise ValueError(f"{named}: importing {module_name!r} failed: {_said(error)}") from error
    finally:
        if not searched and not found_here:
            sys.path.remove(here)


def _said(error: Exception) -> str:
    """``error`` in one line with where it was raised (a syntax error says where itself)."""
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames and not isinstance(error, SyntaxError):
        text += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return text


def network(
    kind: str,
    width: int,
    n_steps: int,
    final_time: float,
    activation: str | Activation = "tanh",
    gamma: float = 0.0,
    hidden_width: int | None = None,
    memory: MemoryPolicy | None = None,
) -> Network:
    r"""A dense network of the paper by name, one of :data:`KINDS`:

KINDS_TABLE
    or a subclass of :class:`~ocdl.LayerStepper` of yours by its import path,
    ``"module:Class"`` (:func:`find_kind`).

    Parameters
    ----------
    kind : str
        The network's name in the table, or ``"module:Class"``.
    width : int
        ``n``, the features of an example (the matrices are ``n x n``; Verlet's ``n x m``).
    n_steps : int
        :math:`N`, the layers.
    final_time : float
        :math:`T`; the step is :math:`h = T / N`.
    activation : str or Activation
        :math:`\sigma`: ``"tanh"`` (default), ``"relu"``, ``"smoothrelu"``, ``"identity"`` or an object.
    gamma : float
        The shift of the antisymmetric matrix (eq. 4.12), ``"antisymmetric"`` only; default 0.
    hidden_width : int, optional
        ``m`` for Verlet (default ``n``).
    memory : MemoryPolicy, optional
        Where the adjoint gets the forward states (default :class:`~ocdl.memory.StoreAll`).

    For other transforms (convolutions, negative definite) build
    ``Network(Stepper(Layer(transform, activation)), ...)``.

    ``width`` and ``hidden_width`` must be integers >= 1 (Python or NumPy ints;
    not floats or strings), ``gamma`` a finite number >= 0; ``n_steps`` and
    ``final_time`` are checked by :class:`~ocdl.Network`. Each raises
    ``ValueError`` naming the argument.
    """
    spec = find_kind(kind, "kind")
    width = check_positive("width", width, integer=True)
    if hidden_width is not None:
        hidden_width = check_positive("hidden_width", hidden_width, integer=True)
    gamma = check_nonnegative("gamma", gamma)
    if hidden_width is not None and not spec.rectangular:
        raise ValueError(f"hidden_width is only used by kind={_names('rectangular')}, got kind={kind!r}")
    if gamma and not spec.antisymmetric:
        raise ValueError(f"gamma is only used by kind={_names('antisymmetric')}, got kind={kind!r}")
    transform = Dense(width, width if hidden_width is None else hidden_width)
    return Network(spec.build(transform, activation, gamma), n_steps, final_time, memory)


def _names(attribute: str) -> str:
    """The kinds with ``attribute`` set, e.g. ``'verlet'``, for a message."""
    return " or ".join(repr(name) for name, spec in KINDS.items() if getattr(spec, attribute))


def _kinds_table() -> str:
    """:data:`KINDS` as the reST table of :func:`network`'s docstring."""
    names = [f'``"{name}"``' for name in KINDS]
    dynamics = [spec.dynamics for spec in KINDS.values()]
    left, right = max(map(len, names)), max(map(len, dynamics))
    rule = f"    {'=' * left}  {'=' * right}"
    rows = [f"    {name:{left}s}  {text}" for name, text in zip(names, dynamics)]
    return "\n".join([rule, f"    {'``kind``':{left}s}  dynamics", rule, *rows, rule, ""])


if network.__doc__:  # None under python -OO
    network.__doc__ = network.__doc__.replace("KINDS_TABLE", _kinds_table())
