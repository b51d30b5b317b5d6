r"""The linear transform :math:`K(\theta)` of a layer, acting on rows.

A transform maps features ``Y`` (``s x n_in``, one example per row) to
``Y K(theta)`` (``s x n_out``) and gives

* ``apply(theta, Y)`` :math:`= Y K(\theta)`,
* ``apply_transpose(theta, Z)`` :math:`= Z K(\theta)^T`,
* ``jvp(theta, Y, dtheta)`` :math:`= Y\, K'(\theta)[d\theta]`,
* ``vjp(theta, Y, W)`` :math:`= \nabla_\theta \langle Y K(\theta), W\rangle`,
* ``transpose_jvp(theta, Z, dtheta)`` :math:`= Z\, K'(\theta)[d\theta]^T`,
* ``transpose_vjp(theta, Z, W)`` :math:`= \nabla_\theta \langle Z K(\theta)^T, W\rangle`.

For a transform linear in its parameters, :math:`K'(\theta)[d\theta] =
K(d\theta)`, so the defaults below derive the ``jvp`` methods from ``apply``.
Since :math:`\langle Z K^T, W\rangle = \langle W K, Z\rangle`, the default
``transpose_vjp`` is ``vjp`` with the two arguments exchanged. A subclass
linear in :math:`\theta` implements ``apply``, ``apply_transpose`` and
``vjp``; a nonlinear one overrides the ``jvp`` methods too.

Each example is transformed alone: row ``i`` of ``apply(theta, Y)`` depends
only on row ``i`` of ``Y``, so ``apply(theta, Y[rows]) == apply(theta,
Y)[rows]``, and ``vjp`` is a sum over the rows. The step kernels rely on it
to run large states in row blocks on several threads (:mod:`ocdl.parallel`);
:func:`ocdl.check_stepper` checks it ("rows step alone").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module


class Transform:
    """Base class of layer transforms; see the module docstring for the contract."""

    n_in: int
    n_out: int
    n_params: int
    param_shape: tuple[int, ...]
    linear_in_params = True

    def apply(self, theta: Any, Y: Any) -> Any:
        raise NotImplementedError

    def apply_transpose(self, theta: Any, Z: Any) -> Any:
        raise NotImplementedError

    def vjp(self, theta: Any, Y: Any, W: Any) -> Any:
        raise NotImplementedError

    def jvp(self, theta: Any, Y: Any, dtheta: Any) -> Any:
        return self.apply(dtheta, Y)

    def transpose_jvp(self, theta: Any, Z: Any, dtheta: Any) -> Any:
        return self.apply_transpose(dtheta, Z)

    def transpose_vjp(self, theta: Any, Z: Any, W: Any) -> Any:
        return self.vjp(theta, W, Z)

    def matrix(self, theta: Any) -> Any:
        """The ``n_in x n_out`` matrix :math:`K(\\theta)` (``I K``; for small transforms)."""
        xp = get_array_module(theta)
        return self.apply(theta, xp.eye(self.n_in, dtype=theta.dtype))

    def init_params(self, rng: np.random.Generator, scale: float = 1.0, dtype=np.float64) -> np.ndarray:
        """Random parameters with standard deviation ``scale / sqrt(fan-in)``."""
        return (scale / np.sqrt(self.n_in) * rng.standard_normal(self.n_params)).astype(dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_in={self.n_in}, n_out={self.n_out})"
