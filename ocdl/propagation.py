r"""Generic forward propagation, sensitivities and adjoints over any stepper.

With :math:`h = T / N` and the stepper :math:`\Phi`:

.. math::

   x_0 = \operatorname{init}(Y_0), \quad x_{j+1} = \Phi(x_j, \theta_j, h), \quad
   Y_N = \operatorname{output}(x_N).

* :meth:`Network.jvp` (sensitivity, forward substitution):
  :math:`dx_{j+1} = \partial_x\Phi_j\, dx_j + \partial_\theta\Phi_j\, d\theta_j`,
  :math:`dY_N = \operatorname{output}(dx_N)`.
* :meth:`Network.vjp` (adjoint, backward substitution):
  :math:`\lambda_N = \operatorname{output}^T \bar Y_N` for the cotangent :math:`\bar Y_N` of :math:`Y_N`,
  :math:`\lambda_j = \partial_x\Phi_j^T \lambda_{j+1}`,
  :math:`g_j = \partial_\theta\Phi_j^T \lambda_{j+1}`.

Both read the states from one :class:`~ocdl.memory.Trajectory`, produced
once by the network's memory policy and reusable by any number of products
(pass ``trajectory=``). Nothing here knows the stepper's equations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._workspace import Workspace, temporaries
from .backend import asnumpy, get_array_module
from .memory import MemoryPolicy, StoreAll, Trajectory, propagate
from .steppers import Stepper
from .validation import (
    PropagationError,
    check_array,
    check_dtype_of,
    check_nonnegative,
    check_positive,
    random_generator,
)


class Network:
    r"""A stepper applied over ``n_steps`` steps of size ``h = final_time / n_steps``.

    Parameters
    ----------
    stepper : the one-step dynamics (any :class:`~ocdl.steppers.Stepper`).
    n_steps : :math:`N \ge 1`.
    final_time : :math:`T > 0`.
    memory : memory policy for the forward states (default :class:`~ocdl.memory.StoreAll`).
    blow_up : the forward propagation raises :class:`~ocdl.validation.PropagationError`
        when :math:`\max|Y_N| > \text{blow\_up} \cdot \max(1, \max|Y_0|)` or
        :math:`Y_N` is not finite (default ``1e8``); ``None`` checks finiteness only.

    ``theta`` is one flat vector of ``n_params = n_steps * stepper.n_params``
    entries; its ``(n_steps, stepper.n_params)`` row-major view has the
    parameters of step ``j`` in row ``j``.
    """

    def __init__(
        self,
        stepper: Stepper,
        n_steps: int,
        final_time: float,
        memory: MemoryPolicy | None = None,
        blow_up: float | None = 1e8,
    ) -> None:
        if not isinstance(stepper, Stepper):
            raise TypeError(f"stepper must be an ocdl Stepper, got {type(stepper).__name__}")
        self.stepper = stepper
        self.n_steps = check_positive("n_steps", n_steps, integer=True)
        self.final_time = check_positive("final_time", final_time)
        if memory is not None and not isinstance(memory, MemoryPolicy):
            raise TypeError(
                "memory must be an ocdl memory policy (StoreAll(), Recompute(n), HDF5(path), Reversible()), "
                f"got {memory!r}"
            )
        self.memory = StoreAll() if memory is None else memory
        self.blow_up = None if blow_up is None else check_positive("blow_up", blow_up)
        self.n_params = self.n_steps * stepper.n_params

    @property
    def h(self) -> float:
        """The step size :math:`h = T / N`."""
        return self.final_time / self.n_steps

    def with_steps(self, n_steps: int, memory: MemoryPolicy | None = None) -> Network:
        """The same dynamics and final time with ``n_steps`` steps (multilevel training), under ``memory``
        (default: this network's policy)."""
        return Network(self.stepper, n_steps, self.final_time, self.memory if memory is None else memory,
                       self.blow_up)

    # -- parameters -------------------------------------------------------
    def theta_steps(self, theta: Any, name: str = "theta", finite: bool = True) -> Any:
        """The ``(n_steps, p)`` view of ``theta``, validated (its entries finite unless ``finite=False``);
        errors call it ``name``."""
        check_array(name, theta, ndim=1, finite=finite)
        if theta.shape[0] != self.n_params:
            raise ValueError(
                f"{name} must have n_params = {self.n_steps} steps x {self.stepper.n_params} "
                f"= {self.n_params} entries, got {theta.shape[0]}"
            )
        return theta.reshape(self.n_steps, self.stepper.n_params)

    def pack(self, Ks: Any, bs: Any) -> np.ndarray:
        """Flat ``theta`` from per-step transform parameters ``Ks`` and biases ``bs``.

        ``Ks`` holds ``n_steps`` arrays of the transform's ``param_shape``
        (``n x n`` for a dense transform, ``n x m`` for Verlet) and ``bs``
        ``n_steps`` scalars; integer ``Ks`` become float64, float32 or float64 ones keep their dtype
        (float16 and complex are refused, as are ``Ks`` of different dtypes).
        """
        transform = self._layer_transform()
        if len(Ks) != self.n_steps or len(bs) != self.n_steps:
            raise ValueError(f"pack needs {self.n_steps} Ks and bs, got {len(Ks)} and {len(bs)}")
        xp = get_array_module(*Ks)
        rows = []
        for j, (K, b) in enumerate(zip(Ks, bs)):
            K = xp.asarray(K)
            if K.dtype.kind in "iub":  # an integer matrix (np.eye(3, dtype=int)) is a float64 one
                K = K.astype(np.float64)
            check_array(f"Ks[{j}]", K, finite=False)
            if K.shape != tuple(transform.param_shape) or xp.asarray(bs[j]).size != 1:
                raise ValueError(
                    f"Ks[{j}] must have shape {tuple(transform.param_shape)} and bs[{j}] be a scalar, "
                    f"got shapes {tuple(K.shape)} and {getattr(bs[j], 'shape', ())}"
                )
            if rows:  # concatenate would promote every step to float64
                check_dtype_of(f"Ks[{j}]", K, "Ks[0]", rows[0])
            rows.append(xp.concatenate([K.ravel(), xp.asarray([b], dtype=K.dtype).ravel()]))
        return xp.concatenate(rows)

    def unpack(self, theta: Any) -> tuple[list, list]:
        """Inverse of :meth:`pack`: ``(Ks, bs)`` as lists of arrays and floats."""
        transform = self._layer_transform()
        rows = self.theta_steps(theta)
        Ks = [row[:-1].reshape(transform.param_shape) for row in rows]
        bs = [float(asnumpy(row[-1])) for row in rows]
        return Ks, bs

    def _layer_transform(self):
        layer = getattr(self.stepper, "layer", None)
        if layer is None:
            raise TypeError(f"pack/unpack need a layer-based stepper, {self.stepper!r} has no layer")
        return layer.transform

    def init_params(
        self, rng: np.random.Generator | int | None = 0, scale: float = 1.0, dtype=np.float64
    ) -> np.ndarray:
        """Random ``theta``: each step's from the stepper's ``init_params`` (NumPy; move it with ``to_device``).

        For the layer steppers a matrix's entries are normal with standard deviation ``scale / sqrt(fan-in)``
        and the biases zero.

        Parameters
        ----------
        rng : int, numpy.random.Generator or None
            Seed or generator; the default seed 0 gives the same ``theta`` on every call.
        scale : float
            Factor of the standard deviation, ``>= 0``.
        dtype : float32 or float64
            Others are refused: the propagation takes only those.

        Returns
        -------
        numpy.ndarray, shape ``(n_params,)``
        """
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        rng = random_generator("rng", rng)
        scale = check_nonnegative("scale", scale)
        return np.concatenate([self.stepper.init_params(rng, scale, dtype) for _ in range(self.n_steps)])

    # -- propagation ------------------------------------------------------
    def _check_features(self, Y0: Any) -> Any:
        n = self.stepper.n_features
        return check_array("Y0", Y0, shape=(None, n) if n is not None else None, ndim=2)

    def _checked(self, theta: Any, Y0: Any) -> tuple[Any, Any]:
        """``(theta's (N, p) view, Y0)``, validated, of one dtype."""
        steps = self.theta_steps(theta)
        Y0 = self._check_features(Y0)
        if theta.dtype != Y0.dtype:
            raise TypeError(f"theta ({theta.dtype}) and Y0 ({Y0.dtype}) must have the same dtype")
        return steps, Y0

    def trajectory(self, theta: Any, Y0: Any) -> Trajectory:
        """Forward sweep under the memory policy; reuse the result for many products.

        ``theta`` has ``n_params`` entries and ``Y0`` is ``s x n_features`` of ``theta``'s dtype. The
        trajectory holds the states (memory, or the files of :class:`~ocdl.memory.HDF5`) until it is
        closed: ``with net.trajectory(theta, Y0) as traj: ...``.

        Raises :class:`~ocdl.validation.PropagationError` naming the first
        step whose output is NaN or Inf or exceeds the limit
        ``blow_up * max(1, max|Y0|)``.
        """
        steps, Y0 = self._checked(theta, Y0)
        traj = self.memory.forward(self.stepper, steps, self.h, self.stepper.init(Y0))
        error = self._unbounded(steps, Y0, self.stepper.output(traj.final_state))
        if error is not None:
            traj.close()
            raise error
        return traj

    def _unbounded(self, steps: Any, Y0: Any, YN: Any) -> PropagationError | None:
        """The blow-up error when the output ``YN`` of ``Y0`` is not finite or exceeds the growth limit."""
        limit = self._growth_limit(Y0)
        return None if self._bounded(YN, limit) else self._blow_up_error(steps, Y0, limit)

    def _growth_limit(self, Y0: Any) -> float:
        if self.blow_up is None:
            return float("inf")
        xp = get_array_module(Y0)
        return self.blow_up * max(1.0, float(xp.abs(Y0).max()) if Y0.size else 1.0)

    @staticmethod
    def _bounded(Y: Any, limit: float) -> bool:
        """One reduction: finite and below the limit (NaN compares false)."""
        xp = get_array_module(Y)
        if not Y.size:
            return True
        largest = xp.abs(Y).max()
        return bool(xp.isfinite(largest) & (largest <= limit))  # isfinite: Inf <= an infinite limit (blow_up None)

    def _blow_up_error(self, steps: Any, Y0: Any, limit: float) -> PropagationError:
        """The error naming the first step whose state is unbounded, with the stepper's explanation
        (:meth:`~ocdl.steppers.Stepper.diagnose`) of that step."""
        xp = get_array_module(Y0)
        state = self.stepper.init(Y0)
        for j, theta_j in enumerate(steps):  # noqa: B007 - j names the step in the message
            new_state = self.stepper.advance(state, theta_j, self.h)
            output = self.stepper.output(new_state)
            with np.errstate(invalid="ignore", over="ignore"):
                bad = ~(xp.isfinite(output) & (xp.abs(output) <= limit)).all(axis=1)
            if bool(bad.any()) or not all(self._bounded(x, limit) for x in new_state):
                break
            state = new_state
        rows = xp.flatnonzero(bad)[:64] if bool(bad.any()) else xp.arange(min(64, Y0.shape[0]))
        explanation = self.stepper.diagnose(tuple(x[rows] for x in state), theta_j, self.h)
        return PropagationError(
            f"forward propagation blew up: step {j} of {self.n_steps} ({type(self.stepper).__name__}, "
            f"h = {self.h:.3g}) produced "
            + ("NaN or Inf." if self.blow_up is None else
               f"NaN, Inf or values above {limit:.3g} (blow_up = {self.blow_up} times max(1, max|Y0|)).")
            + (f" {explanation}" if explanation else "")
        )

    def forward(self, theta: Any, Y0: Any) -> Any:
        """The output features :math:`Y_N` (``s x n``), by a sweep that keeps no state (whatever the
        memory policy, :func:`~ocdl.memory.propagate`).

        Parameters
        ----------
        theta : array, shape ``(n_params,)``
            The parameters of all steps (row ``j`` of its ``(n_steps, stepper.n_params)`` view: step ``j``).
        Y0 : array, shape ``(s, n_features)``
            The input features, one example per row, of ``theta``'s dtype and device.

        Raises
        ------
        TypeError, ValueError
            Naming the argument: not a float32/float64 array, a wrong shape, dtypes that differ.
        ocdl.PropagationError
            As :meth:`trajectory` does.
        """
        steps, Y0 = self._checked(theta, Y0)
        YN = self.stepper.output(propagate(self.stepper, steps, self.h, self.stepper.init(Y0)))
        error = self._unbounded(steps, Y0, YN)
        if error is not None:
            raise error
        return YN

    def _check_trajectory(self, trajectory: Trajectory, Y0: Any) -> None:
        """A trajectory of this network's number of steps, not closed (a closed one serves none: the sweeps
        would return zeros or never-written rows), of ``Y0``'s examples."""
        if not isinstance(trajectory, Trajectory):
            raise TypeError(f"trajectory must be an ocdl Trajectory (of Network.trajectory), got "
                            f"{type(trajectory).__name__}")
        check_array("Y0", Y0, ndim=2, finite=False)  # its entries: checked by the trajectory's sweep
        # the state's members and widths, from this stepper's state of no example (allocates nothing)
        expected = [x.shape[1:] for x in self.stepper.init(Y0[:0])]
        held = [x.shape[1:] for x in trajectory.final_state]
        if held != expected:
            raise ValueError(f"trajectory holds states of widths {held}, this network's {type(self.stepper).__name__} "
                             f"has {expected}: pass the trajectory of this network's forward sweep")
        rows = {x.shape[0] for x in trajectory.final_state}
        if rows != {Y0.shape[0]}:
            raise ValueError(f"trajectory is of {min(rows)} examples, Y0 has {Y0.shape[0]}: pass the trajectory of "
                             "this Y0's forward sweep")
        if trajectory.n_steps != self.n_steps:
            raise ValueError(
                f"trajectory serves {trajectory.n_steps} steps, this network has {self.n_steps}: pass the open "
                "trajectory of this network's forward sweep (a closed one serves none; run the forward sweep again)"
            )

    def jvp(self, theta: Any, Y0: Any, dtheta: Any, dY0: Any = None, trajectory: Trajectory | None = None) -> Any:
        """Sensitivity :math:`dY_N = J_\\theta\\, d\\theta + J_{Y_0} dY_0` by forward substitution.

        ``theta``, ``Y0`` as in :meth:`forward`; ``dtheta`` is shaped like ``theta``, ``dY0`` like ``Y0``
        (zero if ``None``), both of their dtype. Returns :math:`dY_N`, shaped like :math:`Y_N`. Without a
        ``trajectory`` it runs the forward sweep first; with one (of this ``theta`` and ``Y0``, open) the
        entries of ``theta`` are not checked again: they were when the trajectory was computed (on a GPU
        each check is a synchronisation).
        """
        xp = get_array_module(theta, Y0)
        # the forms before the forward sweep, so that bad input fails at once (theta's entries: in the sweep)
        steps = self.theta_steps(theta, finite=False)
        dsteps = self.theta_steps(dtheta, "dtheta")
        check_dtype_of("dtheta", dtheta, "theta", theta)
        if dY0 is None:
            dY0 = xp.zeros_like(Y0)
        else:
            check_dtype_of("dY0", check_array("dY0", dY0, shape=Y0.shape), "Y0", Y0)
        if trajectory is None:
            with self.trajectory(theta, Y0) as traj:
                return self.jvp(theta, Y0, dtheta, dY0, trajectory=traj)
        self._check_trajectory(trajectory, Y0)
        dstate = self.stepper.init(dY0)
        if trajectory.sweep is not None:  # the stepper's sweep in one piece (Stepper.sweep)
            return self.stepper.output(trajectory.sweep.jvp(steps, dstate, dsteps))
        with Workspace(temporaries) as sweep:  # owns the tangent carried from step to step
            for j, state, cache in trajectory.steps():
                dstate = sweep.carry(self.stepper.step_jvp, state, steps[j], self.h, dstate, dsteps[j], cache)
            return sweep.hand_over(self.stepper.output(dstate))

    def vjp(
        self, theta: Any, Y0: Any, lam: Any, trajectory: Trajectory | None = None, return_dY0: bool = False
    ) -> Any:
        """Adjoint :math:`J_\\theta^T \\bar Y_N` (and :math:`J_{Y_0}^T \\bar Y_N` if ``return_dY0``) by backward
        substitution; ``lam`` is the cotangent :math:`\\bar Y_N`, shaped like :math:`Y_N`.

        ``theta``, ``Y0`` as in :meth:`forward`. Returns the gradient, shape ``(n_params,)``, or with
        ``return_dY0`` the pair ``(gradient, J_{Y_0}^T lam)``, the second shaped like ``Y0``. With a
        ``trajectory``, ``theta`` is checked as in :meth:`jvp`.
        """
        if trajectory is None:
            with self.trajectory(theta, Y0) as traj:
                return self.vjp(theta, Y0, lam, trajectory=traj, return_dY0=return_dY0)
        self._check_trajectory(trajectory, Y0)
        xp = get_array_module(theta, Y0)
        steps = self.theta_steps(theta, finite=False)
        YN = self.stepper.output(trajectory.final_state)
        check_dtype_of("lam", check_array("lam", lam, shape=YN.shape), "Y_N", YN)
        lam_state = self.stepper.output_vjp(trajectory.final_state, lam)
        if trajectory.sweep is not None:  # the stepper's sweep in one piece (Stepper.sweep)
            lam_state, grad = trajectory.sweep.vjp(steps, lam_state)
            grad = grad.ravel()
            return (grad, self.stepper.init_vjp(lam_state)) if return_dY0 else grad
        grad = xp.empty_like(steps)
        with Workspace(temporaries) as sweep:  # owns the adjoint carried from step to step
            for j, state, cache in trajectory.reversed_steps():
                lam_state, grad[j] = sweep.carry(self.stepper.step_vjp, state, steps[j], self.h, lam_state, cache)
            grad = grad.ravel()
            return (grad, sweep.hand_over(self.stepper.init_vjp(lam_state))) if return_dY0 else grad

    def jacobian(self, theta: Any, Y0: Any, trajectory: Trajectory | None = None) -> Any:
        """:math:`J_\\theta` as a ``LinearOperator`` of shape ``(s*n, n_params)``.

        ``matvec`` is :meth:`jvp` (raveled), ``rmatvec`` is :meth:`vjp`; the
        forward states are computed once, here, and reused by every product:
        the trajectory made here stays open as long as the operator lives
        (pass an open ``trajectory`` to control its lifetime, e.g. with
        :class:`~ocdl.memory.HDF5`'s files). On CuPy arrays the operator is a
        ``cupyx.scipy.sparse.linalg.LinearOperator``.
        """
        xp = get_array_module(theta, Y0)
        traj = self.trajectory(theta, Y0) if trajectory is None else trajectory
        YN = self.stepper.output(traj.final_state)
        shape = (YN.size, self.n_params)

        def matvec(v):
            return self.jvp(theta, Y0, xp.asarray(v).ravel().astype(theta.dtype), trajectory=traj).ravel()

        def rmatvec(w):
            lam = xp.asarray(w).reshape(YN.shape).astype(theta.dtype)
            return self.vjp(theta, Y0, lam, trajectory=traj)

        return _linear_operator_class(xp)(shape, matvec=matvec, rmatvec=rmatvec, dtype=theta.dtype)

    def __repr__(self) -> str:
        return (
            f"Network({self.stepper!r}, n_steps={self.n_steps}, final_time={self.final_time}, "
            f"memory={self.memory!r})"
        )


def _linear_operator_class(xp):
    if xp is np:
        from scipy.sparse.linalg import LinearOperator
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.sparse.linalg import LinearOperator
    return LinearOperator
