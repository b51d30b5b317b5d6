r"""The fused kernels of :class:`ocdl.Layer`'s step, tangent and transpose on CuPy arrays.

Each function returns what the layer method returns, or ``None`` where the
fused kernels do not apply (then the layer takes its plain path): NumPy
arrays, the switch off (:func:`ocdl.kernels.fused`), a transform without an
explicit form, an activation without CUDA source, mixed or non-float dtypes,
stencils too large for shared memory. The layer's equations are in
:class:`ocdl.Layer`; here ``A`` is the matrix or stencil the step applies,
:math:`K` or, with ``transpose``, :math:`K^T`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._workspace import step_empty
from ..backend import get_array_module
from . import fused_enabled
from .compile import BLOCK, function, launch, partial_blocks

#: Matrices up to this size in both dimensions take the one-kernel path (``dense.cu``).
SMALL_MATRIX = 32
#: Channels of a stencil at most (the issue's "small channel counts").
MAX_CHANNELS = 16
#: Shared memory of a block that the stencils of a tangent may take (CUDA's static limit is 48 KiB).
_SHARED_BYTES = 48 * 1024
_DENSE_ROWS = 32  # rows per chunk of dense.cu's gradient (its ROWS)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class _Plan:
    """What a layer's fused kernels need: the module, the explicit form and the sizes of the product."""

    def __init__(self, xp, layer, dtype, transpose: bool) -> None:
        self.xp, self.dtype, self.transpose = xp, dtype, transpose
        self.transform = transform = layer.transform
        self.kind = transform.explicit_kind
        self.activation = layer.activation.cuda
        self.n_to = transform.n_in if transpose else transform.n_out

    # -- the explicit form and the kernels -----------------------------------
    def explicit(self, theta_K):
        return self.xp.ascontiguousarray(self.transform.explicit(theta_K))

    def explicit_jvp(self, theta_K, dtheta_K):
        return self.xp.ascontiguousarray(self.transform.explicit_jvp(theta_K, dtheta_K))

    def gradient(self, theta_K, A, g):
        """The layer's parameter gradient from ``g``: the gradient of the explicit form ``A`` (flat), then the
        bias's."""
        if self.transform.explicit_is_theta:
            return g
        return self.xp.concatenate((self.transform.explicit_vjp(theta_K, g[:-1].reshape(A.shape)), g[-1:]))

    def small(self) -> bool:
        return self.kind == "matrix" and max(self.transform.n_in, self.transform.n_out) <= SMALL_MATRIX

    def dense(self, kernel: str):
        t = self.transform
        return function(self.xp, "dense.cu", kernel, self.dtype, self.activation, N_IN=t.n_in, N_OUT=t.n_out,
                        TRANSPOSE=int(self.transpose))

    def elementwise(self, kernel: str):
        return function(self.xp, "elementwise.cu", kernel, self.dtype, self.activation)

    def stencil_sizes(self, flip: bool) -> dict:
        c_out, c_in, k, _ = self.transform.explicit_shape
        c_from, c_to = (c_out, c_in) if flip else (c_in, c_out)
        return {"KS": k, "C_FROM": c_from, "C_TO": c_to, "FLIP": int(flip)}

    def conv(self, kernel: str, flip: bool):
        return function(self.xp, "conv.cu", kernel, self.dtype, self.activation, **self.stencil_sizes(flip))

    def geometry(self, V) -> tuple:
        H, W = self.transform.image_shape
        return np.int64(V.shape[0]), np.int32(H), np.int32(W)


def _plan(layer, theta, V, others, transpose: bool) -> _Plan | None:
    """A :class:`_Plan` where the fused kernels apply, else ``None``."""
    if type(V) is np.ndarray:  # the CPU's path pays one type check (W1 on NumPy: 2,048 calls a gradient)
        return None
    xp = get_array_module(theta, V)
    if xp is np or not fused_enabled() or layer.activation.cuda is None:
        return None
    transform = layer.transform
    if transform.explicit_kind not in ("matrix", "stencil") or V.dtype not in _FLOATS:
        return None
    if any(a is not None and a.dtype != V.dtype for a in (theta, *others)):
        return None
    if transform.explicit_kind == "stencil":
        c_out, c_in, k, _ = transform.explicit_shape
        if max(c_out, c_in) > MAX_CHANNELS or 2 * c_out * c_in * k * k * V.dtype.itemsize > _SHARED_BYTES:
            return None
    return _Plan(xp, layer, V.dtype, transpose)


def _c(plan: _Plan, value: float):
    return plan.dtype.type(value)


def _flag(a: Any) -> np.int32:
    return np.int32(a is not None)


def _contiguous(xp, *arrays):
    return tuple(None if a is None else xp.ascontiguousarray(a) for a in arrays)


