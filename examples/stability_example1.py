r"""Example 1 / Figure 1 of Haber & Ruthotto (2017): stability of the ResNet.

A ResNet (forward Euler, :math:`Y_{j+1} = Y_j + h \tanh(Y_j K + b)`) with
:math:`N = 10` identical layers, :math:`h = 0.1` (:math:`T = 1`) and
:math:`b = 0`, for the three matrices of the paper's eq. (3.10)

.. math::

   K_+ = \begin{pmatrix} 2 & -2 \\ 0 & 2 \end{pmatrix}, \quad
   K_- = \begin{pmatrix} -2 & 0 \\ 2 & -2 \end{pmatrix}, \quad
   K_0 = \begin{pmatrix} 0 & -1 \\ 1 & 0 \end{pmatrix},

with eigenvalues :math:`2` (double), :math:`-2` (double) and :math:`\pm i`,
applied to the features :math:`(0.1, 0.1)`, :math:`(-0.1, -0.1)`, :math:`(0, 0.5)`.
The paper writes column vectors, :math:`\sigma(K y + b)`; ocdl's rows use
:math:`\sigma(y K^T + b)`, so each layer gets the transpose of the paper's
matrix and the trajectories are the paper's. Expected: :math:`K_+` pushes the
features away from the origin, :math:`K_-` contracts them to it, :math:`K_0`
rotates them.

Run ``python examples/stability_example1.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import ocdl
from ocdl.stability import euler_factor, layer_jacobian_eigenvalues, phase_plane

#: The paper's matrices of eq. (3.10), column convention (sigma(K y + b)), with their eigenvalues.
MATRICES = {
    "K_+": (np.array([[2.0, -2.0], [0.0, 2.0]]), "2, 2"),
    "K_-": (np.array([[-2.0, 0.0], [2.0, -2.0]]), "-2, -2"),
    "K_0": (np.array([[0.0, -1.0], [1.0, 0.0]]), r"\pm i"),
}
FEATURES = np.array([[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]])
N_STEPS, FINAL_TIME = 10, 1.0
DEFAULT_OUT = Path(__file__).resolve().parent / "figures" / "figure1.png"


def resnet_with(K_paper: np.ndarray) -> tuple[ocdl.Network, np.ndarray]:
    """The ResNet of Example 1 and its parameters for the paper matrix ``K_paper``."""
    net = ocdl.network("resnet", 2, N_STEPS, FINAL_TIME, activation="tanh")
    theta = net.pack([K_paper.T] * N_STEPS, [0.0] * N_STEPS)  # row convention: y K_paper^T
    return net, theta


def main(argv: list[str] | None = None) -> Path:
    """Draw Figure 1, print the eigenvalues and Euler factors; return the PNG's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG file to write")
    args = parser.parse_args(argv)

    fig = Figure(figsize=(15, 6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (name, (K, eig_text)) in zip(axes, MATRICES.items()):
        net, theta = resnet_with(K)
        lam = layer_jacobian_eigenvalues(net, theta, FEATURES)
        factor = euler_factor(lam, net.h)
        eig_K = np.linalg.eigvals(K)
        print(
            f"{name}: eig(K) = {np.array2string(eig_K, precision=3)}; layer Jacobian "
            f"eigenvalues along the trajectory: Re in [{lam.real.min():.3f}, {lam.real.max():.3f}], "
            f"Im in [{lam.imag.min():.3f}, {lam.imag.max():.3f}]; "
            f"max|1 + h lambda| = {factor:.4f} (h = {net.h:g}); "
            f"|Y_N| / |Y_0| = {np.linalg.norm(net.forward(theta, FEATURES)) / np.linalg.norm(FEATURES):.3f}"
        )
        phase_plane(ax, net, theta, FEATURES, legend=ax is axes[0])
        ax.set_title(
            f"$K = {name}$, eigenvalues ${eig_text}$\n"
            rf"forward Euler: $\max|1 + h\lambda| = {factor:.3f}$"
        )
        ax.set_box_aspect(1)
    fig.suptitle(
        rf"Example 1: ResNet $y_{{j+1}} = y_j + h\,\tanh(K y_j + b)$ (paper's column form), "
        rf"$N = {N_STEPS}$, $h = {FINAL_TIME / N_STEPS:g}$, $b = 0$"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
