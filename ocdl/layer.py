r"""The layer :math:`\sigma(Y K(\theta) + b)` of the paper's eq. (2.1), as the step every layer stepper takes."""

from __future__ import annotations

from typing import Any

from ._threads import row_blocks
from ._workspace import step_empty
from .activations import Activation, get_activation
from .backend import get_array_module
from .kernels import layer_steps
from .transforms import Transform


class Layer:
    r"""One layer :math:`F(\theta, V) = \sigma(V K(\theta_K) + b)` with a scalar bias :math:`b`, and the
    step :math:`X + c\,F(\theta, V)` built on it.

    The parameter vector of the layer is :math:`\theta = (\theta_K, b)`:
    the transform's parameters followed by the bias. With ``transpose=True``
    every method uses :math:`K^T` instead of :math:`K` (the second half-step
    of the Verlet network, eq. 4.17).

    Every layer stepper is made of steps

    .. math::

       X_+ = X + c\,\sigma(V K + b), \qquad D = c\,\sigma'(V K + b),

    (:meth:`step`; ResNet: :math:`V = X = Y_j`, :math:`c = h`; Verlet's
    half-steps; Leapfrog's :math:`c = h^2`; RK4's four stages), with the
    tangent (:meth:`step_jvp`) and the transpose (:meth:`step_vjp`)

    .. math::

       dX_+ = dX + D \odot (dV\, K + V K'[d\theta_K] + db), \qquad
       \big(\lambda_V + (D \odot \lambda) K^T,\;
       (\nabla_{\theta_K}\langle V K, D \odot \lambda\rangle,\ \textstyle\sum D \odot \lambda)\big).

    The cache :math:`D` holds the step size, so the derivatives need no pass
    to scale by :math:`c`. Each method runs the whole step (the product with
    :math:`K` and the elementwise passes) on one block of rows at a time,
    large states on several threads. ``X = None`` stands for zero (then
    :meth:`step` returns :math:`c F` and :math:`c\sigma'`: with :math:`c = 1`
    the layer's value and derivative), and so do ``dX`` and ``lam_V``.

    On CuPy arrays each method is one to three fused CUDA kernels where the
    transform has an explicit form and the activation CUDA source
    (:mod:`ocdl.kernels`; :func:`ocdl.kernels.fused` switches them off).
    """

    def __init__(self, transform: Transform, activation: str | Activation = "tanh") -> None:
        if not isinstance(transform, Transform):
            raise TypeError(f"transform must be an ocdl Transform, got {type(transform).__name__}")
        self.transform = transform
        self.activation = get_activation(activation)
        self.n_params = transform.n_params + 1

    def split(self, theta: Any) -> tuple[Any, Any]:
        """``(theta_K, b)`` with ``b`` a length-1 array (it stays on the device)."""
        return theta[:-1], theta[-1:]

    def step(
        self, theta: Any, V: Any, X: Any, c: float, transpose: bool = False, derivative: bool = True
    ) -> tuple[Any, Any]:
        r"""``(X + c sigma(V K + b), D)`` with ``D = c sigma'(V K + b)``.

        Parameters
        ----------
        theta : the layer's parameters :math:`(\theta_K, b)`, ``n_params`` entries.
        V : ``s x n_in`` (``s x n_out`` with ``transpose``): the rows the layer acts on.
        X : ``s x n_out`` (``s x n_in`` with ``transpose``), or ``None`` for zero.
        c : the step's factor (``h``, ``-h``, ``h**2``, ...).
        transpose : use :math:`K^T` instead of :math:`K`.
        derivative : with ``False``, ``D`` is ``None`` and its passes are
            skipped (a step whose cache nobody keeps,
            :meth:`ocdl.steppers.Stepper.advance`).

        Returns
        -------
        The next ``X`` and ``D``, new arrays of shape ``(s, n_out)`` (``(s, n_in)``
        with ``transpose``), allocated by
        :func:`~ocdl._workspace.step_empty` (owned by the sweep running the
        step, if any) and filled block by block.
        """
        fused = layer_steps.step(self, theta, V, X, c, transpose, derivative)
        if fused is not None:
            return fused
        theta_K, b = theta[:-1], theta[-1:].reshape(())  # a 0-d bias broadcasts fastest
        product_blocks = self.transform._apply_blocks
        axpy = self.activation._axpy_into
        shape = (V.shape[0], self.transform.n_in if transpose else self.transform.n_out)
        out = step_empty(V, shape)
        D = step_empty(V, shape) if derivative else None

        def kernel(v, x, o, d):
            def consume(rows, z):
                axpy(z, b, c, None if x is None else x[rows], o[rows], None if d is None else d[rows])

            product_blocks(theta_K, v, consume, transpose)

        row_blocks(kernel, V, X, out, D)
        return out, D

    def step_jvp(
        self, theta: Any, V: Any, D: Any, dV: Any, dtheta: Any, dX: Any, transpose: bool = False
    ) -> Any:
        r"""The tangent of :meth:`step`: :math:`dX + D \odot (dV K + V K'[d\theta_K] + db)`.

        ``D`` is the cache :meth:`step` returned at ``V``; ``dX`` may be ``None`` (zero).
        Returns a new array of ``D``'s shape.
        """
        fused = layer_steps.step_jvp(self, theta, V, D, dV, dtheta, dX, transpose)
        if fused is not None:
            return fused
        xp = get_array_module(V, dV)
        theta_K, dtheta_K, db = theta[:-1], dtheta[:-1], dtheta[-1:].reshape(())
        tangent = self.transform.tangent
        out = step_empty(D)

        def kernel(v, dv, d, x, o):
            tangent(theta_K, v, dv, dtheta_K, transpose, out=o)
            xp.add(o, db, out=o)
            xp.multiply(o, d, out=o)
            if x is not None:
                xp.add(o, x, out=o)

        row_blocks(kernel, V, dV, D, dX, out)
        return out

    def step_vjp(
        self, theta: Any, V: Any, D: Any, lam: Any, lam_V: Any, transpose: bool = False
    ) -> tuple[Any, Any]:
        r"""The transpose of :meth:`step`'s linearisation, at the cotangent ``lam`` of its output.

        Returns :math:`\big(\lambda_V + G K^T,\ (\nabla_{\theta_K}\langle V K, G\rangle,\ \sum G)\big)`
        with :math:`G = D \odot \lambda` (:math:`\lambda_V + G K` and
        :math:`\nabla_{\theta_K}\langle V K^T, G\rangle` with ``transpose``):
        the cotangent of ``V``, added to ``lam_V`` (what reaches ``V`` by other
        paths, e.g. ``lam`` itself through ResNet's :math:`X = V`; ``None`` for
        none), and the parameter gradient. The cotangent of ``X`` is ``lam``
        itself. The parameter gradient is a sum over rows: each block adds its share.
        """
        fused = layer_steps.step_vjp(self, theta, V, D, lam, lam_V, transpose)
        if fused is not None:
            return fused
        xp = get_array_module(V, lam)
        theta_K = theta[:-1]
        cotangent = self.transform.cotangent
        out = step_empty(V)

        def kernel(v, d, lam_rows, x, o):
            G = step_empty(lam_rows)
            xp.multiply(d, lam_rows, out=G)
            gV, g_K = cotangent(theta_K, v, G, transpose)
            if x is None:
                o[...] = gV
            else:
                xp.add(gV, x, out=o)
            return g_K, G.sum()

        shares = row_blocks(kernel, V, D, lam, lam_V, out)
        gtheta = xp.empty(self.n_params, dtype=shares[0][0].dtype)
        gtheta[:-1] = sum(g_K for g_K, _ in shares)
        gtheta[-1] = sum(g_b for _, g_b in shares)
        return out, gtheta

    def __repr__(self) -> str:
        return f"Layer({self.transform!r}, {self.activation!r})"
