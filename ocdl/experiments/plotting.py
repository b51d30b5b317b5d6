"""The figures of the paper's section 6, drawn on Matplotlib figures (no pyplot state).

* :func:`plot_levels`: best validation accuracy per level and per stepper
  (Figure 3), with the validation accuracy of every iteration beside it;
* :func:`plot_2d`: for each run, the data, the propagated features and the
  prediction over the plane (Figures 4-6);
* :func:`plot_mnist`: input images, propagated images and classifier weights
  (Figure 7).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .training import Run

GRID = 150
"""Points per axis of the prediction over the plane."""


def _percent_axis(ax, label: str) -> None:
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)


def plot_levels(fig: Figure, summaries: Sequence[dict]) -> Figure:
    """Figure 3: best validation accuracy against the number of layers, and per iteration.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        An empty figure; two axes are added.
    summaries : sequence of dict
        ``results.json`` contents (:meth:`Run.summary`), one per stepper.

    Returns
    -------
    matplotlib.figure.Figure
    """
    left, right = fig.subplots(1, 2)
    span = max(s["settings"]["max_iter"] for s in summaries)  # level k is drawn from k * span + 1 on
    all_layers = sorted({rec["n_layers"] for s in summaries for rec in s["levels"]})
    for i, summary in enumerate(summaries):
        levels = summary["levels"]
        best = [100 * rec["best_val_accuracy"] for rec in levels]
        left.plot([rec["n_layers"] for rec in levels], best, "o-", color=f"C{i}",
                  label=f"{summary['stepper']} (best {np.nanmax(best):.1f}%)")
        for k, rec in enumerate(levels):
            trace = np.array(rec["val_accuracy"], dtype=float)  # None (a failed iteration): NaN
            right.plot(k * span + np.arange(1, trace.size + 1), 100 * trace, color=f"C{i}", linewidth=1)
    for k, n_layers in enumerate(all_layers):
        if k:
            right.axvline(k * span + 0.5, color="0.75", linewidth=0.8)
        right.text(k * span + 1, 0.02, f"N={n_layers}", transform=right.get_xaxis_transform(),
                   fontsize="x-small", color="0.35")
    left.set_xscale("log", base=2)
    left.set_xticks(all_layers, [str(n) for n in all_layers])
    left.set_xlabel("layers $N$ (multilevel)")
    _percent_axis(left, "best validation accuracy (%)")
    left.legend(fontsize="small")
    left.set_title("best validation accuracy per level")
    right.set_xlabel("block coordinate descent iteration (levels marked by their layers)")
    _percent_axis(right, "validation accuracy (%)")
    right.set_ylim(max(0.0, right.get_ylim()[0]), 100.5)
    right.set_title("validation accuracy per iteration")
    problem = summaries[0]["problem"]
    source = "the paper's Table 1 as a plot" if problem == "mnist" else "the paper's Figure 3"
    fig.suptitle(f"{problem}: multilevel training, T = {summaries[0]['settings']['final_time']:g} ({source})")
    return fig


def _class_colors(n_classes: int) -> ListedColormap:
    return ListedColormap([f"C{c}" for c in range(n_classes)])


def _two_dimensional(Y: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """``Y`` itself with two columns, else its projection on the two principal directions."""
    if Y.shape[1] == 2:
        return Y, ("feature 1", "feature 2")
    centred = Y - Y.mean(axis=0)
    _, _, Vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ Vt[:2].T, ("principal direction 1", "principal direction 2")


def plot_2d(fig: Figure, runs: Sequence[Run], grid: int = GRID) -> Figure:
    """Figures 4-6: data, propagated features and prediction over the plane, one row per run.

    Column 1 shows the training points coloured by class; column 2 their
    features after the last layer, :math:`Y_N` (projected on their two
    principal directions when the network is wider than 2); column 3 the
    class the network predicts on a ``grid x grid`` lattice over the data,
    with the validation points and their validation accuracy.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        An empty figure.
    runs : sequence of Run
        Runs on the same two-dimensional problem.
    grid : int
        Lattice points per axis of the prediction.

    Returns
    -------
    matplotlib.figure.Figure
    """
    axes = np.atleast_2d(fig.subplots(len(runs), 3, squeeze=False))
    for row, run in zip(axes, runs):
        data = run.data
        colors = _class_colors(data.n_classes)
        size = 4 if data.Y_train.shape[0] > 2000 else 8
        row[0].scatter(*data.Y_train.T, c=data.C_train, cmap=colors, vmin=-0.5, vmax=data.n_classes - 0.5, s=size)
        row[0].set_title(f"{run.settings.stepper}: training data ({data.Y_train.shape[0]} points)")

        features, labels = _two_dimensional(run.features(data.Y_train))
        row[1].scatter(*features.T, c=data.C_train, cmap=colors, vmin=-0.5, vmax=data.n_classes - 0.5, s=size)
        row[1].set_xlabel(labels[0])
        row[1].set_ylabel(labels[1])
        row[1].set_title(f"propagated features $Y_N$, N = {run.network.n_steps}, width {run.settings.width}")

        low, high = data.Y_train.min(axis=0), data.Y_train.max(axis=0)
        low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
        x1, x2 = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
        classes = run.predict(np.column_stack([x1.ravel(), x2.ravel()])).reshape(x1.shape)
        row[2].imshow(classes, origin="lower", extent=(low[0], high[0], low[1], high[1]), cmap=colors,
                      vmin=-0.5, vmax=data.n_classes - 0.5, alpha=0.35, aspect="auto", interpolation="nearest")
        row[2].scatter(*data.Y_val.T, c=data.C_val, cmap=colors, vmin=-0.5, vmax=data.n_classes - 0.5, s=size,
                       edgecolors="k", linewidths=0.2)
        accuracy = run.summary()["final_val_accuracy"]
        row[2].set_title(f"prediction (shaded) and validation points: {100 * accuracy:.1f}%")
        for ax in (row[0], row[2]):
            ax.set_xlabel("$y_1$")
            ax.set_ylabel("$y_2$")
    fig.suptitle(f"{runs[0].settings.problem}: data, propagated features, prediction (paper's Figures 4-6)")
    return fig


def plot_mnist(fig: Figure, run: Run, n_examples: int = 4) -> Figure:
    """Figure 7: input images, their propagated images (every channel) and the classifier weights.

    The weights of class ``k`` are the ``k``-th column of :math:`W`, one
    ``28 x 28`` image per channel, shown summed over the channels (the
    classifier takes the inner product of each channel with its image).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        An empty figure.
    run : Run
        A run on MNIST.
    n_examples : int
        Validation images to show.

    Returns
    -------
    matplotlib.figure.Figure
    """
    channels = run.settings.width
    height, width = run.data.image_shape[1:]
    images = run.data.Y_val[:n_examples]
    propagated = run.features(images).reshape(n_examples, channels, height, width)
    predicted = run.predict(images)
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1, n_examples, 2])
    for ax, image, label, guess in zip(top.subplots(1, n_examples), images, run.data.C_val, predicted):
        ax.imshow(image.reshape(height, width), cmap="gray")
        ax.set_title(f"label {label}, predicted {guess}", fontsize="small")
        ax.axis("off")
    top.suptitle("input images $Y_0$ (validation set)")
    for i, row in enumerate(middle.subplots(n_examples, channels, squeeze=False)):
        for c, ax in enumerate(row):
            ax.imshow(propagated[i, c], cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"channel {c + 1}", fontsize="small")
    middle.suptitle(f"propagated images $Y_N$ (N = {run.network.n_steps}, {channels} channels)")
    W = run.params()["W"].reshape(channels, height, width, -1).sum(axis=0)
    for k, ax in enumerate(bottom.subplots(2, int(np.ceil(W.shape[-1] / 2))).ravel()):
        ax.imshow(W[..., k], cmap="RdBu_r", vmin=-np.abs(W[..., k]).max(), vmax=np.abs(W[..., k]).max())
        ax.set_title(f"class {k}", fontsize="small")
        ax.axis("off")
    bottom.suptitle("classifier weights $W$ (summed over the channels)")
    fig.suptitle(f"MNIST, {run.settings.stepper}: validation error "
                 f"{100 * (1 - run.summary()['final_val_accuracy']):.2f}% (paper's Figure 7)")
    return fig
