r"""Sweeps over chunks of the examples and the data terms summed over them.

A mean over the examples is the weighted sum of the means over the chunks
:math:`B_c` of any partition of them, with weights :math:`|B_c|/s`:

.. math::

   S = \sum_c \frac{|B_c|}{s} S_{B_c}, \qquad
   J^T \frac{\partial S}{\partial Y_N} = \sum_c \frac{|B_c|}{s}
       J_{B_c}^T \frac{\partial S_{B_c}}{\partial Y_{N, B_c}}, \qquad
   J^T \frac{\partial^2 S}{\partial Y_N^2} J v = \sum_c \frac{|B_c|}{s}
       J_{B_c}^T \frac{\partial^2 S_{B_c}}{\partial Y_{N, B_c}^2} J_{B_c} v.

The chunks are consecutive rows, at most ``chunk_size`` of them (all rows in
one chunk if ``None``), so the memory of a sweep is that of one chunk. The
sums here are over the rows in hand; :class:`ocdl.reduction.Reduction`
completes them over processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from ..backend import Array, get_array_module
from ..memory import Trajectory
from ..objectives import Objective
from ..propagation import Network


class Chunk(NamedTuple):
    """One chunk :math:`B_c` of the examples after its forward sweep."""

    weight: float
    r""":math:`|B_c| / s`."""
    Y0: Array
    """Its examples, shape ``(|B_c|, n)``."""
    C: Array
    """Their targets, shape ``(|B_c|, m)``."""
    trajectory: Trajectory
    """The forward states of the sweep."""
    YN: Array
    """The output features, shape ``(|B_c|, n)``."""


def chunks(count: int, chunk_size: int | None) -> list[slice]:
    """Slices of at most ``chunk_size`` consecutive rows covering ``0..count`` (one if ``None``)."""
    size = max(count, 1) if chunk_size is None else chunk_size
    return [slice(start, min(start + size, count)) for start in range(0, max(count, 1), size)]


def propagate(network: Network, theta: Array, Y0: Array, chunk_size: int | None) -> Array:
    r""":math:`Y_N(\theta)` of the rows ``Y0``, one chunk at a time (keeping no forward state).

    Each chunk's features are copied into the result as soon as they are
    computed, so that the memory is the result's and one chunk's (collecting
    the chunks and concatenating them held the result twice: 0.9 GB more on
    full-size MNIST).
    """
    parts = chunks(Y0.shape[0], chunk_size)
    first = network.forward(theta, Y0[parts[0]])
    if len(parts) == 1:
        return first
    YN = get_array_module(Y0).empty((Y0.shape[0], *first.shape[1:]), dtype=first.dtype)
    YN[parts[0]] = first
    del first  # freed before the next chunk's sweep
    for rows in parts[1:]:
        YN[rows] = network.forward(theta, Y0[rows])
    return YN


def forward_chunks(
    network: Network, theta: Array, Y0: Array, C: Array, chunk_size: int | None, close: bool = True
) -> Iterator[Chunk]:
    """The forward sweep of each chunk of the rows ``Y0`` (targets ``C``), one at a time.

    With ``close`` each chunk's trajectory is closed (its memory released)
    when the next chunk is asked for; otherwise it is kept, for repeated
    products (then collect the chunks in a list).
    """
    count = Y0.shape[0]
    for rows in chunks(count, chunk_size) if count else ():  # a worker without rows of a sub-sample: no chunk
        traj = network.trajectory(theta, Y0[rows])
        yield Chunk((rows.stop - rows.start) / count, Y0[rows], C[rows], traj, network.stepper.output(traj.final_state))
        if close:
            traj.close()


def data_gradient(
    network: Network, objective: Objective, theta: Array, W: Array, mu: Array, swept: Iterable[Chunk]
) -> tuple[Any, Array, Array, Array]:
    r"""The data term :math:`S` and its gradients :math:`(J^T \partial S/\partial Y_N, \partial S/\partial W,
    \partial S/\partial\mu)`: the chunks' weighted sum, i.e. the mean over their rows.

    One adjoint sweep per chunk of ``swept`` (from :func:`forward_chunks`). A chunk whose data term is
    not finite (an overflow: a huge classifier, say) has no gradient: its :math:`\nabla_\theta` is NaN,
    without an adjoint sweep, and the caller sees the value (the solvers stop with ``NOT_FINITE``).
    """
    xp = get_array_module(theta)  # zeros of the right shape where no chunk adds (a worker without rows)
    S, g_theta, dW, dmu = 0.0, xp.zeros_like(theta), xp.zeros_like(W), xp.zeros_like(mu)
    for chunk in swept:
        S_c, (dYN, dW_c, dmu_c) = objective.value_and_gradient(chunk.YN, W, mu, chunk.C)
        finite = math.isfinite(S_c)
        g_c = network.vjp(theta, chunk.Y0, dYN, trajectory=chunk.trajectory) if finite else xp.full_like(theta, xp.nan)
        S, g_theta = S + chunk.weight * S_c, g_theta + chunk.weight * g_c
        dW, dmu = dW + chunk.weight * dW_c, dmu + chunk.weight * dmu_c
    return S, g_theta, dW, dmu


def gauss_newton_product(
    network: Network, objective: Objective, theta: Array, W: Array, mu: Array, v: Array, swept: Iterable[Chunk]
) -> Array:
    r"""The data term of the Gauss-Newton product, :math:`J^T \frac{\partial^2 S}{\partial Y_N^2} J v`:
    the chunks' weighted sum, i.e. the mean over their rows.

    One sensitivity and one adjoint sweep per chunk of ``swept`` (from
    :func:`forward_chunks`, with their trajectories kept open).
    """
    JtHJv = get_array_module(v).zeros_like(v)
    for chunk in swept:
        dY = network.jvp(theta, chunk.Y0, v, trajectory=chunk.trajectory)
        HdY = objective.hessian_Y(chunk.YN, W, mu, chunk.C, dY)
        JtHJv = JtHJv + chunk.weight * network.vjp(theta, chunk.Y0, HdY, trajectory=chunk.trajectory)
    return JtHJv
