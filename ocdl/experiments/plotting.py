"""The figures of the paper's section 6, drawn on Matplotlib figures (no pyplot state).

* :func:`plot_levels`: best validation accuracy (MNIST: error) per level and
  per stepper (Figure 3), with that of every iteration beside it;
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
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .training import Run

GRID = 150
"""Points per axis of the prediction over the plane."""


def uses_error(problem: str) -> bool:
    """Whether ``problem``'s tables and figures give errors (MNIST, as the paper's Table 1) rather than accuracies."""
    return problem == "mnist"


def _percent_axis(ax, label: str) -> None:
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)


def _spans_decades(traces: Sequence[np.ndarray]) -> bool:
    """Whether the positive finite values of ``traces`` span more than a factor of 10 (then drawn on a log axis)."""
    values = np.concatenate([np.ravel(t) for t in traces]) if traces else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and values.max() > 10 * values.min()


def plot_levels(fig: Figure, summaries: Sequence[dict]) -> Figure:
    """Figure 3: best validation accuracy against the number of layers, and per iteration.

    MNIST is drawn as the validation error (the paper's Table 1 and
    :func:`~ocdl.experiments.results_table` give errors there), the 2-D
    problems as the accuracy. Errors per iteration that span more than a
    factor of 10 (a large prolongation transient) are drawn on a log axis.

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
    error = uses_error(summaries[0]["problem"])
    measure = "error" if error else "accuracy"

    def percent(accuracy):
        accuracy = np.asarray(accuracy, dtype=float)  # None (a failed iteration): NaN
        return 100 * (1 - accuracy if error else accuracy)

    traces, lines, labels = [], [], []
    for i, summary in enumerate(summaries):
        levels = summary["levels"]
        best = percent([rec["best_val_accuracy"] for rec in levels])
        lines += left.plot([rec["n_layers"] for rec in levels], best, "o-", color=f"C{i}")
        labels.append(f"{summary['stepper']} (best {np.nanmin(best) if error else np.nanmax(best):.2f}%)")
        for k, rec in enumerate(levels):
            trace = percent(rec["val_accuracy"])
            right.plot(k * span + np.arange(1, trace.size + 1), trace, color=f"C{i}", linewidth=1)
            traces.append(trace)
    for k, n_layers in enumerate(all_layers):
        if k:
            right.axvline(k * span + 0.5, color="0.75", linewidth=0.8)
        right.text(k * span + 1, 0.02, f"N={n_layers}", transform=right.get_xaxis_transform(),
                   fontsize="x-small", color="0.35")
    left.set_xscale("log", base=2)
    left.set_xticks(all_layers, [str(n) for n in all_layers])
    left.set_xlabel("layers $N$ (multilevel)")
    _percent_axis(left, f"best validation {measure} (%)")
    left.legend(lines, labels, fontsize="small")  # given: a label would be left out where it begins with "_"
    left.set_title(f"best validation {measure} per level")
    right.set_xlabel("block coordinate descent iteration (levels marked by their layers)")
    _percent_axis(right, f"validation {measure} (%)")
    if error and _spans_decades(traces):  # a transient (Verlet's 56% after a prolongation) would flatten the rest
        right.set_yscale("log")
        right.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, 50 %
        right.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        right.yaxis.set_minor_formatter(NullFormatter())
    elif error:
        right.set_ylim(0.0, min(100.5, right.get_ylim()[1]))
    else:
        right.set_ylim(max(0.0, right.get_ylim()[0]), 100.5)
    right.set_title(f"validation {measure} per iteration")
    problem = summaries[0]["problem"]
    source = "the paper's Table 1 as a plot" if problem == "mnist" else "the paper's Figure 3"
    fig.suptitle(f"{problem}: multilevel training, T = {summaries[0]['settings']['final_time']:g} ({source})")
    return fig


def _class_colors(n_classes: int) -> ListedColormap:
    return ListedColormap([f"C{c}" for c in range(n_classes)])


def _class_handles(n_classes: int) -> list[Line2D]:
    """Legend entries of the classes, coloured as the points."""
    return [Line2D([], [], marker="o", linestyle="", color=f"C{c}", label=f"class {c}") for c in range(n_classes)]


def _level_name(run: Run) -> str:
    """The level whose parameters a run holds (``params.h5``): the finest trained, at its best validation accuracy."""
    which = "finest" if run.network.n_steps == run.settings.levels[-1] else "last trained"
    return f"the {which} level ({run.network.n_steps} layers) at its best iteration"


def _two_dimensional(Y: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """``Y`` itself with two columns, else its projection on the two principal directions."""
    if Y.shape[1] == 2:
        return Y, ("feature 1", "feature 2")
    centred = Y - Y.mean(axis=0)
    _, _, Vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ Vt[:2].T, ("principal direction 1", "principal direction 2")


_BELOW = dict(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, 0.0), borderaxespad=3.3, ncol=3,
              frameon=False)
"""A legend below a panel's axis label (a fixed distance, in font sizes: the panels differ in height); inside,
it covered points (peaks' five classes fill the plane)."""


