"""Run folders: ``results.json``, ``params.h5`` and the figures of one run or of a comparison of steppers.

A run folder holds

* ``results.json``: :meth:`Run.summary` (problem, stepper, settings, one
  record per level, best validation accuracy, wall time);
* ``params.h5``: datasets ``theta``, ``W``, ``mu`` of the finest level
  (:func:`ocdl.io.save_params`), the settings, ``n_layers`` and ``stepper_repr`` (the stepper's ``repr``,
  which :func:`~ocdl.experiments.load_run` compares) as attributes;
* ``accuracy.png``: validation accuracy per level and per iteration;
* ``features.png`` (2-D problems) or ``images.png`` (MNIST).

A comparison folder holds one run folder per stepper (with its
``checkpoint.h5``), ``plan.json`` (problem, steppers, settings, and whether
``ocdl demo`` made it: what a resumed comparison reads), ``comparison.json``, ``table.md`` (one table) and
``accuracy.png`` (one figure, all steppers; 2-D problems also
``features.png`` with one row per stepper).

Every file is written atomically (a temporary file renamed over the target,
:func:`ocdl.io.write_file`): a run killed while writing leaves the previous
file or none, never a part of one. ``results.json`` (``comparison.json``) is
written last: its presence marks a complete folder, which ``ocdl train
--resume`` (``ocdl compare --resume``) reports as finished; without it, the
resumed run, its checkpoint finished, writes the folder again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ocdl.solvers import Checkpointing
from ocdl.solvers.checkpoint import CHECKPOINT_NAME

from ..io import save_params, write_file, write_text
from ..reduction import Reduction
from .data import load_data
from .plotting import plot_2d, plot_levels, plot_mnist, uses_error
from .settings import folder_name, paper_settings
from .training import Run, train


def _save(fig: Figure, path: Path) -> Path:
    return write_file(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix[1:]))


def _figure_2d(runs: Sequence[Run], path: Path) -> Path:
    return _save(plot_2d(Figure(figsize=(16, 4.8 * len(runs)), layout="constrained"), runs), path)


def _figure_levels(summaries: Sequence[dict], path: Path) -> Path:
    return _save(plot_levels(Figure(figsize=(14, 5), layout="constrained"), summaries), path)


def write_run(run: Run, out: str | Path) -> dict[str, Path]:
    """Write the run folder ``out`` (see the module docstring); return the paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run.summary()
    paths = {"params": out / "params.h5"}
    params = run.params()
    recorded = dict(summary["settings"], n_layers=run.network.n_steps, stepper_repr=repr(run.network.stepper))
    save_params(paths["params"], params["theta"], params["W"], params["mu"], settings=recorded)
    paths["accuracy"] = _figure_levels([summary], out / "accuracy.png")
    if run.settings.problem == "mnist":
        fig = plot_mnist(Figure(figsize=(11, 13), layout="constrained"), run)
        paths["images"] = _save(fig, out / "images.png")
    else:
        paths["features"] = _figure_2d([run], out / "features.png")
    paths["results"] = write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")  # last: complete
    return paths


