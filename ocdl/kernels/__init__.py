r"""Fused CUDA kernels for the layer step on CuPy arrays, behind one switch.

On the GPU each elementwise pass of a layer step is a kernel launch, and a
step of a small network is nothing but launches (the issue's W1: 1,024 steps
of 4,000 x 8 states). With the fused kernels (the default) every
:class:`ocdl.Layer` method on CuPy arrays, for a transform with an explicit
form (:attr:`ocdl.transforms.Transform.explicit_kind`) and an activation with
CUDA source (:attr:`ocdl.activations.Activation.cuda`), is at most a few
kernels:

* a **small matrix** (at most 32 x 32): the step
  :math:`X + c\,\sigma(V K + b)` with :math:`D = c\,\sigma'(V K + b)`, its
  tangent and its transpose are one kernel each, the product done in
  registers; the parameter gradient is one kernel of partial sums over
  blocks of rows and their sum (``dense.cu``);
* a **large matrix**: the product by cuBLAS (``cupy.matmul``), followed by one
  kernel for the elementwise chain (``elementwise.cu``);
* a **stencil** (``Conv2d``, ``Antisymmetric(Conv2d)``) with at most 16
  channels: a direct ``k x k`` convolution, one thread per pixel computing
  every output channel there, with the bias, activation and step update fused
  into it; its exact transpose reading :math:`D \odot \lambda` on the fly;
  and the parameter gradient as partial sums per block (``conv.cu``).

Where even one launch per step is too many (a deep, narrow network: W1's
1,024 steps, each a few microseconds of work), a stepper may run its whole
sweep in one kernel (:meth:`ocdl.steppers.Stepper.sweep`): a
:class:`~ocdl.steppers.ResNet`, :class:`~ocdl.steppers.Leapfrog`,
:class:`~ocdl.steppers.Verlet` or :class:`~ocdl.steppers.RK4` network with a small matrix (at most
32 x 32: ``Dense``, or ``Antisymmetric`` or ``NegativeDefinite`` of one)
propagates, differentiates and transposes all its steps in one kernel
each, one thread carrying one example through every step
(:mod:`ocdl.kernels.sweeps`, ``sweep.cu``).

Partial sums are added in a fixed order, so results do not depend on the
timing of the blocks. Everything else (NumPy arrays, other transforms,
activations without CUDA source, channel counts whose stencils overflow
shared memory) takes the plain path: the transform's and activation's own
array functions. :func:`fused` switches the kernels off (and on), for a
block of code or from then on; ``OCDL_FUSED_KERNELS=0`` in the environment
switches them off at import.
"""

from __future__ import annotations

import os

_state = {"enabled": os.environ.get("OCDL_FUSED_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")}


def fused_enabled() -> bool:
    """Whether the layer steps on CuPy arrays use the fused kernels (see :func:`fused`)."""
    return _state["enabled"]


class fused:  # noqa: N801 - used like a function and as a context manager, as numpy.errstate
    """Switch the fused CUDA kernels on or off.

    ``fused(False)`` switches them off from then on; ``with fused(False): ...``
    only inside the block (the previous setting returns after it). Results of
    the two paths agree to rounding (float64 1e-12, float32 1e-5 relative).

    Parameters
    ----------
    enabled : whether CuPy layer steps use the fused kernels.
    """

    def __init__(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False, got {enabled!r}")
        self._previous = _state["enabled"]
        _state["enabled"] = enabled

    def __enter__(self) -> fused:
        return self

    def __exit__(self, *exc) -> None:
        _state["enabled"] = self._previous


__all__ = ["fused", "fused_enabled"]