def plot_2d(fig: Figure, runs: Sequence[Run], grid: int = GRID) -> Figure:
    """Figures 4-6: data, propagated features and prediction over the plane, one row per run.

    Column 1 shows the training points coloured by class (a legend names
    the classes); column 2 their features after the last layer, :math:`Y_N`
    (projected on their two principal directions when the network is wider
    than 2); column 3 the class the network predicts on a ``grid x grid``
    lattice over the data, with the validation points, the misclassified ones
    marked by a larger cross, and the validation accuracy. Columns 2 and 3
    show the level whose parameters the run holds (``params.h5``): the
    finest, at its best iteration; the titles say which.

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
        shade = dict(cmap=colors, vmin=-0.5, vmax=data.n_classes - 0.5)
        size = 4 if data.Y_train.shape[0] > 2000 else 8
        row[0].scatter(*data.Y_train.T, c=data.C_train, s=size, **shade)
        row[0].set_title(f"{run.settings.stepper}: training data ({data.Y_train.shape[0]} points)")
        row[0].legend(handles=_class_handles(data.n_classes), **_BELOW)

        features, labels = _two_dimensional(run.features(data.Y_train))
        row[1].scatter(*features.T, c=data.C_train, s=size, **shade)
        row[1].set_xlabel(labels[0])
        row[1].set_ylabel(labels[1])
        row[1].set_title(f"propagated features $Y_N$, {run.network.n_steps} layers, width {run.settings.width}")

        low, high = data.Y_train.min(axis=0), data.Y_train.max(axis=0)
        low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
        x1, x2 = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
        classes = run.predict(np.column_stack([x1.ravel(), x2.ravel()])).reshape(x1.shape)
        row[2].imshow(classes, origin="lower", extent=(low[0], high[0], low[1], high[1]), alpha=0.35,
                      aspect="auto", interpolation="nearest", **shade)
        wrong = run.predict(data.Y_val) != data.C_val
        row[2].scatter(*data.Y_val[~wrong].T, c=data.C_val[~wrong], s=size, edgecolors="k", linewidths=0.2, **shade)
        row[2].scatter(*data.Y_val[wrong].T, c=data.C_val[wrong], s=9 * size, marker="X", edgecolors="k",
                       linewidths=0.6, **shade)
        handles = _class_handles(data.n_classes) + [
            Line2D([], [], marker="X", linestyle="", markerfacecolor="0.8", markeredgecolor="k",
                   label=f"misclassified ({int(wrong.sum())} of {wrong.size})")
        ]
        row[2].legend(handles=handles, **_BELOW)
        accuracy = 1 - wrong.mean()
        row[2].set_title(f"prediction (shaded), {run.network.n_steps} layers: validation {100 * accuracy:.1f}%")
        for ax in (row[0], row[2]):
            ax.set_xlabel("$y_1$")
            ax.set_ylabel("$y_2$")
            ax.set_aspect("equal")  # the data's own shape (the ellipses' 2.5 : 1 looked round)
    fig.suptitle(f"{runs[0].settings.problem}: data, and the features and prediction of the finest level trained, "
                 "at its best iteration (params.h5; paper's Figures 4-6)")
    return fig


def plot_mnist(fig: Figure, run: Run, n_examples: int = 4) -> Figure:
    """Figure 7: input images, their propagated images (every channel) and the classifier weights.

    The weights of class ``k`` are the ``k``-th column of :math:`W`, one
    ``28 x 28`` image per channel, shown summed over the channels (the
    classifier takes the inner product of each channel with its image), all
    classes on one colour scale with its colour bar. The title gives the
    validation error, as the table does for MNIST.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        An empty figure.
    run : Run
        A run on MNIST.
    n_examples : int
        Validation images to show, the first ones (fewer if the run holds fewer: rank 0's share under
        ``mpiexec``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    channels = run.settings.width
    height, width = run.data.image_shape[1:]
    n_examples = min(n_examples, run.data.Y_val.shape[0])  # rank 0's share of them under mpiexec
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
    middle.suptitle(f"propagated images $Y_N$ (N = {run.network.n_steps}, {channels} channels; each image in its "
                    "own grey scale)")
    W = run.params()["W"].reshape(channels, height, width, -1).sum(axis=0)
    scale = float(np.abs(W).max()) or 1.0  # one colour scale for all classes, shown by the colour bar
    weight_axes = bottom.subplots(2, int(np.ceil(W.shape[-1] / 2)))
    for k, ax in enumerate(weight_axes.ravel()):
        image = ax.imshow(W[..., k], cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(f"class {k}", fontsize="small")
        ax.axis("off")
    bottom.colorbar(image, ax=weight_axes, shrink=0.9, label="weight")
    bottom.suptitle("classifier weights $W$ (summed over the channels; one colour scale)")
    error = 1 - run.summary()["final_val_accuracy"]
    fig.suptitle(f"MNIST, {run.settings.stepper}, {_level_name(run)} (params.h5): validation error "
                 f"{100 * error:.2f}% (paper's Figure 7)")
    return fig