def results_table(summaries: Sequence[dict]) -> str:
    """One Markdown table of several runs on one problem: a row per level, two columns per stepper.

    2-D problems: training accuracy and best validation accuracy (%);
    MNIST: training and validation error (%), as the paper's Table 1.
    The last rows give each run's best validation figure and wall time.
    """
    error = uses_error(summaries[0]["problem"])

    def percent(accuracy: float) -> str:
        return f"{100 * (1 - accuracy if error else accuracy):.2f}"

    names = ("train error", "val error") if error else ("train acc", "best val acc")
    header = ["layers"] + [f"{s['stepper']} {name} (%)" for s in summaries for name in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_layers = [{rec["n_layers"]: rec for rec in s["levels"]} for s in summaries]
    for n_layers in sorted(set().union(*by_layers)):
        cells = [str(n_layers)]
        for levels in by_layers:
            rec = levels.get(n_layers)
            cells += [percent(rec["train_accuracy"]), percent(rec["best_val_accuracy"])] if rec else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    best = ["best val" + (" error" if error else "")]
    times = ["time (s)"]
    for s in summaries:
        best += ["", f"{percent(s['best_val_accuracy'])} ({s['best_val_n_layers']} layers)"]
        times += ["", seconds(s["time_s"])]
    lines += ["| " + " | ".join(best) + " |", "| " + " | ".join(times) + " |"]
    return "\n".join(lines)


def seconds(t: float) -> str:
    """A wall time for a table: one decimal from a second on, two significant digits below (``0.042``)."""
    return f"{t:.1f}" if t >= 1 else f"{t:.2g}"


PLAN_NAME = "plan.json"
"""The file of a comparison folder that records its problem, steppers and settings when it starts."""


def compare(problem: str, steppers: Sequence[str], out: str | Path, progress: bool = True, checkpoint_every: int = 10,
            resume: bool = False, reduction: Reduction | None = None, demo: bool = False,
            **overrides) -> tuple[list[dict], str]:
    """Train every stepper on ``problem`` with the paper's settings (and ``overrides``); write the folder ``out``.

    Each stepper's run writes its checkpoint, ``out / stepper / checkpoint.h5``
    (a user's ``"module:Class"`` in the folder ``module.Class``: :func:`~ocdl.experiments.settings.folder_name`)
    (:data:`ocdl.solvers.checkpoint.CHECKPOINT_NAME`), as ``ocdl train`` does,
    and ``out / plan.json`` records the comparison when it starts, so that an
    interrupted comparison continues with ``resume=True`` (:func:`resume_compare`).

    Parameters
    ----------
    problem : str
        One of :data:`~ocdl.experiments.PROBLEMS`.
    steppers : sequence of str
        The steppers to compare (distinct).
    out : path
        The comparison folder (see the module docstring).
    progress : bool
        Progress bars (steppers and levels).
    checkpoint_every : int
        Iterations between checkpoints (also at each level's end and on Ctrl-C).
    resume : bool
        Continue each stepper's run from its checkpoint where there is one (a
        finished run is not trained again); the same result as an
        uninterrupted comparison.
    reduction : Reduction, optional
        Train on this process's share of the examples (see :func:`train`); only
        rank 0 writes ``out``.
    demo : bool
        Recorded in ``plan.json``: the folder is ``ocdl demo``'s, which a later
        demo replaces (any other comparison it keeps).
    **overrides
        Settings for every run (``None`` values keep the paper's).

    Returns
    -------
    (summaries, table) : the runs' ``results.json`` contents and the Markdown table.

    Raises
    ------
    ocdl.solvers.checkpoint.TrainingInterrupted
        On Ctrl-C, after the running stepper's checkpoint is written.
    """
    if not steppers or len({folder_name(stepper) for stepper in steppers}) != len(steppers):
        raise ValueError(f"steppers must be distinct and at least one, their run folders too, got {list(steppers)}")
    all_settings = [paper_settings(problem, stepper, **overrides) for stepper in steppers]  # validate all first
    data = load_data(all_settings[0], reduction)  # the same for every stepper (this process's share of MNIST)
    out = Path(out)
    writes = reduction is None or reduction.rank == 0
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        plan = {"problem": problem, "steppers": list(steppers), "overrides": {k: v for k, v in overrides.items()
                                                                              if v is not None}, "demo": bool(demo)}
        write_text(out / PLAN_NAME, json.dumps(plan, indent=2) + "\n")
    runs = []
    for settings in tqdm(all_settings, desc=f"compare on {problem}", disable=not progress):
        folder = out / folder_name(settings.stepper)
        checkpoint = Checkpointing(folder / CHECKPOINT_NAME, every=checkpoint_every, resume=resume)
        run = train(settings, data, progress=progress, checkpoint=checkpoint, reduction=reduction)
        if writes:
            write_run(run, folder)
        runs.append(run)
    summaries = [run.summary() for run in runs]
    table = results_table(summaries)
    if not writes:
        return summaries, table
    write_text(out / "table.md", table + "\n")
    _figure_levels(summaries, out / "accuracy.png")
    if problem != "mnist":
        _figure_2d(runs, out / "features.png")
    write_text(out / "comparison.json", json.dumps(summaries, indent=2) + "\n")  # last: the folder is complete
    return summaries, table


def compare_plan(out: str | Path) -> dict:
    """The ``problem``, ``steppers`` and ``overrides`` that :func:`compare` recorded in the folder ``out``.

    Raises
    ------
    FileNotFoundError
        If ``out`` holds no ``plan.json`` (not a comparison folder, or one
        written before comparisons were resumable).
    """
    path = Path(out) / PLAN_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; {out} is not a comparison folder that can be resumed")
    return json.loads(path.read_text(encoding="utf-8"))


def resume_compare(out: str | Path, progress: bool = True, checkpoint_every: int = 10,
                   reduction: Reduction | None = None, **changes) -> tuple[list[dict], str]:
    """Continue the comparison in the folder ``out`` (:func:`compare` with ``resume=True`` and its recorded plan).

    ``changes`` replace recorded settings (the command line lets ``data_dir`` change).
    """
    plan = compare_plan(out)
    overrides = plan["overrides"] | {k: v for k, v in changes.items() if v is not None}
    return compare(plan["problem"], plan["steppers"], out, progress=progress, checkpoint_every=checkpoint_every,
                   resume=True, reduction=reduction, demo=plan.get("demo", False), **overrides)
