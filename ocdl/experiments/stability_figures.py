r"""Figures 1 and 2 of Haber & Ruthotto (2017): the stability examples of sections 3 and 4.

**Example 1 / Figure 1** (:func:`figure1`): a ResNet (forward Euler,
:math:`Y_{j+1} = Y_j + h \tanh(Y_j K + b)`) with :math:`N = 10` identical
layers, :math:`h = 0.1` (:math:`T = 1`) and :math:`b = 0`, for the three
matrices of the paper's eq. (3.10)

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

**Example 2 / Figure 2** (:func:`figure2`). Top row, the second-order
network (eq. 4.16) with leapfrog,
:math:`y_{j+1} = 2y_j - y_{j-1} + h^2 \tanh(K y_j)`, :math:`K = K_-` of
eq. (3.10) and :math:`h = 1`. Bottom row, the Hamiltonian network
(eqs. 4.15 and 4.17) with Verlet,

.. math::

   z_{j+1/2} = z_{j-1/2} - h \tanh(K^T y_j), \qquad
   y_{j+1} = y_j + h \tanh(K z_{j+1/2}), \qquad z_{-1/2} = 0,

with :math:`K = K_v` and :math:`h = 0.1`. Both are run for :math:`N = 500`
and :math:`N = 5000` steps from the features of Example 1, with :math:`b = 0`.

Conventions: a first-order or leapfrog layer :math:`\sigma(K y + b)` is
ocdl's :math:`\sigma(y K^T + b)`, so it gets ``K_paper.T``; ocdl's Verlet
network, in rows :math:`Z \leftarrow Z - h\sigma(Y K + b)`,
:math:`Y \leftarrow Y + h\sigma(Z K^T + b)`, is the column form above with the
same :math:`K`, so ``K_v`` is passed as is.

:math:`K_v` is :data:`K_V`. We could not check the paper's :math:`K_v` and use
:math:`K_+`, the matrix for which the ResNet of Example 1 diverges: linearised
at the origin (:math:`\sigma'(0) = 1`) the Hamiltonian dynamics are
:math:`\dot y = K z`, :math:`\dot z = -K^T y`, whose eigenvalues
:math:`\pm i s_k` (:math:`s_k` the singular values of :math:`K`) are
imaginary for every :math:`K`, and Verlet keeps them on the unit circle for
:math:`h s_{\max} < 2` (here :math:`0.1 \cdot 3.24`): the features oscillate
and stay bounded.

Leapfrog on :math:`\ddot y = \lambda y` is stable for real :math:`\lambda \le 0`
with :math:`h^2 |\lambda| < 4` (at 4 a double root grows linearly); the force
Jacobian eigenvalues for :math:`K_-` are :math:`-2\sigma' \in [-2, 0]`, so
:math:`h^2|\lambda| \le 2`. Yet the first two examples drift (to
:math:`|y| \approx 7.7` by :math:`N = 500` and :math:`7.5 \cdot 10^2` by
:math:`N = 5000`, in bursts: no exponential blow-up, but no bound either)
while the third, on the eigenvector, oscillates. The drift is the large
step's: over the same :math:`T = 5000` the network stays below 0.83 for
:math:`h \le 0.5` (399 at :math:`h = 0.9`), and with :math:`-2I` in place of
:math:`K_-` below 0.17 at :math:`h = 1`. :math:`K_-` is a Jordan block (one
eigenvector for the double eigenvalue :math:`-2`), and the eigenvalue bound,
made for diagonalisable linear dynamics, does not bound such a step. The
right column shows :math:`\max_{k \le j} |y_k|` for
:math:`N = 5000`. Leapfrog's states are drawn as dots: with :math:`h = 1`
consecutive states are far apart.

The figures are drawn by two general tools: :func:`phase_plane` (the
trajectories of any network of width 2 with its force field) and
:func:`plot_eigenvalues` (eigenvalues, e.g. from
:func:`ocdl.stability.layer_jacobian_eigenvalues`, against the forward Euler
stability disc).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..backend import asnumpy
from ..factory import network
from ..propagation import Network
from ..stability import euler_factor, feature_trajectory, layer_jacobian_eigenvalues, network_layer
from ..validation import check_positive

#: The paper's matrices of eq. (3.10), column convention (sigma(K y + b)), with their eigenvalues.
MATRICES = {
    "K_+": (np.array([[2.0, -2.0], [0.0, 2.0]]), "2, 2"),
    "K_-": (np.array([[-2.0, 0.0], [2.0, -2.0]]), "-2, -2"),
    "K_0": (np.array([[0.0, -1.0], [1.0, 0.0]]), r"\pm i"),
}
FEATURES = np.array([[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]])
"""The input features of both examples, one per row."""

EXAMPLE1_STEPS, EXAMPLE1_FINAL_TIME = 10, 1.0

K_MINUS = MATRICES["K_-"][0]
K_V = MATRICES["K_+"][0]
"""Verlet's matrix of Example 2: :math:`K_+` (see the module docstring)."""