def step(layer, theta, V, X, c: float, transpose: bool, derivative: bool):
    """:meth:`ocdl.Layer.step` fused: ``(X + c sigma(V A + b), c sigma'(V A + b))``, or ``None``."""
    plan = _plan(layer, theta, V, (X,), transpose)
    if plan is None:
        return None
    xp = plan.xp
    V, X = _contiguous(xp, V, X)
    theta_K, b = theta[:-1], theta[-1:]
    A = plan.explicit(theta_K)
    out = step_empty(V, (V.shape[0], plan.n_to))
    D = step_empty(out) if derivative else None
    flags = (_flag(X), _flag(D))
    X_, D_ = (out if X is None else X), (out if D is None else D)  # placeholders for absent arrays
    if plan.kind == "stencil":
        kernel = plan.conv("conv_step", transpose)
        s, H, W = plan.geometry(V)
        launch(kernel, out.size // plan.stencil_sizes(transpose)["C_TO"],
               (V, A, b, _c(plan, c), X_, out, D_, s, H, W, *flags))
    elif plan.small():
        launch(plan.dense("dense_step"), out.size, (V, A, b, _c(plan, c), X_, out, D_, np.int64(V.shape[0]), *flags))
    else:
        Z = xp.matmul(V, A.T if transpose else A)
        launch(plan.elementwise("step_epilogue"), out.size,
               (Z, b, _c(plan, c), X_, out, D_, np.int64(out.size), *flags))
    return out, D


def step_jvp(layer, theta, V, D, dV, dtheta, dX, transpose: bool):
    """:meth:`ocdl.Layer.step_jvp` fused: ``dX + D (dV A + V A'[dtheta] + db)``, or ``None``."""
    plan = _plan(layer, theta, V, (D, dV, dtheta, dX), transpose)
    if plan is None:
        return None
    xp = plan.xp
    V, D, dV, dX = _contiguous(xp, V, D, dV, dX)
    theta_K, dtheta_K, db = theta[:-1], dtheta[:-1], dtheta[-1:]
    A, dA = plan.explicit(theta_K), plan.explicit_jvp(theta_K, dtheta_K)
    out = step_empty(D)
    has_x, dX_ = _flag(dX), (out if dX is None else dX)
    if plan.kind == "stencil":
        s, H, W = plan.geometry(V)
        launch(plan.conv("conv_tangent", transpose), out.size // plan.stencil_sizes(transpose)["C_TO"],
               (dV, A, V, dA, db, D, dX_, out, s, H, W, has_x))
    elif plan.small():
        launch(plan.dense("dense_tangent"), out.size, (V, dV, A, dA, db, D, dX_, out, np.int64(V.shape[0]), has_x))
    else:
        xp.matmul(dV, A.T if transpose else A, out=out)
        Z2 = xp.matmul(V, dA.T if transpose else dA)
        launch(plan.elementwise("tangent_epilogue"), out.size,
               (out, Z2, db, D, dX_, out, np.int64(out.size), np.int32(1), has_x))
    return out


def step_vjp(layer, theta, V, D, lam, lam_V, transpose: bool):
    """:meth:`ocdl.Layer.step_vjp` fused: ``(lam_V + (D lam) A^T, gradient)``, or ``None``."""
    plan = _plan(layer, theta, V, (D, lam, lam_V), transpose)
    if plan is None:
        return None
    xp = plan.xp
    V, D, lam, lam_V = _contiguous(xp, V, D, lam, lam_V)
    theta_K = theta[:-1]
    A = plan.explicit(theta_K)
    out = step_empty(V)
    has_lam_V, lam_V_ = _flag(lam_V), (out if lam_V is None else lam_V)
    s = V.shape[0]
    if plan.kind == "stencil":
        step_sizes = plan.stencil_sizes(transpose)
        _, H, W = plan.geometry(V)
        launch(plan.conv("conv_cotangent", not transpose), out.size // step_sizes["C_FROM"],
               (D, lam, A, lam_V_, out, np.int64(s), H, W, has_lam_V))
        c_from, c_to = step_sizes["C_FROM"], step_sizes["C_TO"]
        rows = partial_blocks(s * int(H) * int(W), 32)
        partials = xp.empty((rows, A.size + c_to), dtype=plan.dtype)
        groups = -(-c_from * c_to // (BLOCK // 32))
        plan.conv("conv_gradient", transpose)((groups, rows), (BLOCK,), (D, lam, V, partials, np.int64(s), H, W))
        sums = partials.sum(axis=0)
        g = xp.concatenate((sums[: A.size], sums[A.size :].sum(keepdims=True)))
    elif plan.small():
        launch(plan.dense("dense_cotangent"), out.size, (A, D, lam, lam_V_, out, np.int64(s), has_lam_V))
        blocks = partial_blocks(s, _DENSE_ROWS)
        partials = xp.empty((blocks, A.size + 1), dtype=plan.dtype)
        plan.dense("dense_gradient")((blocks,), (BLOCK,), (V, D, lam, partials, np.int64(s)))
        g = partials.sum(axis=0)
    else:
        G = xp.multiply(D, lam)
        xp.matmul(G, A if transpose else A.T, out=out)
        if lam_V is not None:
            xp.add(out, lam_V, out=out)
        g = xp.empty(A.size + 1, dtype=plan.dtype)
        gA = g[:-1].reshape(A.shape)
        xp.matmul(G.T, V, out=gA) if transpose else xp.matmul(V.T, G, out=gA)
        G.sum(out=g[-1:].reshape(()))
    return out, plan.gradient(theta_K, A, g)
