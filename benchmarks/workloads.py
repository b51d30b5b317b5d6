"""The benchmark workloads (project issue 6) and their ocdl networks.

Each workload is one network shape run with ``tanh`` and two steppers,
forward Euler (``"resnet"``) and Verlet (``"verlet"``):

====  ==================  ==========================================  =====
name  kind                examples s x features                       N
====  ==================  ==========================================  =====
W1    deep and narrow     4,000 x 8 (dense)                           1,024
W2    wide                2,048 x 256 (dense)                         64
W3    convolutional       512 images, 6 channels of 28 x 28 (3 x 3)   16
W3L   W3 at MNIST's size  50,000 images, as W3                        16
====  ==================  ==========================================  =====

W3L is for the GPU (``run.py --device gpu``): one float32 state is 0.94 GB.
``QUICK`` holds tiny versions of the same four for smoke tests. The data
(``theta``, ``Y0``, the direction ``v`` of the Gauss-Newton product) are
NumPy arrays drawn from a fixed seed, so that the PyTorch reference runs on
exactly the same numbers; ocdl takes them to the GPU with
:func:`ocdl.to_device`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

import ocdl
from ocdl.backend import to_device

STEPPERS = ("resnet", "verlet")
"""The workloads' two steppers, names of :data:`ocdl.KINDS`."""


@dataclass(frozen=True)
class Workload:
    """One network shape: dense (``width``) or convolutional (``channels x height x width``)."""

    name: str
    title: str
    n_examples: int
    n_steps: int
    final_time: float
    width: int = 0  # dense: features per example
    channels: int = 0  # conv: channels, image height and width
    height: int = 0
    image_width: int = 0
    kernel_size: int = 3

    @property
    def is_conv(self) -> bool:
        return self.channels > 0

    @property
    def n_features(self) -> int:
        return self.channels * self.height * self.image_width if self.is_conv else self.width

    @property
    def h(self) -> float:
        return self.final_time / self.n_steps

    def transform(self) -> ocdl.Transform:
        if self.is_conv:
            return ocdl.Conv2d(
                self.channels, self.channels, self.height, self.image_width, self.kernel_size
            )
        return ocdl.Dense(self.width)

    def network(self, stepper: str) -> ocdl.Network:
        """The ocdl network: ``ocdl.ResNet`` or ``ocdl.Verlet`` over ``Layer(transform, "tanh")``."""
        if stepper not in STEPPERS:
            raise ValueError(f"stepper must be one of {STEPPERS}, got {stepper!r}")
        return ocdl.Network(ocdl.KINDS[stepper].build(self.transform(), "tanh"), self.n_steps, self.final_time)

    def data(self, stepper: str, dtype, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(theta, Y0, v)`` in ``dtype``: initial weights, standard normal features, a direction.

        The last case's arrays are handed out again (not to be modified): the
        libraries of a case run one after another on the same numbers, and
        drawing W3L's 235 million takes seconds.
        """
        return _data(self, stepper, np.dtype(dtype), seed)

    def describe(self) -> str:
        shape = (
            f"{self.channels}x{self.height}x{self.image_width} conv{self.kernel_size}"
            if self.is_conv
            else f"n={self.width}"
        )
        return f"{self.name} {self.title}: s={self.n_examples}, {shape}, N={self.n_steps}"


WORKLOADS = {
    "W1": Workload("W1", "deep and narrow", n_examples=4000, width=8, n_steps=1024, final_time=20.0),
    "W2": Workload("W2", "wide", n_examples=2048, width=256, n_steps=64, final_time=6.4),
    "W3": Workload(
        "W3", "convolutional", n_examples=512, channels=6, height=28, image_width=28,
        n_steps=16, final_time=1.6,
    ),
    "W3L": Workload(
        "W3L", "convolutional, MNIST's size", n_examples=50000, channels=6, height=28, image_width=28,
        n_steps=16, final_time=1.6,
    ),
}

QUICK = {
    "W1": Workload("W1", "deep and narrow (quick)", n_examples=64, width=4, n_steps=16, final_time=1.0),
    "W2": Workload("W2", "wide (quick)", n_examples=32, width=16, n_steps=4, final_time=0.4),
    "W3": Workload(
        "W3", "convolutional (quick)", n_examples=4, channels=2, height=6, image_width=5,
        n_steps=3, final_time=0.3,
    ),
    "W3L": Workload(
        "W3L", "convolutional, more images (quick)", n_examples=16, channels=2, height=6, image_width=5,
        n_steps=3, final_time=0.3,
    ),
}


@functools.lru_cache(maxsize=1)
def _data(workload: Workload, stepper: str, dtype: np.dtype, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    net = workload.network(stepper)
    rng = np.random.default_rng(seed)
    theta = net.init_params(rng, dtype=np.float64)
    theta.reshape(workload.n_steps, -1)[:, -1] = 0.1 * rng.standard_normal(workload.n_steps)  # biases
    Y0 = rng.standard_normal((workload.n_examples, workload.n_features))
    v = rng.standard_normal(theta.shape)
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in (theta, Y0, v))


def ocdl_callables(workload: Workload, stepper: str, dtype, seed: int = 0, device: str = "cpu") -> dict:
    """Closures that run one forward, one gradient and one Gauss-Newton product with ocdl on ``device``.

    * ``forward``: ``net.forward(theta, Y0)``;
    * ``gradient``: of :math:`\\tfrac12\\|Y_N\\|^2`: a trajectory, then
      ``net.vjp(theta, Y0, Y_N, trajectory=...)`` (forward + adjoint);
    * ``gn_setup``: computes a trajectory and returns ``gn_matvec``,
      :math:`J^T J v` (``jvp`` then ``vjp``, both reading the stored
      states); set up after the other two are timed, so that its states
      and theirs are never held at once.

    ``gradient_value`` returns the gradient itself, on the host (for checks against PyTorch); ``close``
    releases the Gauss-Newton product's states; ``swept`` says whether the sweeps run in one piece
    (:meth:`ocdl.steppers.Stepper.sweep`: with the fused GPU kernels, W1's ResNet and Verlet).
    """
    net = workload.network(stepper)
    theta, Y0, v = to_device(workload.data(stepper, dtype, seed), device)
    stored = []

    def forward():
        return net.forward(theta, Y0)

    def gradient():
        with net.trajectory(theta, Y0) as t:
            YN = net.stepper.output(t.final_state)
            return net.vjp(theta, Y0, YN, trajectory=t)

    def gn_setup():
        traj = net.trajectory(theta, Y0)
        stored.append(traj)

        def gn_matvec():
            return net.vjp(theta, Y0, net.jvp(theta, Y0, v, trajectory=traj), trajectory=traj)

        return gn_matvec

    def close():
        for traj in stored:
            traj.close()
        stored.clear()
        net.memory.release()

    return {
        "forward": forward,
        "gradient": gradient,
        "gn_setup": gn_setup,
        "gradient_value": lambda: to_device(gradient(), "cpu"),
        "close": close,
        "swept": net.stepper.sweep(net.theta_steps(theta), net.h, net.stepper.init(Y0), store=False) is not None,
    }