EXAMPLE2_STEPS = (500, 5000)

#: Example 2: (kind, matrix handed to ocdl, step size h, title); see the module docstring.
EXAMPLE2_RUNS = (
    ("leapfrog", K_MINUS.T, 1.0, r"Leapfrog (4.16), $K = K_-$, $h = 1$"),
    ("verlet", K_V, 0.1, r"Verlet (4.17), $K = K_v = K_+$, $h = 0.1$"),
)


def phase_plane(
    ax: Axes,
    network: Network,
    theta: Any,
    Y0: Any,
    field: bool = True,
    K: Any = None,
    b: float | None = None,
    grid: int = 15,
    labels: Sequence[str] | None = None,
    legend: bool = True,
    linewidth: float = 1.2,
    markers: bool | None = None,
) -> Axes:
    r"""Draw the trajectories :math:`Y_0, \dots, Y_N` of two features with the force field.

    Each example is one curve through its states (dots at the hidden layers),
    its input :math:`Y_0` a hollow circle and its output :math:`Y_N` a star.
    The field is :math:`\sigma(y K + b)` on a ``grid x grid`` lattice over the
    plotted region: the right-hand side of :math:`\dot y = \sigma(yK + b)` for
    a ResNet, the acceleration of :math:`\ddot y = \sigma(yK + b)` for Leapfrog.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to draw on.
    network : Network
        A network of width 2.
    theta : array
        Flat parameters (``network.n_params`` entries).
    Y0 : array
        Input features, ``s x 2``.
    field : bool
        Whether to draw the force field (needs a layer stepper).
    K : array_like, optional
        The ``2 x 2`` matrix of the field (row convention); default the first
        layer's :math:`K_0`.
    b : float, optional
        The bias of the field; default the first layer's :math:`b_0`.
    grid : int
        Number of arrows per axis.
    labels : sequence of str, optional
        Legend labels of the examples; default the input coordinates.
    legend : bool
        Whether to draw a legend.
    linewidth : float
        Width of the lines joining consecutive states (0: dots only); thin lines
        keep long runs readable.
    markers : bool, optional
        Whether to dot every state; default when :math:`N \le 50`.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.
    """
    from matplotlib.lines import Line2D

    paths = feature_trajectory(network, theta, Y0)
    if paths.shape[2] != 2:
        raise ValueError(f"phase_plane needs 2 features, the network has {paths.shape[2]}")
    grid = check_positive("grid", grid, integer=True)
    if labels is None:
        labels = [f"$y_0 = ({y[0]:g}, {y[1]:g})$" for y in paths[0]]
    if len(labels) != paths.shape[1]:
        raise ValueError(f"labels needs {paths.shape[1]} entries, got {len(labels)}")

    low, high = paths.min(axis=(0, 1)), paths.max(axis=(0, 1))
    margin = 0.1 * np.maximum(high - low, 0.1 * max(np.abs(paths).max(), 1e-3))
    low, high = low - margin, high + margin

    handles = []
    if field:
        layer = network_layer(network)
        theta_K, b0 = layer.split(network.theta_steps(theta)[0])
        K = asnumpy(layer.transform.matrix(theta_K)) if K is None else np.asarray(K, dtype=float)
        if K.shape != (2, 2):
            raise ValueError(f"the field needs a 2 x 2 matrix K, got shape {K.shape}")
        b = float(asnumpy(b0)[0]) if b is None else float(b)
        X1, X2 = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
        force = np.asarray(layer.activation(np.stack([X1.ravel(), X2.ravel()], axis=1) @ K + b))
        ax.quiver(X1, X2, force[:, 0].reshape(X1.shape), force[:, 1].reshape(X1.shape),
                  color="0.65", angles="xy", width=0.004)
        handles.append(Line2D([], [], color="0.65", marker=r"$\rightarrow$", markersize=12,
                              linestyle="None", label="force field"))

    n_steps = paths.shape[0] - 1
    marker = "." if (n_steps <= 50 if markers is None else markers) else None
    markersize = 6 if n_steps <= 50 else 2
    for i, label in enumerate(labels):
        color = f"C{i}"
        line, = ax.plot(paths[:, i, 0], paths[:, i, 1], "-" if linewidth else "None",
                        marker=marker, markersize=markersize, color=color,
                        linewidth=linewidth, label=label)
        handles.append(line)
        ax.plot(*paths[0, i], "o", markersize=8, markerfacecolor="none", markeredgecolor=color,
                markeredgewidth=1.5)
        ax.plot(*paths[-1, i], "*", markersize=12, color=color, markeredgecolor="k",
                markeredgewidth=0.5)
    handles.append(Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="k",
                          linestyle="None", label="input $Y_0$"))
    handles.append(Line2D([], [], marker="*", markersize=10, color="0.4", markeredgecolor="k",
                          linestyle="None", label="output $Y_N$"))

    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("feature $y_1$")
    ax.set_ylabel("feature $y_2$")
    if legend:
        ax.legend(handles=handles, fontsize="small", loc="best")
    return ax


