r"""How much a trained network's forward propagation amplifies its input, level by level.

For every level of a run (``ocdl train ... --out DIR``; its ``checkpoint.h5``
keeps each finished level's parameters :math:`\theta` with :math:`N` layers)
this prints the input sensitivity
:math:`\| \partial Y_N / \partial Y_0 \|_2` (:func:`ocdl.input_sensitivity`)
on ``--examples`` validation examples, for the trained network and for the
same :math:`\theta` prolongated to :math:`2N, 4N, \dots` layers up to the
run's finest level (:func:`ocdl.solvers.multilevel.prolongate`, the multilevel
initial guess). Prolongation halves :math:`h` and keeps :math:`\theta(t)`:
where the discretisation resolves the dynamics, the sensitivity hardly
changes; where it does not (forward Euler on the imaginary eigenvalues of an
antisymmetric :math:`K`, :math:`|1 + ih\omega| > 1`), it falls towards the
continuous value as :math:`h \to 0`, and the finer level starts from a network
that propagates the features differently from the one that was trained.

Run ``python examples/prolongation_stability.py runs/mnist-antisymmetric --examples 64``;
prints one JSON record per (trained level, evaluated depth) and a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ocdl.solvers.checkpoint import load_checkpoint
from ocdl.solvers.multilevel import prolongate

from ocdl import input_sensitivity
from ocdl.experiments import Settings, build_network, load_data, widen
from ocdl.io import OcdlFileError


def sensitivities(run_dir: str | Path, n_examples: int = 64) -> list[dict]:
    """One record per trained level and depth: ``{"trained_layers", "n_layers", "h", "sensitivity"}``."""
    checkpoint = load_checkpoint(Path(run_dir) / "checkpoint.h5")
    settings = Settings(**checkpoint.settings)
    data = load_data(settings)
    Y0 = np.asarray(widen(data.Y_val[:n_examples], settings), dtype=np.float64)  # derivatives in float64
    finest = settings.max_layers
    records = []
    for level in checkpoint.levels:
        net = build_network(settings, level["n_layers"])
        theta = np.asarray(level["result"].x.theta, dtype=np.float64)
        while True:
            records.append({"trained_layers": level["n_layers"], "n_layers": net.n_steps, "h": net.h,
                            "sensitivity": input_sensitivity(net, theta, Y0)})
            if 2 * net.n_steps > finest:
                break
            theta, net = prolongate(theta, net), net.with_steps(2 * net.n_steps)
    return records


def table(records: list[dict]) -> str:
    """Markdown: one row per trained level, one column per depth."""
    depths = sorted({rec["n_layers"] for rec in records})
    lines = ["| trained at | " + " | ".join(f"N = {n}" for n in depths) + " |", "|---" * (len(depths) + 1) + "|"]
    for trained in sorted({rec["trained_layers"] for rec in records}):
        row = {rec["n_layers"]: rec["sensitivity"] for rec in records if rec["trained_layers"] == trained}
        lines.append(f"| {trained} layers | " + " | ".join(f"{row[n]:.3f}" if n in row else "" for n in depths) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run folder of `ocdl train` (holds checkpoint.h5)")
    parser.add_argument("--examples", type=int, default=64, help="validation examples to linearise at")
    args = parser.parse_args(argv)
    try:
        records = sensitivities(args.run_dir, args.examples)
    except OcdlFileError as error:  # no checkpoint (not a folder of `ocdl train`), or a damaged one
        parser.exit(2, f"prolongation_stability.py: {error}\n")
    for rec in records:
        print(json.dumps(rec))
    print(table(records))
    return records


if __name__ == "__main__":
    main()
