r"""The time-stepper contract every network and every user's dynamics implement.

A stepper advances a **state** (a tuple of ``s x .`` arrays, one example per
row) by one step of size ``h`` with the step's parameters ``theta_j``:

.. math::  x_{j+1} = \Phi(x_j, \theta_j, h), \qquad j = 0, \dots, N-1,

and gives the step's linearisation, from which the generic solvers in
:mod:`ocdl.propagation` build sensitivities, adjoints and Gauss-Newton products
for any dynamics:

* ``init(Y0)`` :math:`\to x_0` (linear in ``Y0``) and ``init_vjp`` its transpose;
* ``step(state, theta, h)`` :math:`\to (x_{j+1}, \text{cache})`; the cache
  holds intermediates (pre-activations, :math:`\sigma'`) that ``step_jvp`` and
  ``step_vjp`` reuse; return ``None`` if there is nothing to reuse;
* ``advance(state, theta, h)`` :math:`\to x_{j+1}` alone, for sweeps that keep
  no cache (prediction, recomputation between checkpoints); the default is
  ``step(...)[0]``; override it when the cache costs extra work;
* ``step_jvp(state, theta, h, dstate, dtheta, cache)``
  :math:`= \partial_x\Phi\, dx + \partial_\theta\Phi\, d\theta`;
* ``step_vjp(state, theta, h, lam, cache)`` (``lam`` the cotangent of :math:`x_{j+1}`)
  :math:`= (\partial_x\Phi^T \lambda,\ \partial_\theta\Phi^T \lambda)`;
* ``output(state)`` the features (default ``state[0]``), linear in the state,
  with ``output_vjp``.
* ``diagnose(state, theta, h)`` explains a blow-up at the step (a sentence
  for :class:`~ocdl.validation.PropagationError`); the default gives advice
  that holds for any explicit stepper.
* ``sweep(theta_steps, h, state0, store=True)`` (optional) runs all the steps
  in one piece (a fused GPU kernel) and returns an object that serves the
  states and caches and runs the derivative sweeps in one piece too; the
  default, ``None``, lets the generic solvers step.

``n_params`` is the length of one step's parameter vector. Every example
steps alone (row ``i`` of :math:`x_{j+1}` depends on row ``i`` of
:math:`x_j` only), as in the paper, where the examples are independent
initial conditions of the same ODE. Verify a subclass with
:func:`ocdl.check_stepper`.

Inside the sweeps of :class:`ocdl.Network` the arrays that layers and
transforms return are buffers of the running step (:mod:`ocdl._workspace`):
those a step returns, in its state, cache or result, live as long as that
value; the others are reused once the step returns, so a stepper keeps no
array between steps except through what it returns.
"""

from __future__ import annotations

import re
import types
from typing import Any

from ..backend import get_array_module
from ..validation import missing_method

State = tuple