def plot_eigenvalues(ax: Axes, eigenvalues: Any, h: float, label: str | None = None) -> Axes:
    r"""Draw eigenvalues in the complex plane with the forward Euler stability disc.

    The disc is :math:`\{\lambda : |1 + h \lambda| \le 1\}`, centre :math:`-1/h`, radius
    :math:`1/h` (eq. 3.9): forward Euler with step :math:`h` is stable when
    every eigenvalue lies inside it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to draw on.
    eigenvalues : array_like
        Complex eigenvalues of any shape (flattened),
        e.g. from :func:`layer_jacobian_eigenvalues`.
    h : float
        Step size :math:`h > 0`.
    label : str, optional
        Legend label of the eigenvalues (default ``"eigenvalues"``).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.
    """
    from matplotlib.patches import Circle

    h = check_positive("h", h)
    lam = np.asarray(eigenvalues).ravel()
    radius = 1 / h
    ax.add_patch(Circle((-radius, 0), radius, facecolor="C2", alpha=0.15, edgecolor="C2",
                        label=rf"forward Euler stable: $|1 + h\lambda| \leq 1$, $h = {h:g}$"))
    ax.plot(lam.real, lam.imag, "x", color="C3", markersize=8,
            label="eigenvalues" if label is None else label)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.axvline(0, color="0.5", linewidth=0.6)
    pad = 0.1 * max(2 * radius, np.abs(lam).max(initial=0))
    top = max(radius, np.abs(lam.imag).max(initial=0)) + pad
    ax.set_xlim(min(-2 * radius, lam.real.min(initial=0)) - pad, lam.real.max(initial=0) + pad)
    ax.set_ylim(-top, top)
    ax.set_aspect("equal")
    ax.set_xlabel(r"Re $\lambda$")
    ax.set_ylabel(r"Im $\lambda$")
    ax.legend(fontsize="small", loc="upper left")
    return ax


def resnet_with(K_paper: np.ndarray) -> tuple[Network, np.ndarray]:
    """The ResNet of Example 1 and its parameters for the paper matrix ``K_paper``."""
    net = network("resnet", 2, EXAMPLE1_STEPS, EXAMPLE1_FINAL_TIME, activation="tanh")
    theta = net.pack([K_paper.T] * EXAMPLE1_STEPS, [0.0] * EXAMPLE1_STEPS)  # row convention: y K_paper^T
    return net, theta


def figure1(out: str | Path) -> Path:
    """Draw Figure 1 into the PNG ``out``; print the eigenvalues and Euler factors; return ``out``."""
    out = Path(out)
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
        rf"$N = {EXAMPLE1_STEPS}$, $h = {EXAMPLE1_FINAL_TIME / EXAMPLE1_STEPS:g}$, $b = 0$"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return out


def figure2(out: str | Path) -> Path:
    """Draw Figure 2 into the PNG ``out``; print the feature bounds; return ``out``."""
    out = Path(out)
    fig = Figure(figsize=(17, 10), layout="constrained")
    axes = fig.subplots(len(EXAMPLE2_RUNS), len(EXAMPLE2_STEPS) + 1)
    for row, (kind, K, h, title) in zip(axes, EXAMPLE2_RUNS):
        for ax, n_steps in zip(row, EXAMPLE2_STEPS):
            net = network(kind, 2, n_steps, n_steps * h, activation="tanh")
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
                phase_plane(ax, net, theta, FEATURES, legend=ax is row[0], linewidth=0, markers=True)
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
        ax.set_title(f"{title}\nlargest feature so far, $N = {EXAMPLE2_STEPS[-1]}$")
        ax.set_xlabel("layer $j$")
        ax.set_ylabel(r"$\max_{k \leq j}\, |y_k|$")
        ax.set_ylim(5e-2, 5e3)  # the same scale in both rows (leapfrog's drift reaches 7.5e2 by N = 5000)
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("Example 2: second-order (leapfrog) and Hamiltonian (Verlet) networks, "
                 r"$\sigma = \tanh$, $b = 0$" "\n"
                 "(tanh is odd and b = 0, so the orange path is the blue one mirrored through 0)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return out


def stability_figures(out_dir: str | Path) -> list[Path]:
    """Figures 1 and 2 as ``out_dir/figure1.png`` and ``out_dir/figure2.png``."""
    out_dir = Path(out_dir)
    return [figure1(out_dir / "figure1.png"), figure2(out_dir / "figure2.png")]
