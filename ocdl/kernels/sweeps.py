r"""Whole sweeps in one kernel: a ResNet with a small dense layer on CuPy arrays (``sweep.cu``).

A deep, narrow network on the GPU (the issue's W1: 1,024 steps of
``4000 x 8`` states) is bound by kernel launches and by Python, not by the
device: each step of the per-step fused path (:mod:`.layer_steps`) is a
launch and a few microseconds of Python, for a few microseconds of work.
Here one thread carries one example through all :math:`N` steps of

.. math::  Y_{j+1} = Y_j + h\,\sigma(Y_j K_j + b_j), \qquad D_j = h\,\sigma'(Y_j K_j + b_j),

so the forward sweep, the sensitivity sweep
:math:`dY_{j+1} = dY_j + D_j \odot (dY_j K_j + Y_j\, dK_j + db_j)` and the
adjoint sweep :math:`\lambda_j = \lambda_{j+1} + G_j K_j^T`,
:math:`G_j = D_j \odot \lambda_{j+1}`, :math:`g_j = (Y_j^T G_j, \mathbf 1^T G_j \mathbf 1)`
are one kernel each (the adjoint's parameter gradient as partial sums per
block of rows, summed afterwards in a fixed order). The equations and the
order of every sum are those of the per-step kernels (``dense.cu``), so both
paths agree to rounding.

It applies where the per-step fused kernels do (CuPy arrays of one float
dtype, the switch on, an activation with CUDA source) to a
:class:`~ocdl.steppers.ResNet` whose transform's parameters are its matrix
(``Dense(n)``, ``n`` at most 32); :meth:`ocdl.steppers.Stepper.sweep` is the
entry point and :class:`ResNetSweep` the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .compile import MAX_BLOCKS, MAX_PARTIAL_BLOCKS, function
from .layer_steps import _plan

#: Threads (rows) per block of the sweep kernels: small blocks spread a few thousand rows over many SMs.
ROWS = 64
#: Bytes the adjoint's partial sums may take at least (more where the states take more).
_PARTIAL_BYTES = 1 << 26


class ResNetSweep:
    r"""The states and caches of a forward sweep in two arrays, and the derivative sweeps over them.

    ``states[j]`` is :math:`Y_j` and ``caches[j]`` is :math:`D_j` (``N x s x n``, absent for a sweep
    that keeps nothing); ``final_state`` is :math:`(Y_N,)`. Built by :func:`resnet`.
    """

    def __init__(self, plan, n_steps: int, states, caches, final_state: tuple) -> None:
        self._plan, self.n_steps = plan, n_steps
        self.states, self.caches, self.final_state = states, caches, final_state

    def _kernel(self, name: str):
        p = self._plan
        return function(p.xp, "sweep.cu", name, p.dtype, p.activation, N_F=p.transform.n_in, ROWS=ROWS)

    def record(self, j: int) -> tuple[tuple, Any]:
        """``(state_j, cache_j)`` as :meth:`ocdl.steppers.ResNet.step` gives them: ``((Y_j,), D_j)``."""
        return (self.states[j],), self.caches[j]

    def jvp(self, theta_steps, dstate: tuple, dtheta_steps) -> tuple:
        r"""The sensitivity sweep: :math:`(dY_N,)` from :math:`(dY_0,)` and the ``(N, p)`` direction."""
        xp = self._plan.xp
        theta, dtheta, dY0 = (xp.ascontiguousarray(a) for a in (theta_steps, dtheta_steps, dstate[0]))
        dYN = xp.empty_like(dY0)
        s = dY0.shape[0]
        self._kernel("resnet_tangent")((_blocks(s),), (ROWS,),
                                       (self.states, self.caches, theta, dtheta, dY0, dYN, np.int64(s),
                                        np.int32(self.n_steps)))
        return (dYN,)

    def vjp(self, theta_steps, lam_state: tuple) -> tuple[tuple, Any]:
        r"""The adjoint sweep: :math:`((\lambda_0,), g)` from :math:`(\lambda_N,)`, ``g`` of shape ``(N, p)``."""
        xp, dtype = self._plan.xp, self._plan.dtype
        theta, lamN = xp.ascontiguousarray(theta_steps), xp.ascontiguousarray(lam_state[0])
        s, n_steps, p = lamN.shape[0], self.n_steps, theta.shape[1]
        per_block = n_steps * p * dtype.itemsize
        blocks = max(1, min(_blocks(s), MAX_PARTIAL_BLOCKS, max(_PARTIAL_BYTES, self.states.nbytes) // per_block))
        partials = xp.zeros((blocks, n_steps, p), dtype=dtype)
        lam0 = xp.empty_like(lamN)
        self._kernel("resnet_adjoint")((blocks,), (ROWS,),
                                       (self.states, self.caches, theta, lamN, lam0, partials, np.int64(s),
                                        np.int32(n_steps)))
        return (lam0,), partials.sum(axis=0)


def _blocks(s: int) -> int:
    return int(max(1, min(MAX_BLOCKS, -(-int(s) // ROWS))))


def resnet(layer, theta_steps, h: float, Y0, store: bool = True) -> ResNetSweep | None:
    r"""The forward sweep of :math:`Y_{j+1} = Y_j + h\,\sigma(Y_j K_j + b_j)` in one kernel, or ``None``.

    ``None`` where it does not apply (see the module docstring): the caller
    then steps. With ``store=False`` only the final state is kept
    (prediction, a line search's trial).
    """
    plan = _plan(layer, theta_steps, Y0, (), transpose=False)
    transform = layer.transform
    if plan is None or not (plan.small() and transform.explicit_is_theta and transform.n_in == transform.n_out):
        return None
    xp, dtype = plan.xp, plan.dtype
    theta, Y0 = xp.ascontiguousarray(theta_steps), xp.ascontiguousarray(Y0)
    (n_steps, _), s = theta.shape, Y0.shape[0]
    YN = xp.empty_like(Y0)
    states = caches = None
    if store:
        states, caches = xp.empty((n_steps, *Y0.shape), dtype=dtype), xp.empty((n_steps, *Y0.shape), dtype=dtype)
    sweep = ResNetSweep(plan, n_steps, states, caches, (YN,))
    sweep._kernel("resnet_forward")((_blocks(s),), (ROWS,),
                                    (Y0, theta, dtype.type(h), YN if states is None else states,
                                     YN if caches is None else caches, YN, np.int64(s), np.int32(n_steps),
                                     np.int32(store)))
    return sweep
