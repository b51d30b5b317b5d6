"""Classical fourth-order Runge-Kutta, for comparison with the paper's schemes."""

from __future__ import annotations

from .._workspace import step_empty
from ..backend import get_array_module
from ..kernels import sweeps
from ..stability import layer_growth_diagnosis
from .base import LayerStepper


class RK4(LayerStepper):
    r"""Classical RK4 on :math:`\dot Y = \sigma(Y K + b)` with :math:`\theta_j` held over the step:

    .. math::

       k_1 = F(Y_j),\; k_2 = F(Y_j + \tfrac h2 k_1),\; k_3 = F(Y_j + \tfrac h2 k_2),\;
       k_4 = F(Y_j + h k_3), \quad
       Y_{j+1} = Y_j + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4),

    :math:`F(Y) = \sigma(Y K_j + b_j)`. Computed as four layer steps
    :math:`X + c\,F(V)` (:meth:`ocdl.Layer.step`) through the stages
    :math:`U_1 = Y_j + \tfrac h2 F(Y_j)`, :math:`U_2 = Y_j + \tfrac h2 F(U_1)`,
    :math:`U_3 = Y_j + h F(U_2)`: since :math:`h k_1 = 2(U_1 - Y_j)`,
    :math:`h k_2 = 2(U_2 - Y_j)` and :math:`h k_3 = U_3 - Y_j`,

    .. math::  Y_{j+1} = \tfrac13 (U_1 + 2 U_2 + U_3 - Y_j) + \tfrac h6 F(U_3),

    the same map, each stage one fused step whose cache :math:`D_i = c_i
    \sigma'` holds its factor :math:`c = (\tfrac h2, \tfrac h2, h, \tfrac h6)`.
    The linearisation runs the four steps' tangents forward; the transpose
    runs their transposes backward, the cotangent :math:`\lambda` of
    :math:`Y_{j+1}` reaching :math:`U_3, U_2, U_1, Y_j` also through the
    combination (weights :math:`\tfrac13, \tfrac23, \tfrac13, -\tfrac13`).
    """

    def _factors(self, h):
        return (0.5 * h, 0.5 * h, h, h / 6)

    def _combination(self, Y, U1, U2, U3):
        """``(U1 + 2 U2 + U3 - Y) / 3``, into a temporary (the last step's ``X``, not kept)."""
        xp = get_array_module(Y)
        X = step_empty(Y)
        xp.multiply(U2, 2, out=X)
        X += U1
        X += U3
        X -= Y
        X /= 3
        return X

    def step(self, state, theta, h):
        (Y,) = state
        c = self._factors(h)
        U1, D0 = self.layer.step(theta, Y, Y, c[0])
        U2, D1 = self.layer.step(theta, U1, Y, c[1])
        U3, D2 = self.layer.step(theta, U2, Y, c[2])
        Y_next, D3 = self.layer.step(theta, U3, self._combination(Y, U1, U2, U3), c[3])
        return (Y_next,), ((U1, U2, U3), (D0, D1, D2, D3))

    def advance(self, state, theta, h):
        (Y,) = state
        c = self._factors(h)
        U1 = self.layer.step(theta, Y, Y, c[0], derivative=False)[0]
        U2 = self.layer.step(theta, U1, Y, c[1], derivative=False)[0]
        U3 = self.layer.step(theta, U2, Y, c[2], derivative=False)[0]
        return (self.layer.step(theta, U3, self._combination(Y, U1, U2, U3), c[3], derivative=False)[0],)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y,), (dY,) = state, dstate
        (U1, U2, U3), (D0, D1, D2, D3) = cache
        dU1 = self.layer.step_jvp(theta, Y, D0, dY, dtheta, dY)
        dU2 = self.layer.step_jvp(theta, U1, D1, dU1, dtheta, dY)
        dU3 = self.layer.step_jvp(theta, U2, D2, dU2, dtheta, dY)
        return (self.layer.step_jvp(theta, U3, D3, dU3, dtheta, self._combination(dY, dU1, dU2, dU3)),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,) = state, lam
        (U1, U2, U3), (D0, D1, D2, D3) = cache
        third = L / 3
        lam_U3, gtheta = self.layer.step_vjp(theta, U3, D3, L, third)
        lam_U2, g = self.layer.step_vjp(theta, U2, D2, lam_U3, 2 * third)
        gtheta += g
        lam_U1, g = self.layer.step_vjp(theta, U1, D1, lam_U2, third)
        gtheta += g
        # Y reaches every stage (X = Y) and the combination (-1/3)
        lam_Y = lam_U1 + lam_U2
        lam_Y += lam_U3
        lam_Y -= third
        lam_Y, g = self.layer.step_vjp(theta, Y, D0, lam_U1, lam_Y)
        gtheta += g
        return (lam_Y,), gtheta

    def sweep(self, theta_steps, h, state0, store=True):
        """On the GPU, with a small matrix, the whole sweep in one kernel (:func:`ocdl.kernels.sweeps.rk4`)."""
        return sweeps.rk4(self.layer, theta_steps, h, state0[0], store) if self._steps_as(RK4) else None

    def diagnose(self, state, theta, h):
        r""":math:`\max \operatorname{Re}\lambda` of the force's Jacobian at the step's input (positive:
        :math:`\dot Y = F(Y)` itself grows;
        :func:`~ocdl.stability.layer_growth_diagnosis`), then the default advice."""
        growth = layer_growth_diagnosis(self.layer, theta, self.output(state))
        return " ".join(filter(None, (growth, super().diagnose(state, theta, h))))
