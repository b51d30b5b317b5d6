"""Leapfrog: the second-order network of the paper's eq. (4.16)."""

from __future__ import annotations

from ..kernels import sweeps
from ..stability import second_order_growth_diagnosis
from .base import LayerStepper


class Leapfrog(LayerStepper):
    r"""Leapfrog on :math:`\ddot Y = \sigma(Y K + b)`:

    .. math::  Y_{j+1} = 2 Y_j - Y_{j-1} + h^2 \sigma(Y_j K_j + b_j),

    with state :math:`x_j = (Y_j, Y_{j-1})`. The first step reads
    :math:`Y_{-1} = Y_0` (zero initial velocity), so
    :math:`Y_1 = Y_0 + h^2 \sigma(Y_0 K_0 + b_0)`, the paper's reading. The exact
    solution at rest has :math:`Y(h) = Y_0 + \tfrac{h^2}{2}\sigma(\cdot) + O(h^3)`:
    the start is an :math:`O(h)` error in the velocity, so the network is
    first-order accurate in :math:`h` (measured against ``solve_ivp``:
    order 1.00), although each interior step is second order. The scheme is
    time-reversible: :math:`Y_{j-1} = 2 Y_j - Y_{j+1} + h^2 \sigma(Y_j K_j + b_j)`.

    Transposed step, with :math:`\lambda_{j+1} = (L, L')`:
    :math:`\lambda_{Y_j} = 2L + L' + h^2 F'_Y{}^T L`,
    :math:`\lambda_{Y_{j-1}} = -L`, :math:`g_j = h^2 F'_\theta{}^T L`.
    """

    reversible = True

    def init(self, Y0):
        return (Y0, Y0)

    def init_vjp(self, lam):
        return lam[0] + lam[1]

    # Each step is the layer step Y + h^2 sigma(Y K + b) (Layer.step, its cache
    # D = h^2 sigma') plus Y - Y_prev, added in place: no temporary.
    def step(self, state, theta, h):
        Y, Y_prev = state
        Y_next, D = self.layer.step(theta, Y, Y, h * h)
        Y_next += Y
        Y_next -= Y_prev
        return (Y_next, Y), D

    def advance(self, state, theta, h):
        Y, Y_prev = state
        Y_next = self.layer.step(theta, Y, Y, h * h, derivative=False)[0]
        Y_next += Y
        Y_next -= Y_prev
        return (Y_next, Y)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        Y, _ = state
        dY, dY_prev = dstate
        dY_next = self.layer.step_jvp(theta, Y, cache, dY, dtheta, dY)
        dY_next += dY
        dY_next -= dY_prev
        return (dY_next, dY)

    def step_vjp(self, state, theta, h, lam, cache):
        Y, _ = state
        L, L_prev = lam
        lam_Y, gtheta = self.layer.step_vjp(theta, Y, cache, L, L)
        lam_Y += L
        lam_Y += L_prev
        return (lam_Y, -L), gtheta

    def sweep(self, theta_steps, h, state0, store=True):
        """On the GPU, with a small matrix, the whole sweep in one kernel (:func:`ocdl.kernels.sweeps.leapfrog`)."""
        return sweeps.leapfrog(self.layer, theta_steps, h, state0, store) if self._steps_as(Leapfrog) else None

    def reverse_step(self, state_next, theta, h):
        Y_next, Y = state_next
        Y_prev, D = self.layer.step(theta, Y, Y, h * h)
        Y_prev -= Y_next
        Y_prev += Y
        return (Y, Y_prev), D

    def diagnose(self, state, theta, h):
        r""":math:`\max \operatorname{Re}\sqrt\lambda` of the force's Jacobian at the step's input (positive:
        :math:`\ddot Y = F(Y)` itself grows, as it does unless every :math:`\lambda` is real and :math:`\le 0`),
        else :math:`\max h^2|\lambda|` against leapfrog's bound 4
        (:func:`~ocdl.stability.second_order_growth_diagnosis`), then the default advice."""
        growth = second_order_growth_diagnosis(self.layer, theta, self.output(state), h)
        return " ".join(filter(None, (growth, super().diagnose(state, theta, h))))
