"""ResNet: forward Euler on :math:`\\dot Y = \\sigma(Y K + b)`."""

from __future__ import annotations

from ..kernels import sweeps
from ..stability import layer_growth_diagnosis
from ..transforms import Antisymmetric
from .base import LayerStepper


class ResNet(LayerStepper):
    r"""Forward Euler, the residual network of the paper's eq. (2.1):

    .. math::  Y_{j+1} = Y_j + h\,\sigma(Y_j K_j + b_j).

    With an :class:`~ocdl.transforms.Antisymmetric` transform this is the
    antisymmetric ResNet of eq. (4.12). Linearisation:
    :math:`dY_{j+1} = dY_j + h F'[dY_j, d\theta_j]`, and its transpose
    :math:`\lambda_j = \lambda_{j+1} + h F'_Y{}^T\lambda_{j+1}`,
    :math:`g_j = h F'_\theta{}^T \lambda_{j+1}`.
    """

    # The cache is D = h sigma'(Y K + b): Layer.step folds h into it, so that
    # the tangent and adjoint below need no extra pass to scale by h.
    def step(self, state, theta, h):
        (Y,) = state
        Y_next, D = self.layer.step(theta, Y, Y, h)
        return (Y_next,), D

    def advance(self, state, theta, h):
        (Y,) = state
        return (self.layer.step(theta, Y, Y, h, derivative=False)[0],)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y,), (dY,) = state, dstate
        return (self.layer.step_jvp(theta, Y, cache, dY, dtheta, dY),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,) = state, lam
        L_prev, gtheta = self.layer.step_vjp(theta, Y, cache, L, L)
        return (L_prev,), gtheta

    def sweep(self, theta_steps, h, state0, store=True):
        """On the GPU, with a small matrix, the whole sweep in one kernel (:func:`ocdl.kernels.sweeps.resnet`)."""
        return sweeps.resnet(self.layer, theta_steps, h, state0[0], store) if self._steps_as(ResNet) else None

    def diagnose(self, state, theta, h):
        r"""The forward Euler factor :math:`\max|1 + h\lambda|` (eq. 3.9) and :math:`\max \operatorname{Re}\lambda`
        of the layer Jacobian at the step's input (:func:`~ocdl.stability.layer_growth_diagnosis`), and the
        advice to use a smaller step or a stable stepper."""
        stable = "verlet" if isinstance(self.layer.transform, Antisymmetric) else "antisymmetric, verlet"
        advice = (f"Use a smaller step (more steps or a smaller final_time), smaller weights or, where the layer "
                  f"itself grows, a stable stepper ({stable}).")
        return " ".join(filter(None, (layer_growth_diagnosis(self.layer, theta, self.output(state), h), advice)))
