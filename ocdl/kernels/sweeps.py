r"""Whole sweeps in one kernel: ResNet, leapfrog, Verlet and RK4 networks with a small matrix on CuPy arrays.

A deep, narrow network on the GPU (the issue's W1: 1,024 steps of
``4000 x 8`` states) is bound by kernel launches and by Python, not by the
device: each step of the per-step fused path (:mod:`.layer_steps`) is one or
more launches and a few microseconds of Python, for a few microseconds of
work. Here one thread carries one example (its rows of the state, in
registers) through all :math:`N` steps, so the forward sweep, the
sensitivity sweep and the adjoint sweep are one kernel each; the adjoint's
parameter gradient is summed per block of rows in the kernel and over the
blocks afterwards, in a fixed order.

* :class:`~ocdl.steppers.ResNet`:
  :math:`Y_{j+1} = Y_j + h\,\sigma(Y_j K_j + b_j)`, :math:`D_j = h\,\sigma'(Y_j K_j + b_j)`;
  tangent :math:`dY_{j+1} = dY_j + D_j \odot (dY_j K_j + Y_j\, dK_j + db_j)`;
  adjoint :math:`\lambda_j = \lambda_{j+1} + G_j K_j^T` with :math:`G_j = D_j \odot \lambda_{j+1}`,
  :math:`g_j = (Y_j^T G_j,\ \mathbf 1^T G_j \mathbf 1)`.
* :class:`~ocdl.steppers.Leapfrog`:
  :math:`Y_{j+1} = (Y_j + h^2\sigma(Y_j K_j + b_j)) + Y_j - Y_{j-1}`, :math:`D_j = h^2\sigma'(\cdot)`;
  backward, with :math:`G_j = D_j \odot L`: :math:`(L, L') \leftarrow (2L + G_j K_j^T + L', -L)`.
* :class:`~ocdl.steppers.Verlet` (``K_j`` of size ``n x m``):
  :math:`Z_{j+1} = Z_j - h\,\sigma(Y_j K_j + b_j)`, :math:`Y_{j+1} = Y_j + h\,\sigma(Z_{j+1} K_j^T + b_j)`,
  with the two half-steps' tangents and, backward, :math:`G_2 = D_{2,j} \odot L_Y`,
  :math:`\Lambda = L_Z + G_2 K_j`, :math:`G_1 = D_{1,j} \odot \Lambda`,
  :math:`L_Y \leftarrow L_Y + G_1 K_j^T`, :math:`L_Z \leftarrow \Lambda`,
  :math:`g_j = (G_2^T Z_{j+1} + Y_j^T G_1,\ \text{the sums of } G_1, G_2)`.

* :class:`~ocdl.steppers.RK4`: its four layer steps :math:`U_i = Y_j + c_{i-1}\sigma(U_{i-1} K_j + b_j)`
  (:math:`U_0 = Y_j`, :math:`c = (h/2, h/2, h, h/6)`) and
  :math:`Y_{j+1} = \tfrac13 (2U_2 + U_1 + U_3 - Y_j) + \tfrac h6 \sigma(U_3 K_j + b_j)`, their tangents
  forward and their transposes backward, as :meth:`ocdl.steppers.RK4.step_jvp` and ``step_vjp`` chain them.

Every step's matrix :math:`K_j = K(\theta_j)` is formed before a sweep, all
at once: it is ``theta`` itself where the parameters are the matrix
(``Dense``), else the transform's explicit form of the stack of parameters
(:attr:`~ocdl.transforms.Transform.explicit_stacks`: ``Antisymmetric`` and
``NegativeDefinite`` of a ``Dense``), whose parameter gradient is then
:meth:`~ocdl.transforms.Transform.explicit_vjp` of the stack of the
matrices' gradients. The equations are those of the per-step kernels
(``dense.cu``), each product summed in the same order; only the parameter
gradient's sums over rows are grouped otherwise, so both paths agree to
rounding. A sweep applies where the per-step fused kernels do (CuPy arrays
of one float dtype, the switch on, an activation with CUDA source) to
matrices of at most 32 x 32; elsewhere the steppers step.
:meth:`ocdl.steppers.Stepper.sweep` is the entry point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .compile import MAX_BLOCKS, MAX_PARTIAL_BLOCKS, function
from .layer_steps import _SHARED_BYTES, _plan

#: Threads (rows) per block of the sweep kernels: small blocks spread a few thousand rows over many SMs (half
#: as many where the adjoint's shared memory would overflow, :meth:`_Sweep.sizes`).
ROWS = 64
#: Bytes the adjoint's partial sums may take at least (more where the states take more).
_PARTIAL_BYTES = 1 << 26


class _Sweep:
    """What the sweeps of every stepper share: the stored arrays, the kernels, the derivative sweeps.

    A stepper's sweep names its kernels (``kind``: ``KIND_forward``, ``KIND_tangent``, ``KIND_adjoint`` of
    ``sweep.cu``, in its section ``SWEEP_KIND``, a module of their own), the arrays its forward sweep stores
    (:meth:`shapes`, in the kernels' order), the factor of its layer steps (:meth:`factor`) and how a step's
    state and cache are read off them (:meth:`record`).
    The kernels take, in order: forward ``(*state_0, A, theta, factor, *stored, *state_N, store)``, tangent
    ``(*stored, A, dA, dtheta, *dstate_0, *dstate_N)``, adjoint ``(*stored, A, *lam_N, *lam_0, partials)``,
    each followed by ``(s, n_steps)``.
    """

    kind: str  # the kernels' prefix in sweep.cu
    square = True  # whether the stepper needs a square matrix (its state steps through K alone)

    def __init__(self, plan, n_steps: int, arrays: dict | None, final_state: tuple) -> None:
        self._plan, self.n_steps, self.final_state = plan, n_steps, final_state
        self.arrays = arrays  # the stored states and caches by name (None: a sweep that keeps nothing)
        self._sizes = self.sizes(plan.transform, plan.dtype)
        self.rows = self._sizes["ROWS"]

    @staticmethod
    def shared_per_row(n_in: int, n_out: int) -> int:
        """Numbers the adjoint kernel keeps in shared memory per row: a row of the layer's input and of its
        :math:`G`, and the row's sum of :math:`G`."""
        return 2 * n_in + 1

    @classmethod
    def sizes(cls, transform, dtype: Any) -> dict:
        """The compile-time sizes of this stepper's kernels in ``sweep.cu`` for ``transform``'s matrices in
        ``dtype``: their shape; the stride of the matrices (in ``theta`` itself where the parameters are the
        matrix, else in the stack of explicit forms); ``theta``'s numbers per step; :data:`ROWS` rows a block,
        or half as many where the adjoint's shared arrays (:meth:`shared_per_row`) would pass CUDA's static
        limit; and the stepper (``SWEEP_RESNET``, ...: a module holds its three kernels alone)."""
        n_in, n_out, p = transform.n_in, transform.n_out, transform.n_params + 1
        shared = ROWS * cls.shared_per_row(n_in, n_out) * np.dtype(dtype).itemsize
        return {"N_IN": n_in, "N_OUT": n_out, "A_STRIDE": p if transform.explicit_is_theta else n_in * n_out,
                "P_THETA": p, "ROWS": ROWS if shared <= _SHARED_BYTES else ROWS // 2, f"SWEEP_{cls.kind.upper()}": 1}

    @staticmethod
    def shapes(n_steps: int, state0: tuple) -> dict:
        """The stored arrays by name, in the kernels' order, and their shapes."""
        raise NotImplementedError

    @staticmethod
    def factor(h: float) -> float:
        r"""The factor :math:`c` of the layer steps :math:`X + c\,\sigma(\cdot)` that the derivatives carry."""
        return h

    def record(self, j: int) -> tuple[tuple, Any]:
        """``(state_j, cache_j)`` as the stepper's ``step`` gives them."""
        raise NotImplementedError

    def _stored(self) -> tuple:
        return tuple(self.arrays.values())

    # -- every step's matrix at once: theta itself (Dense), or the stack of explicit forms -----------------
    def _matrices(self, theta):
        """``A``: the matrices :math:`K_j` of the contiguous ``(N, p)`` parameters, as the kernels read them."""
        t = self._plan.transform
        return theta if t.explicit_is_theta else self._plan.xp.ascontiguousarray(t.explicit(theta[:, :-1]))

    def _directions(self, theta, dtheta):
        r"""``dA``: the matrices' directions :math:`K'(\theta_j)[d\theta_j]`, as the kernels read them."""
        t = self._plan.transform
        if t.explicit_is_theta:
            return dtheta
        return self._plan.xp.ascontiguousarray(t.explicit_jvp(theta[:, :-1], dtheta[:, :-1]))

    def _gradient(self, theta, g):
        """The ``(N, p)`` parameter gradient from ``g``, the gradient in the matrices' entries and the biases."""
        t = self._plan.transform
        if t.explicit_is_theta:
            return g
        n_steps = g.shape[0]
        gK = t.explicit_vjp(theta[:, :-1], g[:, :-1].reshape(n_steps, t.n_in, t.n_out))
        return self._plan.xp.concatenate((gK.reshape(n_steps, -1), g[:, -1:]), axis=1)

    def _launch(self, name: str, s: int, args: tuple, blocks: int | None = None) -> None:
        p = self._plan
        kernel = function(p.xp, "sweep.cu", f"{self.kind}_{name}", p.dtype, p.activation, **self._sizes)
        blocks = _blocks(s, self.rows) if blocks is None else blocks
        kernel((blocks,), (self.rows,), (*args, np.int64(s), np.int32(self.n_steps)))

    # -- the derivative sweeps ------------------------------------------------------------------------------
    def jvp(self, theta_steps, dstate: tuple, dtheta_steps) -> tuple:
        r"""The sensitivity sweep: :math:`dx_N` from :math:`dx_0` and the ``(N, p)`` direction."""
        xp = self._plan.xp
        theta, dtheta = xp.ascontiguousarray(theta_steps), xp.ascontiguousarray(dtheta_steps)
        dstate = tuple(xp.ascontiguousarray(d) for d in dstate)
        last = tuple(xp.empty_like(d) for d in dstate)
        self._launch("tangent", dstate[0].shape[0], (*self._stored(), self._matrices(theta),
                                                     self._directions(theta, dtheta), dtheta, *dstate, *last))
        return last

    def vjp(self, theta_steps, lam_state: tuple) -> tuple[tuple, Any]:
        r"""The adjoint sweep: :math:`(\lambda_0, g)` from :math:`\lambda_N`, ``g`` the ``(N, p)`` gradient."""
        xp, dtype, t = self._plan.xp, self._plan.dtype, self._plan.transform
        theta = xp.ascontiguousarray(theta_steps)
        cotangents = tuple(xp.ascontiguousarray(c) for c in lam_state)
        s, n_steps, q = cotangents[0].shape[0], theta.shape[0], t.n_in * t.n_out + 1
        stored = self._stored()
        state_bytes = sum(a.nbytes for a in stored)
        blocks = max(1, min(_blocks(s, self.rows), MAX_PARTIAL_BLOCKS,
                            max(_PARTIAL_BYTES, state_bytes) // (n_steps * q * dtype.itemsize)))
        partials = xp.zeros((blocks, n_steps, q), dtype=dtype)
        first = tuple(xp.empty_like(c) for c in cotangents)
        self._launch("adjoint", s, (*stored, self._matrices(theta), *cotangents, *first, partials), blocks)
        return first, self._gradient(theta, partials.sum(axis=0))


def _blocks(s: int, rows: int) -> int:
    return int(max(1, min(MAX_BLOCKS, -(-int(s) // rows))))


class ResNetSweep(_Sweep):
    r"""A ResNet's forward sweep: ``arrays["Y"][j]`` is :math:`Y_j` and ``arrays["D"][j]`` is :math:`D_j`
    (``N x s x n``); ``final_state`` is :math:`(Y_N,)`. Built by :func:`resnet`."""

    kind = "resnet"

    @staticmethod
    def shapes(n_steps, state0):
        (Y0,) = state0
        return {"Y": (n_steps, *Y0.shape), "D": (n_steps, *Y0.shape)}

    def record(self, j: int) -> tuple[tuple, Any]:
        """``((Y_j,), D_j)``, as :meth:`ocdl.steppers.ResNet.step` gives them."""
        return (self.arrays["Y"][j],), self.arrays["D"][j]


class LeapfrogSweep(_Sweep):
    r"""A leapfrog network's forward sweep: ``arrays["Y"][j + 1]`` is :math:`Y_j` (``arrays["Y"][0]`` is
    :math:`Y_{-1}`, ``N + 1`` of them) and ``arrays["D"][j]`` is :math:`D_j = h^2 \sigma'(Y_j K_j + b_j)`;
    ``final_state`` is :math:`(Y_N, Y_{N-1})`. Built by :func:`leapfrog`."""

    kind = "leapfrog"

    @staticmethod
    def shapes(n_steps, state0):  # Y_{-1} .. Y_{N-1}: the state of step j is (Y_j, Y_{j-1})
        Y0, _ = state0
        return {"Y": (n_steps + 1, *Y0.shape), "D": (n_steps, *Y0.shape)}

    @staticmethod
    def factor(h):
        return h * h

    def record(self, j: int) -> tuple[tuple, Any]:
        """``((Y_j, Y_{j-1}), D_j)``, as :meth:`ocdl.steppers.Leapfrog.step` gives them."""
        Ys = self.arrays["Y"]
        return (Ys[j + 1], Ys[j]), self.arrays["D"][j]


class VerletSweep(_Sweep):
    r"""A Verlet network's forward sweep: ``arrays["Y"][j]`` is :math:`Y_j`, ``arrays["Z"][j]`` is
    :math:`Z_j` (``N + 1`` of them), ``arrays["D1"][j]`` and ``arrays["D2"][j]`` the half-steps'
    derivatives; ``final_state`` is :math:`(Y_N, Z_N)`. Built by :func:`verlet`."""

    kind = "verlet"
    square = False

    @staticmethod
    def shared_per_row(n_in, n_out):
        """Rows of :math:`Y_j`, :math:`G_2` (``n_in`` each), :math:`Z_{j+1}`, :math:`G_1` (``n_out`` each) and
        the row's sum of both."""
        return 2 * (n_in + n_out) + 1

    @staticmethod
    def shapes(n_steps, state0):  # Z_0 .. Z_N: the cache of step j holds Z_{j+1}
        Y0, Z0 = state0
        return {"Y": (n_steps, *Y0.shape), "Z": (n_steps + 1, *Z0.shape), "D1": (n_steps, *Z0.shape),
                "D2": (n_steps, *Y0.shape)}

    def record(self, j: int) -> tuple[tuple, Any]:
        """``((Y_j, Z_j), (Z_{j+1}, D1_j, D2_j))``, as :meth:`ocdl.steppers.Verlet.step` gives them."""
        a = self.arrays
        return (a["Y"][j], a["Z"][j]), (a["Z"][j + 1], a["D1"][j], a["D2"][j])


class RK4Sweep(_Sweep):
    r"""An RK4 network's forward sweep: ``arrays["Y"][j]`` is :math:`Y_j`, ``arrays["U1"][j]`` ..
    ``arrays["U3"][j]`` its stages and ``arrays["D0"][j]`` .. ``arrays["D3"][j]`` their derivatives
    :math:`c_i \sigma'(\cdot)` (``N x s x n`` each); ``final_state`` is :math:`(Y_N,)`. Built by :func:`rk4`."""

    kind = "rk4"

    @staticmethod
    def shapes(n_steps, state0):
        (Y0,) = state0
        return {name: (n_steps, *Y0.shape) for name in ("Y", "U1", "U2", "U3", "D0", "D1", "D2", "D3")}

    def record(self, j: int) -> tuple[tuple, Any]:
        """``((Y_j,), ((U1, U2, U3), (D0, D1, D2, D3)))`` of step ``j``, as :meth:`ocdl.steppers.RK4.step` gives
        them."""
        a = self.arrays
        return (a["Y"][j],), (tuple(a[f"U{i}"][j] for i in (1, 2, 3)), tuple(a[f"D{i}"][j] for i in range(4)))


def _sweep(cls, layer, theta_steps, h: float, state0: tuple, store: bool):
    """The forward sweep of ``cls``'s stepper from ``state0`` in one kernel, or ``None`` where it does not
    apply: the plan of the per-step kernels, small matrices formed for all steps at once (square for a
    stepper whose state steps through :math:`K` alone)."""
    plan = _plan(layer, theta_steps, state0[0], state0[1:], transpose=False)
    transform = layer.transform
    if plan is None or not (plan.small() and (transform.explicit_is_theta or transform.explicit_stacks)):
        return None
    if cls.square and transform.n_in != transform.n_out:
        return None
    xp, dtype = plan.xp, plan.dtype
    theta = xp.ascontiguousarray(theta_steps)
    state0 = tuple(xp.ascontiguousarray(x) for x in state0)
    n_steps, shapes = theta.shape[0], cls.shapes(theta.shape[0], state0)
    arrays = {name: xp.empty(shape, dtype=dtype) for name, shape in shapes.items()} if store else None
    sweep = cls(plan, n_steps, arrays, tuple(xp.empty_like(x) for x in state0))
    stored = sweep._stored() if store else (sweep.final_state[0],) * len(shapes)  # placeholders, not written
    sweep._launch("forward", state0[0].shape[0], (*state0, sweep._matrices(theta), theta, dtype.type(cls.factor(h)),
                                                  *stored, *sweep.final_state, np.int32(store)))
    return sweep


def resnet(layer, theta_steps, h: float, Y0, store: bool = True) -> ResNetSweep | None:
    r"""The forward sweep of :math:`Y_{j+1} = Y_j + h\,\sigma(Y_j K_j + b_j)` in one kernel, or ``None``.

    ``None`` where it does not apply (see the module docstring): the caller
    then steps. With ``store=False`` only the final state is kept
    (prediction, a line search's trial).
    """
    return _sweep(ResNetSweep, layer, theta_steps, h, (Y0,), store)


def leapfrog(layer, theta_steps, h: float, state0: tuple, store: bool = True) -> LeapfrogSweep | None:
    r"""The forward sweep of :math:`Y_{j+1} = 2 Y_j - Y_{j-1} + h^2 \sigma(Y_j K_j + b_j)` in one kernel, or
    ``None``, as :func:`resnet`."""
    return _sweep(LeapfrogSweep, layer, theta_steps, h, state0, store)


def verlet(layer, theta_steps, h: float, state0: tuple, store: bool = True) -> VerletSweep | None:
    r"""The forward sweep of the Verlet network (see the module docstring) in one kernel, or ``None``, as
    :func:`resnet`."""
    return _sweep(VerletSweep, layer, theta_steps, h, state0, store)


def rk4(layer, theta_steps, h: float, Y0, store: bool = True) -> RK4Sweep | None:
    r"""The forward sweep of classical RK4 on :math:`\dot Y = \sigma(Y K_j + b_j)` (:class:`~ocdl.steppers.RK4`,
    four layer steps a step) in one kernel, or ``None``, as :func:`resnet`."""
    return _sweep(RK4Sweep, layer, theta_steps, h, (Y0,), store)
