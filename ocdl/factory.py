"""``ocdl.network``: the paper's networks by name, over the general classes.

:data:`KINDS` is the one registry of those names: :func:`ocdl.network`, the
experiments' settings, the command line, the examples and the tests take
their names, stepper classes and transforms from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from .activations import Activation
from .layer import Layer
from .memory import MemoryPolicy
from .propagation import Network
from .steppers import RK4, LayerStepper, Leapfrog, ResNet, Verlet
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
    Parameters
    ----------
    kind : str
        The network's name in the table.
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
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    spec = KINDS[kind]
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
