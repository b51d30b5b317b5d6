r"""Example 2 / Figure 2 of Haber & Ruthotto (2017): second-order and Hamiltonian networks.

Top row, the second-order network (eq. 4.16) with leapfrog,
:math:`y_{j+1} = 2y_j - y_{j-1} + h^2 \tanh(K y_j)`, :math:`K = K_-` of
eq. (3.10) and :math:`h = 1`. Bottom row, the Hamiltonian network
(eqs. 4.15 and 4.17) with Verlet,

.. math::

   z_{j+1/2} = z_{j-1/2} - h \tanh(K^T y_j), \qquad
   y_{j+1} = y_j + h \tanh(K z_{j+1/2}), \qquad z_{-1/2} = 0,

with :math:`K = K_v` and :math:`h = 0.1`. Both are run for :math:`N = 500`
and :math:`N = 5000` steps from the features of Example 1, with :math:`b = 0`.

Conventions: the paper writes column vectors. A first-order or leapfrog layer
:math:`\sigma(K y + b)` is ocdl's :math:`\sigma(y K^T + b)`, so it gets
``K_paper.T``; ocdl's Verlet network, in rows
:math:`Z \leftarrow Z - h\sigma(Y K + b)`, :math:`Y \leftarrow Y + h\sigma(Z K^T + b)`,
is the column form above with the same :math:`K`, so ``K_v`` is passed as is.

:math:`K_v` is ``K_V`` below. We could not check the paper's :math:`K_v` and use
:math:`K_+`, the matrix for which the ResNet of Example 1 diverges: linearised
at the origin (:math:`\sigma'(0) = 1`) the Hamiltonian dynamics are
:math:`\dot y = K z`, :math:`\dot z = -K^T y`, whose eigenvalues
:math:`\pm i s_k` (:math:`s_k` the singular values of :math:`K`) are
imaginary for every :math:`K`, and Verlet keeps them on the unit circle for
:math:`h s_{\max} < 2` (here :math:`0.1 \cdot 3.24`): the features oscillate
and stay bounded.

Leapfrog on :math:`\ddot y = \lambda y` is stable for real :math:`\lambda \le 0`
with :math:`h^2 |\lambda| \le 4`; the force Jacobian eigenvalues for
:math:`K_-` are :math:`-2\sigma' \in [-2, 0]`, so :math:`h^2|\lambda| \le 2`.
:math:`K_-` is a Jordan block, though (one eigenvector for the double
eigenvalue :math:`-2`), so the first feature forces the second at resonance:
the first two examples drift slowly (to :math:`|y| \approx 10^2` by
:math:`N = 5000`, no exponential blow-up) while the third, on the eigenvector,
oscillates. The right column shows :math:`\max_{k \le j} |y_k|` for
:math:`N = 5000`. Leapfrog's states are drawn as dots: with :math:`h = 1`
consecutive states are far apart.

Run ``python examples/stability_example2.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import ocdl
from ocdl.stability import feature_trajectory, layer_jacobian_eigenvalues, phase_plane

K_MINUS = np.array([[-2.0, 0.0], [2.0, -2.0]])  # eq. (3.10), column convention
K_V = np.array([[2.0, -2.0], [0.0, 2.0]])  # K_+ of eq. (3.10); see the module docstring
FEATURES = np.array([[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]])
STEPS = (500, 5000)
DEFAULT_OUT = Path(__file__).resolve().parent / "figures" / "figure2.png"

#: (kind, matrix handed to ocdl, step size h, title); see the module docstring.
RUNS = (
    ("leapfrog", K_MINUS.T, 1.0, r"Leapfrog (4.16), $K = K_-$, $h = 1$"),
    ("verlet", K_V, 0.1, r"Verlet (4.17), $K = K_v = K_+$, $h = 0.1$"),
)


def main(argv: list[str] | None = None) -> Path:
    """Draw Figure 2 and print the feature bounds; return the PNG's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG file to write")
    args = parser.parse_args(argv)

    fig = Figure(figsize=(17, 10), layout="constrained")
    axes = fig.subplots(len(RUNS), len(STEPS) + 1)
    for row, (kind, K, h, title) in zip(axes, RUNS):
        for ax, n_steps in zip(row, STEPS):
            net = ocdl.network(kind, 2, n_steps, n_steps * h, activation="tanh")
            theta = net.pack([K] * n_steps, [0.0] * n_steps)
            paths = feature_trajectory(net, theta, FEATURES)
            sizes = np.linalg.norm(paths, axis=2)  # (N + 1, s): |y_j| per example
            report = (
                f"{kind:8s} N = {n_steps:4d}, T = {n_steps * h:g}: max_j |y_j| = "
                f"{np.array2string(sizes.max(axis=0), precision=3)}, |y_N| = "
                f"{np.array2string(sizes[-1], precision=3)} (|y_0| = "
                f"{np.array2string(sizes[0], precision=3)})"
            )
            if kind == "leapfrog":
                lam = layer_jacobian_eigenvalues(net, theta, FEATURES)
                report += (
                    f"; force Jacobian eigenvalues real in [{lam.real.min():.3f}, "
                    f"{lam.real.max():.3f}], max |Im| = {np.abs(lam.imag).max():.1e}, "
                    f"max h^2 |lambda| = {h * h * np.abs(lam).max():.3f} (stable if <= 4)"
                )
            print(report)
            if kind == "leapfrog":  # h = 1: dots, since lines would join states far apart
                phase_plane(ax, net, theta, FEATURES, legend=ax is row[0], linewidth=0,
                            markers=True)
            else:
                phase_plane(ax, net, theta, FEATURES, field=False, legend=ax is row[0],
                            linewidth=1.0 if n_steps <= 500 else 0.3)
            ax.set_title(f"{title}\n$N = {n_steps}$, $T = {n_steps * h:g}$, "
                         f"max$_j\\,|y_j| = {sizes.max():.3g}$")
        ax = row[-1]
        envelope = np.maximum.accumulate(sizes, axis=0)  # max_{k <= j} |y_k|
        for i in range(sizes.shape[1]):
            ax.semilogy(envelope[:, i], color=f"C{i}", linewidth=1.5,
                        label=f"$y_0 = ({FEATURES[i, 0]:g}, {FEATURES[i, 1]:g})$")
        ax.set_title(f"{title}\nlargest feature so far, $N = {STEPS[-1]}$")
        ax.set_xlabel("layer $j$")
        ax.set_ylabel(r"$\max_{k \leq j}\, |y_k|$")
        ax.set_ylim(5e-2, 5e2)  # the same scale in both rows
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("Example 2: second-order (leapfrog) and Hamiltonian (Verlet) networks, "
                 r"$\sigma = \tanh$, $b = 0$" "\n"
                 "(tanh is odd and b = 0, so the orange path is the blue one mirrored through 0)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
