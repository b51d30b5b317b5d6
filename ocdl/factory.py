"""``ocdl.network``: the paper's networks by name, over the general classes."""

from __future__ import annotations

from .activations import Activation
from .layer import Layer
from .memory import MemoryPolicy
from .propagation import Network
from .steppers import RK4, Leapfrog, ResNet, Verlet
from .transforms import Antisymmetric, Dense
from .validation import check_nonnegative, check_positive

KINDS = ("resnet", "antisymmetric", "leapfrog", "verlet", "rk4")


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
    """A dense network of the paper by name.

    ========================  ================================================
    ``kind``                  dynamics
    ========================  ================================================
    ``"resnet"``              forward Euler, ``K`` dense ``n x n`` (eq. 2.1)
    ``"antisymmetric"``       forward Euler, ``0.5 (K - K^T - gamma I)`` (4.12)
    ``"leapfrog"``            second order, ``K`` dense ``n x n`` (4.16)
    ``"verlet"``              Hamiltonian, ``K`` dense ``n x m`` (4.15, 4.17)
    ``"rk4"``                 classical Runge-Kutta, ``K`` dense ``n x n``
    ========================  ================================================

    ``hidden_width`` is ``m`` for Verlet (default ``n``); ``gamma`` is used by
    ``"antisymmetric"`` only. For other transforms (convolutions, negative
    definite) build ``Network(Stepper(Layer(transform, activation)), ...)``.

    ``width`` and ``hidden_width`` must be integers >= 1 (Python or NumPy ints;
    not floats or strings), ``gamma`` a finite number >= 0; ``n_steps`` and
    ``final_time`` are checked by :class:`~ocdl.Network`. Each raises
    ``ValueError`` naming the argument.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    width = check_positive("width", width, integer=True)
    if hidden_width is not None:
        hidden_width = check_positive("hidden_width", hidden_width, integer=True)
    gamma = check_nonnegative("gamma", gamma)
    if hidden_width is not None and kind != "verlet":
        raise ValueError(f"hidden_width is only used by kind='verlet', got kind={kind!r}")
    if gamma and kind != "antisymmetric":
        raise ValueError(f"gamma is only used by kind='antisymmetric', got kind={kind!r}")
    if kind == "verlet":
        transform = Dense(width, width if hidden_width is None else hidden_width)
    elif kind == "antisymmetric":
        transform = Antisymmetric(Dense(width), gamma)
    else:
        transform = Dense(width)
    stepper_class = {"resnet": ResNet, "antisymmetric": ResNet, "leapfrog": Leapfrog, "verlet": Verlet, "rk4": RK4}
    return Network(stepper_class[kind](Layer(transform, activation)), n_steps, final_time, memory)
