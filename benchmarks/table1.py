"""The paper's Table 1 (MNIST) from the run folders of ``gpu_table1.sh``: where each run stands, and the table.

Usage::

    python benchmarks/table1.py runs/table1                  # each stepper's state, then the Markdown table
    python benchmarks/table1.py runs/table1 --device "one NVIDIA H200, float32"

``DIR/STEPPER`` is the folder of ``ocdl train --out`` for the steppers
``resnet``, ``antisymmetric`` and ``verlet``. A finished run has its
``results.json``; an unfinished one its checkpoint (``checkpoint.h5``: the
level in progress, its iterations, the levels done). The table has one row
per finished run, as in ``docs/experiments.md``: the validation error at
each level (the best level in bold), the training error at the finest, the
paper's validation error at 16 layers (Table 1) and the wall time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STEPPERS = {"resnet": "ResNet", "antisymmetric": "antisymmetric ResNet", "verlet": "Verlet"}
"""The steppers of Table 1, in its order, and their names in the table."""

PAPER_VAL_ERROR = {"resnet": 1.53, "antisymmetric": 1.38, "verlet": 1.58}
"""The paper's validation error (%) at 16 layers (Table 1)."""


def _errors(levels: list[dict]) -> str:
    """``a% / b% / c%``: the validation error at each level, the best in bold."""
    errors = [100 * (1 - rec["best_val_accuracy"]) for rec in levels]
    best = errors.index(min(errors))
    return " / ".join(f"**{e:.2f}%**" if i == best else f"{e:.2f}%" for i, e in enumerate(errors))


def state(folder: Path) -> tuple[str, dict | None]:
    """One line on the run in ``folder``, and its ``results.json`` when it is finished."""
    results = folder / "results.json"
    if results.is_file():
        summary = json.loads(results.read_text(encoding="utf-8"))
        levels = summary["levels"]
        return (f"finished: validation error {_errors(levels).replace('**', '')} at "
                f"{' / '.join(str(rec['n_layers']) for rec in levels)} layers, {summary['time_s']:.0f} s"), summary
    checkpoint = folder / "checkpoint.h5"
    if not checkpoint.is_file():
        return "not started", None
    from ocdl.solvers.checkpoint import load_checkpoint

    saved = load_checkpoint(checkpoint)
    layers, max_iter = saved.run["layers"], saved.settings.get("max_iter")
    line = "unfinished (continue with --resume): "
    if saved.finished:
        line += "every level done, results not yet written"
    else:
        line += (f"level {saved.level + 1} of {len(layers)} ({layers[saved.level]} layers), "
                 f"{saved.iteration} of {max_iter} iterations done")
    if saved.levels:
        line += f"; validation error {_errors(saved.levels).replace('**', '')} at " + " / ".join(
            str(rec["n_layers"]) for rec in saved.levels) + " layers"
    return line, None


def table(summaries: dict[str, dict], device: str | None) -> str:
    """The Markdown table of the finished runs (``summaries`` by stepper)."""
    lines = ["| stepper | validation error at 4 / 8 / 16 layers | training error at 16 layers | paper, 16 layers "
             "| wall time | device |", "|---|---|---|---|---|---|"]
    for stepper, summary in summaries.items():
        levels = summary["levels"]
        where = device or f"{summary.get('device_name', summary['settings']['device'])}, {summary['settings']['dtype']}"
        seconds = summary["time_s"]
        lines.append(f"| {STEPPERS[stepper]} | {_errors(levels)} | {100 * (1 - levels[-1]['train_accuracy']):.2f}% "
                     f"| {PAPER_VAL_ERROR[stepper]:.2f}% | {seconds:.0f} s ({seconds / 60:.0f} min) | {where} |")
    return "\n".join(lines)


def main(argv=None) -> dict[str, dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="the folder of the runs, one subfolder per stepper (gpu_table1.sh: runs/table1)")
    p.add_argument("--device", help="the device column of the table (default: the runs' device and dtype)")
    args = p.parse_args(argv)
    finished = {}
    for stepper in STEPPERS:
        line, summary = state(Path(args.folder) / stepper)
        print(f"{stepper}: {line}")
        if summary is not None:
            finished[stepper] = summary
    if finished:
        print()
        print(table(finished, args.device))
    return finished


if __name__ == "__main__":
    main()