class Stepper:
    """Base class of time steppers; the contract: :mod:`ocdl.steppers.base` (above in the API reference).

    A subclass that changes :meth:`step` of a stepper it derives from (a damped
    :class:`~ocdl.ResNet`, say) without writing :meth:`advance` gets the
    default ``step(...)[0]`` (the parent's faster advance computes the parent's
    step); without writing :meth:`reverse_step` it is not ``reversible``
    unless it says so. Its ``repr`` names its public attributes beyond the
    base's (``DampedResNet(Layer(...), gamma=0.5)``): the checkpoints and the
    processes of a data-parallel run compare steppers by it.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "step" not in own:
            return

        def paired(name: str) -> bool:  # the inherited method was written with a step, this class replaces
            return "step" in vars(next(base for base in cls.__mro__ if name in vars(base)))

        if "advance" not in own and paired("advance"):  # a mixin's advance (no step beside it) is kept
            cls.advance = Stepper.advance
        if "reverse_step" not in own and "reversible" not in own and paired("reverse_step"):
            cls.reversible = False

    n_params: int
    #: Width of the input features ``Y0`` (``None`` if the stepper accepts any).
    n_features: int | None = None
    #: Whether ``reverse_step`` rebuilds ``state_j`` from ``state_{j+1}`` exactly.
    reversible = False

    def init(self, Y0: Any) -> State:
        r""":math:`x_0 = (Y_0,)`."""
        return (Y0,)

    def init_vjp(self, lam: State) -> Any:
        """Transpose of :meth:`init`: the gradient with respect to ``Y0``."""
        return lam[0]

    def step(self, state: State, theta: Any, h: float) -> tuple[State, Any]:
        """``(state_next, cache)``: one step of size ``h`` with this step's parameters."""
        raise NotImplementedError(missing_method(self, "step(state, theta, h) -> (state_next, cache)"))

    def advance(self, state: State, theta: Any, h: float) -> State:
        """:math:`x_{j+1}` without the cache: ``step(state, theta, h)[0]`` unless overridden.

        :func:`ocdl.check_stepper` verifies that an override agrees with :meth:`step`.
        """
        return self.step(state, theta, h)[0]

    def step_jvp(self, state: State, theta: Any, h: float, dstate: State, dtheta: Any, cache: Any) -> State:
        """The linearised step :math:`\\partial_x\\Phi\\, dx + \\partial_\\theta\\Phi\\, d\\theta` (a state)."""
        raise NotImplementedError(missing_method(self, "step_jvp(state, theta, h, dstate, dtheta, cache) -> dstate"))

    def step_vjp(self, state: State, theta: Any, h: float, lam: State, cache: Any) -> tuple[State, Any]:
        """The transposed step :math:`(\\partial_x\\Phi^T \\lambda, \\partial_\\theta\\Phi^T \\lambda)`."""
        raise NotImplementedError(missing_method(self, "step_vjp(state, theta, h, lam, cache) -> (lam_prev, gtheta)"))

    def reverse_step(self, state_next: State, theta: Any, h: float) -> tuple[State, Any]:
        """``(state_j, cache_j)`` from ``state_{j+1}`` (only for ``reversible`` steppers).

        ``cache_j`` is what ``step(state_j, theta, h)`` returns as its cache;
        the inverse step computes it anyway, so the adjoint sweep of
        :class:`~ocdl.memory.Reversible` needs no second forward step.
        """
        if self.reversible:
            raise NotImplementedError(missing_method(self, "reverse_step(state_next, theta, h) -> (state, cache)"))
        raise NotImplementedError(f"{type(self).__name__} is not time-reversible")

    def output(self, state: State) -> Any:
        """The features :math:`Y` read off the state (default ``state[0]``)."""
        return state[0]

    def output_vjp(self, state: State, lam: Any) -> State:
        """Transpose of :meth:`output` at the cotangent ``lam`` of the features: ``lam`` in the output
        slot, zeros elsewhere."""
        xp = get_array_module(lam)
        return (lam,) + tuple(xp.zeros_like(x) for x in state[1:])

    def diagnose(self, state: State, theta: Any, h: float) -> str | None:
        """Why a forward propagation blew up at this step and what to try, for the message of
        :class:`~ocdl.validation.PropagationError`; ``None`` for nothing to add.

        ``state`` is the (finite) state entering the first step whose output is unbounded, restricted to
        some of the examples that blew up; ``theta`` is that step's parameters and ``h`` the step size.
        The default is advice that holds for any explicit stepper; override it to explain the blow-up
        by the stepper's own stability theory (e.g. :class:`~ocdl.steppers.ResNet` gives the forward
        Euler factor of eq. 3.9).
        """
        return "Use a smaller step (more steps or a smaller final_time) or smaller weights."

    def sweep(self, theta_steps: Any, h: float, state0: State, store: bool = True) -> Any:
        r"""All ``N = len(theta_steps)`` steps from ``state0`` in one piece, or ``None`` (the default): step.

        Where a stepper can propagate a whole trajectory at once (one GPU
        kernel instead of ``N`` launches, :mod:`ocdl.kernels.sweeps`), it
        returns an object with

        * ``final_state``: :math:`x_N`, the caller's;
        * ``n_steps``: :math:`N`;
        * ``record(j)``: ``(state_j, cache_j)`` as :meth:`step` gives them
          (only with ``store``);
        * ``jvp(theta_steps, dstate0, dtheta_steps)``: :math:`dx_N` of the
          sensitivity sweep (only with ``store``);
        * ``vjp(theta_steps, lam_N)``: :math:`(\lambda_0, g)` of the adjoint
          sweep, ``g`` the ``(N, n_params)`` gradient (only with ``store``).

        The memory policy :class:`~ocdl.memory.StoreAll` keeps it as its
        trajectory, :func:`~ocdl.memory.propagate` asks for the final state
        with ``store=False``; the results agree with stepping to rounding
        (``tests/test_sweeps.py`` compares them).
        """
        return None

    def _steps_as(self, cls: type) -> bool:
        """Whether this stepper's equations are ``cls``'s: none of their methods is overridden below it (a
        subclass that changes a step must not inherit ``cls``'s :meth:`sweep`)."""
        names = ("init", "init_vjp", "step", "advance", "step_jvp", "step_vjp", "output", "output_vjp")
        return all(getattr(type(self), name) is getattr(cls, name) for name in names)

    def init_params(self, rng: Any, scale: float = 1.0, dtype: Any = None) -> Any:
        """Random parameters for one step (used by :meth:`ocdl.Network.init_params`)."""
        raise NotImplementedError(missing_method(self, "init_params(rng, scale=1.0, dtype=None) -> theta of one step"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._settings())})"

    def _settings(self, shown: tuple[str, ...] = ()) -> list[str]:
        """``name=value`` for each public attribute but ``n_params`` and ``n_features`` (derived) and those
        ``shown`` apart, each the same in every process: a function by its name, an object whose repr holds
        an address (``<... at 0x7f...>``) by its type. A user's class's own public class attributes count
        as settings too (``gamma = 0.5`` in the class body), but the contract's (``reversible``,
        ``square``) and ocdl's classes' (whose reprs stay as checkpoints recorded them)."""
        from ..fingerprint import describe

        def setting(value: Any) -> str:
            if callable(value) and hasattr(value, "__qualname__") and not isinstance(value, type):
                return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
            text = describe(value)
            return f"<{type(value).__qualname__}>" if re.search(r" at 0x[0-9a-fA-F]+", text) else text

        settings = self._class_settings() | vars(self)
        return [f"{name}={setting(value)}" for name, value in sorted(settings.items())
                if not name.startswith("_") and name not in ("n_params", "n_features", *shown)]

    def _class_settings(self) -> dict:
        """The public data attributes that the classes of this stepper outside ocdl write in their bodies, the
        subclass's over its base's: not functions, descriptors (properties, slots: their values are the
        instance's), modules (``xp = np``) or classes."""
        settings = {}
        for cls in reversed(type(self).__mro__):
            if cls.__module__.partition(".")[0] == "ocdl":
                continue
            settings |= {name: value for name, value in vars(cls).items()
                         if not name.startswith("_") and not hasattr(LayerStepper, name) and not callable(value)
                         and not hasattr(type(value), "__get__") and not isinstance(value, types.ModuleType)}
        return settings

    def repr_before_settings(self) -> str:
        """The ``repr`` a stepper had before it named its settings (ocdl of 2026-12-05 and earlier): its
        class and, for a :class:`LayerStepper`, its layer. Checkpoints of that time recorded it."""
        if type(self).__repr__ not in (Stepper.__repr__, LayerStepper.__repr__):  # its own: as it was
            return repr(self)
        layer = repr(self.layer) if isinstance(self, LayerStepper) else ""
        return f"{type(self).__name__}({layer})"


