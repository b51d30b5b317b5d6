"""ResNet: forward Euler on :math:`\\dot Y = \\sigma(Y K + b)`."""

from __future__ import annotations

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

    def step(self, state, theta, h):
        (Y,) = state
        A, dA = self.layer.forward(theta, Y)
        return (Y + h * A,), dA

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y,), (dY,) = state, dstate
        return (dY + h * self.layer.jvp(theta, Y, cache, dY, dtheta),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,) = state, lam
        gY, gtheta = self.layer.vjp(theta, Y, cache, L)
        return (L + h * gY,), h * gtheta
