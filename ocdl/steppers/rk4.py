"""Classical fourth-order Runge-Kutta, for comparison with the paper's schemes."""

from __future__ import annotations

from ..stability import layer_growth_diagnosis
from .base import LayerStepper

_STAGE_SHIFT = (0.5, 0.5, 1.0)  # Y_{i+1} = Y + c_i h k_i
_WEIGHTS = (1 / 6, 2 / 6, 2 / 6, 1 / 6)


class RK4(LayerStepper):
    r"""Classical RK4 on :math:`\dot Y = \sigma(Y K + b)` with :math:`\theta_j` held over the step:

    .. math::

       k_1 = F(Y_j),\; k_2 = F(Y_j + \tfrac h2 k_1),\; k_3 = F(Y_j + \tfrac h2 k_2),\;
       k_4 = F(Y_j + h k_3), \quad
       Y_{j+1} = Y_j + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4),

    :math:`F(Y) = \sigma(Y K_j + b_j)`. The linearisation runs the stages
    forward with their tangents; the transpose runs them backward, each stage
    adjoint collecting :math:`\tfrac{h}{6}w_i\lambda` plus the pull-back of the
    next stage.
    """

    def step(self, state, theta, h):
        (Y,) = state
        stages, dAs, ks = [Y], [], []
        for i in range(4):
            k, dA = self.layer.forward(theta, stages[i])
            ks.append(k)
            dAs.append(dA)
            if i < 3:
                stages.append(Y + _STAGE_SHIFT[i] * h * k)
        increment = sum(w * k for w, k in zip(_WEIGHTS, ks))
        return (Y + h * increment,), (stages, dAs)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (dY,) = dstate
        stages, dAs = cache
        dstage, total = dY, 0
        for i in range(4):
            dk = self.layer.jvp(theta, stages[i], dAs[i], dstage, dtheta)
            total = total + _WEIGHTS[i] * dk
            if i < 3:
                dstage = dY + _STAGE_SHIFT[i] * h * dk
        return (dY + h * total,)

    def step_vjp(self, state, theta, h, lam, cache):
        (L,) = lam
        stages, dAs = cache
        lam_Y, gtheta, pulled = L, 0, 0
        for i in reversed(range(4)):
            a = h * _WEIGHTS[i] * L + pulled
            gY, g = self.layer.vjp(theta, stages[i], dAs[i], a)
            lam_Y = lam_Y + gY
            gtheta = gtheta + g
            if i > 0:
                pulled = _STAGE_SHIFT[i - 1] * h * gY
        return (lam_Y,), gtheta

    def diagnose(self, state, theta, h):
        r""":math:`\max \operatorname{Re}\lambda` of the force's Jacobian at the step's input (positive:
        :math:`\dot Y = F(Y)` itself grows;
        :func:`~ocdl.stability.layer_growth_diagnosis`), then the default advice."""
        growth = layer_growth_diagnosis(self.layer, theta, self.output(state))
        return " ".join(filter(None, (growth, super().diagnose(state, theta, h))))
