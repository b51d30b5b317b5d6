r"""The layer :math:`\sigma(Y K(\theta) + b)` of the paper's eq. (2.1), with its linearisation."""

from __future__ import annotations

from typing import Any

from ._workspace import step_empty
from .activations import Activation, get_activation
from .backend import get_array_module
from .parallel import row_blocks
from .transforms import Transform


class Layer:
    r"""One layer :math:`F(\theta, Y) = \sigma(Y K(\theta_K) + b)` with a scalar bias :math:`b`.

    The parameter vector of the layer is :math:`\theta = (\theta_K, b)`:
    the transform's parameters followed by the bias. With ``transpose=True``
    every method uses :math:`K^T` instead of :math:`K` (the second half-step
    of the Verlet network, eq. 4.17).

    Linearisation, with :math:`D = \operatorname{diag}(\sigma'(Y K + b))`
    (the ``dA`` returned by :meth:`forward`):

    .. math::

       F'[dY, d\theta] = \sigma' \odot (dY\, K + Y\, K'[d\theta_K] + db), \qquad
       F'^T[W] = \big( (\sigma' \odot W) K^T,\;
       (\nabla_{\theta_K}\langle Y K, \sigma'\odot W\rangle,\ \textstyle\sum \sigma' \odot W) \big).
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

    def forward(self, theta: Any, Y: Any, transpose: bool = False) -> tuple[Any, Any]:
        """Return ``(sigma(Y K + b), sigma'(Y K + b))``."""
        theta_K, b = self.split(theta)
        KY = self.transform.apply_transpose(theta_K, Y) if transpose else self.transform.apply(theta_K, Y)
        return self.activation.value_and_derivative(KY + b)

    def __call__(self, theta: Any, Y: Any, transpose: bool = False) -> Any:
        return self.forward(theta, Y, transpose)[0]

    def jvp(self, theta: Any, Y: Any, dA: Any, dY: Any, dtheta: Any, transpose: bool = False) -> Any:
        """:math:`\\sigma' \\odot (dY K + Y K'[d\\theta_K] + db)`; ``dA`` is ``sigma'`` from :meth:`forward`."""
        theta_K, _ = self.split(theta)
        dtheta_K, db = self.split(dtheta)
        return dA * (self.transform.tangent(theta_K, Y, dY, dtheta_K, transpose) + db)

    def vjp(self, theta: Any, Y: Any, dA: Any, W: Any, transpose: bool = False) -> tuple[Any, Any]:
        """Adjoint of :meth:`jvp`: ``(gY, gtheta)`` with ``gtheta = (gtheta_K, gb)``."""
        xp = get_array_module(Y, W)
        theta_K, _ = self.split(theta)
        G = dA * W
        gY, g_K = self.transform.cotangent(theta_K, Y, G, transpose)
        return gY, xp.concatenate([g_K, G.sum().reshape(1)])

    # -- fused kernels of a time step (for the steppers; private) ----------
    # A step X + c F(V) stores D = c sigma' instead of sigma', which folds the
    # step size into the cache for free; every derivative below is the one of
    # jvp / vjp above, scaled by c. Each kernel runs the whole step, products
    # and elementwise passes, on one row block at a time (ocdl.parallel.row_blocks).
    def _step(
        self, theta: Any, V: Any, X: Any, c: float, transpose: bool = False, derivative: bool = True
    ) -> tuple[Any, Any]:
        """``(X + c F(theta, V), D)`` with ``D = c sigma'(V K + b)``; both new arrays of ``X``'s shape.

        The two are allocated by :func:`~ocdl._workspace.step_empty` (owned by
        the sweep running the step, if any) and filled block by block. With
        ``derivative=False`` ``D`` is ``None`` and its passes are skipped
        (a step whose cache nobody keeps, :meth:`ocdl.steppers.Stepper.advance`).
        """
        theta_K, b = theta[:-1], theta[-1:].reshape(())  # a 0-d bias broadcasts fastest
        product_blocks = self.transform._apply_blocks
        axpy = self.activation._axpy_into
        out = step_empty(X)
        D = step_empty(X) if derivative else None

        def kernel(v, x, o, d):
            def consume(rows, z):
                axpy(z, b, c, x[rows], o[rows], None if d is None else d[rows])

            product_blocks(theta_K, v, consume, transpose)

        row_blocks(kernel, V, X, out, D)
        return out, D

    def _step_jvp(
        self, theta: Any, V: Any, D: Any, dV: Any, dtheta: Any, dX: Any, transpose: bool = False
    ) -> Any:
        """``dX + D * (dV K + V K'[dtheta_K] + db)``: the tangent of :meth:`_step`."""
        xp = get_array_module(V, dV)
        theta_K, dtheta_K, db = theta[:-1], dtheta[:-1], dtheta[-1:].reshape(())
        tangent = self.transform.tangent
        out = step_empty(dX)

        def kernel(v, dv, d, x, o):
            tangent(theta_K, v, dv, dtheta_K, transpose, out=o)
            xp.add(o, db, out=o)
            xp.multiply(o, d, out=o)
            xp.add(o, x, out=o)

        row_blocks(kernel, V, dV, D, dX, out)
        return out

    def _step_vjp(
        self, theta: Any, V: Any, D: Any, W: Any, X: Any, transpose: bool = False
    ) -> tuple[Any, Any]:
        """``(X + G K^T, (grad_K <V K, G>, sum G))`` with ``G = D * W``: the transpose of :meth:`_step`.

        With ``transpose`` the products use :math:`K^T` (``X + G K``). The
        parameter gradient is a sum over rows: each block adds its share.
        """
        xp = get_array_module(V, W)
        theta_K = theta[:-1]
        cotangent = self.transform.cotangent
        out = step_empty(X)

        def kernel(v, d, w, x, o):
            G = step_empty(w)
            xp.multiply(d, w, out=G)
            gV, g_K = cotangent(theta_K, v, G, transpose)
            xp.add(gV, x, out=o)
            return g_K, G.sum()

        shares = row_blocks(kernel, V, D, W, X, out)
        gtheta = xp.empty(self.n_params, dtype=shares[0][0].dtype)
        gtheta[:-1] = sum(g_K for g_K, _ in shares)
        gtheta[-1] = sum(g_b for _, g_b in shares)
        return out, gtheta

    def __repr__(self) -> str:
        return f"Layer({self.transform!r}, {self.activation!r})"
