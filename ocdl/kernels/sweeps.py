r"""Whole sweeps in one kernel: ResNet, leapfrog and Verlet networks with a small matrix on CuPy arrays.

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
#: as many where the shared memory would overflow, :func:`sizes`).
ROWS = 64
#: Bytes the adjoint's partial sums may take at least (more where the states take more).
_PARTIAL_BYTES = 1 << 26


def sizes(transform, dtype: Any) -> dict:
    """The compile-time sizes of ``sweep.cu`` for ``transform``'s matrices in ``dtype``: their shape; the
    stride of the matrices (in ``theta`` itself where the parameters are the matrix, else in the stack of
    explicit forms); ``theta``'s numbers per step; and :data:`ROWS` rows a block, or half as many where the
    Verlet adjoint's shared arrays (``2 (n_in + n_out) + 1`` numbers a row) would pass CUDA's static limit
    (one module holds every kernel of the file)."""
    n_in, n_out, p = transform.n_in, transform.n_out, transform.n_params + 1
    shared = ROWS * (2 * (n_in + n_out) + 1) * np.dtype(dtype).itemsize
    return {"N_IN": n_in, "N_OUT": n_out, "A_STRIDE": p if transform.explicit_is_theta else n_in * n_out,
            "P_THETA": p, "ROWS": ROWS if shared <= _SHARED_BYTES else ROWS // 2}


class _Sweep:
    """What the sweeps of every stepper share: the states, the kernels, the adjoint's partial sums."""

    kind: str  # the kernels' prefix in sweep.cu

    def __init__(self, plan, n_steps: int, arrays: dict | None, final_state: tuple) -> None:
        self._plan, self.n_steps, self.final_state = plan, n_steps, final_state
        self.arrays = arrays  # the stored states and caches by name (None: a sweep that keeps nothing)
        self._sizes = sizes(plan.transform, plan.dtype)
        self.rows = self._sizes["ROWS"]

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

    def _adjoint(self, theta_steps, cotangents: tuple, stored: tuple) -> tuple[tuple, Any]:
        """``(cotangents at step 0, (N, p) gradient)`` by the adjoint kernel from the ``cotangents`` at N."""
        xp, dtype, t = self._plan.xp, self._plan.dtype, self._plan.transform
        theta = xp.ascontiguousarray(theta_steps)
        cotangents = tuple(xp.ascontiguousarray(c) for c in cotangents)
        s, n_steps, q = cotangents[0].shape[0], theta.shape[0], t.n_in * t.n_out + 1
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

    def record(self, j: int) -> tuple[tuple, Any]:
        """``(state_j, cache_j)`` as :meth:`ocdl.steppers.ResNet.step` gives them: ``((Y_j,), D_j)``."""
        return (self.arrays["Y"][j],), self.arrays["D"][j]

    def jvp(self, theta_steps, dstate: tuple, dtheta_steps) -> tuple:
        r"""The sensitivity sweep: :math:`(dY_N,)` from :math:`(dY_0,)` and the ``(N, p)`` direction."""
        xp = self._plan.xp
        theta, dtheta, dY0 = (xp.ascontiguousarray(a) for a in (theta_steps, dtheta_steps, dstate[0]))
        dYN = xp.empty_like(dY0)
        self._launch("tangent", dY0.shape[0], (self.arrays["Y"], self.arrays["D"], self._matrices(theta),
                                               self._directions(theta, dtheta), dtheta, dY0, dYN))
        return (dYN,)

    def vjp(self, theta_steps, lam_state: tuple) -> tuple[tuple, Any]:
        r"""The adjoint sweep: :math:`((\lambda_0,), g)` from :math:`(\lambda_N,)`, ``g`` of shape ``(N, p)``."""
        return self._adjoint(theta_steps, lam_state, (self.arrays["Y"], self.arrays["D"]))


