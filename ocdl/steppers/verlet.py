"""Verlet integration of the Hamiltonian network, the paper's eqs. (4.15) and (4.17)."""

from __future__ import annotations

from ..backend import get_array_module
from ..kernels import sweeps
from .base import LayerStepper


class Verlet(LayerStepper):
    r"""Verlet steps for :math:`\dot Y = \sigma(Z K^T + b)`, :math:`\dot Z = -\sigma(Y K + b)`.

    In row convention with :math:`K_j` of size ``n x m`` (a transform from
    width ``n`` to width ``m``):

    .. math::

       Z_{j+1/2} = Z_{j-1/2} - h\,\sigma(Y_j K_j + b_j), \qquad
       Y_{j+1} = Y_j + h\,\sigma(Z_{j+1/2} K_j^T + b_j),

    from :math:`Z_{-1/2} = 0` (the paper's reading; for :math:`Z(0) = 0` the exact
    :math:`Z(-h/2)` is :math:`\tfrac h2 \sigma(Y_0 K_0 + b_0) + O(h^2)`, so the
    network is first-order accurate in :math:`h`, measured order 1.00,
    although each interior step is second order); the state is :math:`x_j = (Y_j, Z_{j-1/2})` and
    the output :math:`Y_N`. Each half-step is a shear, so the step preserves
    volume (its Jacobian has determinant 1) and is exactly invertible
    (:meth:`reverse_step`). It is symplectic only where the two forces derive from
    one Hamiltonian, e.g. the identity activation with a symmetric square
    :math:`K_j` (measured :math:`\max |M^T J M - J| = 10^{-16}` for the step's
    Jacobian :math:`M`, one step of 2 features), not in general: 0.23 for a random
    :math:`K_j`, 0.21 with tanh; "Hamiltonian network" is the paper's name for the structure of the system.

    Transposed step, with :math:`\lambda_{j+1} = (L_Y, L_Z)`:
    :math:`\Lambda = L_Z + h F'^{T}_{Z}[L_Y]` (through the second half-step),
    :math:`\lambda_{Y_j} = L_Y - h F'^{T}_{Y}[\Lambda]`, :math:`\lambda_{Z_j} = \Lambda`,
    :math:`g_j = h F'^{T}_{\theta,2}[L_Y] - h F'^{T}_{\theta,1}[\Lambda]`.
    """

    square = False

    reversible = True

    def init(self, Y0):
        xp = get_array_module(Y0)
        return (Y0, xp.zeros((Y0.shape[0], self.layer.transform.n_out), dtype=Y0.dtype))

    # The cache is (Z_{j+1/2}, D1, D2) with D1 = -h sigma'(Y K + b) and
    # D2 = h sigma'(Z_{j+1/2} K^T + b): Layer.step folds the signed step
    # size into the derivatives, so that the products need no scaling pass.
    def step(self, state, theta, h):
        Y, Z = state
        Z_next, D1 = self.layer.step(theta, Y, Z, -h)
        Y_next, D2 = self.layer.step(theta, Z_next, Y, h, transpose=True)
        return (Y_next, Z_next), (Z_next, D1, D2)

    def advance(self, state, theta, h):
        Y, Z = state
        Z_next = self.layer.step(theta, Y, Z, -h, derivative=False)[0]
        return (self.layer.step(theta, Z_next, Y, h, transpose=True, derivative=False)[0], Z_next)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        Y, _ = state
        dY, dZ = dstate
        Z_next, D1, D2 = cache
        dZ_next = self.layer.step_jvp(theta, Y, D1, dY, dtheta, dZ)
        dY_next = self.layer.step_jvp(theta, Z_next, D2, dZ_next, dtheta, dY, transpose=True)
        return (dY_next, dZ_next)

    def step_vjp(self, state, theta, h, lam, cache):
        Y, _ = state
        L_Y, L_Z = lam
        Z_next, D1, D2 = cache
        Lam, gtheta2 = self.layer.step_vjp(theta, Z_next, D2, L_Y, L_Z, transpose=True)
        L_Y_prev, gtheta1 = self.layer.step_vjp(theta, Y, D1, Lam, L_Y)
        gtheta2 += gtheta1
        return (L_Y_prev, Lam), gtheta2

    def sweep(self, theta_steps, h, state0, store=True):
        """On the GPU, with a small matrix, the whole sweep in one kernel (:func:`ocdl.kernels.sweeps.verlet`)."""
        return sweeps.verlet(self.layer, theta_steps, h, state0, store) if self._steps_as(Verlet) else None

    def reverse_step(self, state_next, theta, h):
        # the half-steps undone in reverse order, each a layer step with -c; its D is -1 times step's
        xp = get_array_module(*state_next)
        Y_next, Z_next = state_next
        Y, D2 = self.layer.step(theta, Z_next, Y_next, -h, transpose=True)
        Z, D1 = self.layer.step(theta, Y, Z_next, h)
        return (Y, Z), (Z_next, xp.negative(D1, out=D1), xp.negative(D2, out=D2))