class LayerStepper(Stepper):
    """A stepper whose dynamics are built from one :class:`ocdl.Layer` per step.

    The step's parameters are the layer's: ``theta_j = (theta_K, b)``.

    Attributes
    ----------
    square : bool
        Whether the step needs a square transform (``n_in == n_out``: the
        state itself passes through :math:`K`); ``False`` for a stepper whose
        state has a part of each width (:class:`~ocdl.Verlet`).
    """

    square = True

    def __init__(self, layer: Any) -> None:
        from ..layer import Layer

        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be an ocdl Layer, got {type(layer).__name__}")
        transform = layer.transform
        if self.square and transform.n_in != transform.n_out:
            raise ValueError(
                f"{type(self).__name__} needs a square transform (n_in = n_out: its state passes through K), got "
                f"{transform!r} of {transform.n_in} x {transform.n_out}; Verlet takes a rectangular one"
            )
        self.layer = layer
        self.n_params = layer.n_params
        self.n_features = layer.transform.n_in

    def init_params(self, rng, scale=1.0, dtype=None):
        import numpy as np

        dtype = np.float64 if dtype is None else dtype
        theta_K = self.layer.transform.init_params(rng, scale, dtype)
        return np.concatenate([theta_K, np.zeros(1, dtype=dtype)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join([repr(self.layer), *self._settings(('layer',))])})"