class LeapfrogSweep(_Sweep):
    r"""A leapfrog network's forward sweep: ``arrays["Y"][j + 1]`` is :math:`Y_j` (``arrays["Y"][0]`` is
    :math:`Y_{-1}`, ``N + 1`` of them) and ``arrays["D"][j]`` is :math:`D_j = h^2 \sigma'(Y_j K_j + b_j)`;
    ``final_state`` is :math:`(Y_N, Y_{N-1})`. Built by :func:`leapfrog`."""

    kind = "leapfrog"

    def record(self, j: int) -> tuple[tuple, Any]:
        """``(state_j, cache_j)`` as :meth:`ocdl.steppers.Leapfrog.step` gives them: ``((Y_j, Y_{j-1}), D_j)``."""
        Ys = self.arrays["Y"]
        return (Ys[j + 1], Ys[j]), self.arrays["D"][j]

    def jvp(self, theta_steps, dstate: tuple, dtheta_steps) -> tuple:
        r"""The sensitivity sweep: :math:`(dY_N, dY_{N-1})` from :math:`(dY_0, dY_{-1})` and the direction."""
        xp = self._plan.xp
        theta, dtheta, dY0, dYp0 = (xp.ascontiguousarray(a) for a in (theta_steps, dtheta_steps, *dstate))
        dYN, dYpN = xp.empty_like(dY0), xp.empty_like(dY0)
        self._launch("tangent", dY0.shape[0], (self.arrays["Y"], self.arrays["D"], self._matrices(theta),
                                               self._directions(theta, dtheta), dtheta, dY0, dYp0, dYN, dYpN))
        return (dYN, dYpN)

    def vjp(self, theta_steps, lam_state: tuple) -> tuple[tuple, Any]:
        r"""The adjoint sweep: :math:`((L_0, L'_0), g)` from :math:`(L_N, L'_N)`."""
        return self._adjoint(theta_steps, lam_state, (self.arrays["Y"], self.arrays["D"]))


class VerletSweep(_Sweep):
    r"""A Verlet network's forward sweep: ``arrays["Y"][j]`` is :math:`Y_j`, ``arrays["Z"][j]`` is
    :math:`Z_j` (``N + 1`` of them), ``arrays["D1"][j]`` and ``arrays["D2"][j]`` the half-steps'
    derivatives; ``final_state`` is :math:`(Y_N, Z_N)`. Built by :func:`verlet`."""

    kind = "verlet"

    def _stored(self) -> tuple:
        a = self.arrays
        return a["Y"], a["Z"], a["D1"], a["D2"]

    def record(self, j: int) -> tuple[tuple, Any]:
        """``(state_j, cache_j)`` as :meth:`ocdl.steppers.Verlet.step` gives them:
        ``((Y_j, Z_j), (Z_{j+1}, D1_j, D2_j))``."""
        a = self.arrays
        return (a["Y"][j], a["Z"][j]), (a["Z"][j + 1], a["D1"][j], a["D2"][j])

    def jvp(self, theta_steps, dstate: tuple, dtheta_steps) -> tuple:
        r"""The sensitivity sweep: :math:`(dY_N, dZ_N)` from :math:`(dY_0, dZ_0)` and the ``(N, p)`` direction."""
        xp = self._plan.xp
        theta, dtheta, dY0, dZ0 = (xp.ascontiguousarray(a) for a in (theta_steps, dtheta_steps, *dstate))
        dYN, dZN = xp.empty_like(dY0), xp.empty_like(dZ0)
        self._launch("tangent", dY0.shape[0], (*self._stored(), self._matrices(theta),
                                               self._directions(theta, dtheta), dtheta, dY0, dZ0, dYN, dZN))
        return (dYN, dZN)

    def vjp(self, theta_steps, lam_state: tuple) -> tuple[tuple, Any]:
        r"""The adjoint sweep: :math:`((L_{Y,0}, L_{Z,0}), g)` from :math:`(L_{Y,N}, L_{Z,N})`."""
        return self._adjoint(theta_steps, lam_state, self._stored())


def _applies(layer, theta_steps, V, others: tuple = ()):
    """The per-step kernels' plan where a sweep applies (small matrices, formed for all steps at once)."""
    plan = _plan(layer, theta_steps, V, others, transpose=False)
    transform = layer.transform
    if plan is None or not (plan.small() and (transform.explicit_is_theta or transform.explicit_stacks)):
        return None
    return plan


def resnet(layer, theta_steps, h: float, Y0, store: bool = True) -> ResNetSweep | None:
    r"""The forward sweep of :math:`Y_{j+1} = Y_j + h\,\sigma(Y_j K_j + b_j)` in one kernel, or ``None``.

    ``None`` where it does not apply (see the module docstring): the caller
    then steps. With ``store=False`` only the final state is kept
    (prediction, a line search's trial).
    """
    plan = _applies(layer, theta_steps, Y0)
    if plan is None or layer.transform.n_in != layer.transform.n_out:
        return None
    xp = plan.xp
    theta, Y0 = xp.ascontiguousarray(theta_steps), xp.ascontiguousarray(Y0)
    n_steps = theta.shape[0]
    YN = xp.empty_like(Y0)
    arrays = {name: xp.empty((n_steps, *Y0.shape), dtype=plan.dtype) for name in ("Y", "D")} if store else None
    sweep = ResNetSweep(plan, n_steps, arrays, (YN,))
    Ys, Ds = (YN, YN) if arrays is None else (arrays["Y"], arrays["D"])  # placeholders where nothing is kept
    sweep._launch("forward", Y0.shape[0],
                  (Y0, sweep._matrices(theta), theta, plan.dtype.type(h), Ys, Ds, YN, np.int32(store)))
    return sweep


def leapfrog(layer, theta_steps, h: float, state0: tuple, store: bool = True) -> LeapfrogSweep | None:
    r"""The forward sweep of :math:`Y_{j+1} = 2 Y_j - Y_{j-1} + h^2 \sigma(Y_j K_j + b_j)` in one kernel, or
    ``None``, as :func:`resnet`."""
    Y0, Yp0 = state0
    plan = _applies(layer, theta_steps, Y0, (Yp0,))
    if plan is None or layer.transform.n_in != layer.transform.n_out:
        return None
    xp, dtype = plan.xp, plan.dtype
    theta, Y0, Yp0 = (xp.ascontiguousarray(a) for a in (theta_steps, Y0, Yp0))
    n_steps = theta.shape[0]
    YN, YpN = xp.empty_like(Y0), xp.empty_like(Y0)
    arrays = None
    if store:  # Y_{-1} .. Y_{N-1}: the state of step j is (Y_j, Y_{j-1})
        arrays = {"Y": xp.empty((n_steps + 1, *Y0.shape), dtype=dtype), "D": xp.empty((n_steps, *Y0.shape), dtype)}
    sweep = LeapfrogSweep(plan, n_steps, arrays, (YN, YpN))
    Ys, Ds = (YN, YN) if arrays is None else (arrays["Y"], arrays["D"])  # placeholders where nothing is kept
    sweep._launch("forward", Y0.shape[0], (Y0, Yp0, sweep._matrices(theta), theta, dtype.type(h * h), Ys, Ds, YN,
                                           YpN, np.int32(store)))
    return sweep


def verlet(layer, theta_steps, h: float, state0: tuple, store: bool = True) -> VerletSweep | None:
    r"""The forward sweep of the Verlet network (see the module docstring) in one kernel, or ``None``, as
    :func:`resnet`."""
    Y0, Z0 = state0
    plan = _applies(layer, theta_steps, Y0, (Z0,))
    if plan is None:
        return None
    xp, dtype = plan.xp, plan.dtype
    theta, Y0, Z0 = (xp.ascontiguousarray(a) for a in (theta_steps, Y0, Z0))
    (n_steps, _), s = theta.shape, Y0.shape[0]
    YN, ZN = xp.empty_like(Y0), xp.empty_like(Z0)
    arrays = None
    if store:  # Z_0 .. Z_N: the cache of step j holds Z_{j+1}
        shapes = {"Y": (n_steps, *Y0.shape), "Z": (n_steps + 1, *Z0.shape), "D1": (n_steps, *Z0.shape),
                  "D2": (n_steps, *Y0.shape)}
        arrays = {name: xp.empty(shape, dtype=dtype) for name, shape in shapes.items()}
    sweep = VerletSweep(plan, n_steps, arrays, (YN, ZN))
    stored = (YN, ZN, ZN, YN) if arrays is None else sweep._stored()  # placeholders where nothing is kept
    sweep._launch("forward", s, (Y0, Z0, sweep._matrices(theta), theta, dtype.type(h), *stored, YN, ZN,
                                 np.int32(store)))
    return sweep
