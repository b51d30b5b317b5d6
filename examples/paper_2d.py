r"""Section 6 of Haber & Ruthotto (2017) on the 2-D problems: Figures 3-6 and the best validation accuracies.

For each of the concentric ellipses, the swiss roll and the peaks level sets,
trains the ResNet, the antisymmetric ResNet and the Hamiltonian network
(Verlet) by multilevel block coordinate descent with the paper's settings
(:mod:`ocdl.experiments.settings`) and writes, per problem, a comparison
folder (:func:`ocdl.experiments.compare`: ``table.md``, ``accuracy.png`` =
Figure 3, ``features.png`` = Figures 4-6, one run folder per stepper). Prints
each problem's table and a summary of the best validation accuracies beside
the paper's.

The paper trains up to 1024 layers, as this script does by default;
``--max-layers`` takes fewer (each level costs about twice the one before).
The whole run takes about 16 minutes on one core (``OMP_NUM_THREADS=1``:
these small problems gain nothing from more BLAS threads).

Run ``OMP_NUM_THREADS=1 python examples/paper_2d.py [--max-layers 256] [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocdl.experiments import PAPER_STEPPERS, compare

DEFAULT_OUT = Path("runs") / "paper_2d"
PROBLEMS = ("ellipses", "swiss-roll", "peaks")

#: Best validation accuracy (%) reported in the paper's section 6.
PAPER_ACCURACY = {
    "ellipses": {"resnet": 100.0, "antisymmetric": 100.0, "verlet": 100.0},
    "swiss-roll": {"resnet": 100.0, "antisymmetric": 100.0, "verlet": 100.0},
    "peaks": {"resnet": 98.8, "antisymmetric": 98.8, "verlet": 99.1},
}


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the comparisons; return every run's ``results.json`` content."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated problems")
    parser.add_argument("--steppers", default=",".join(PAPER_STEPPERS), help="comma-separated steppers")
    parser.add_argument("--max-layers", type=int, default=1024, help="finest level (the paper's 1024)")
    parser.add_argument("--iterations", type=int, help="iterations per level (default: the settings')")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="one comparison folder per problem here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    summaries = []
    for problem in args.problems.split(","):
        runs, table = compare(problem, args.steppers.split(","), args.out / problem, progress=not args.no_progress,
                              max_layers=args.max_layers, max_iter=args.iterations)
        print(f"\n{problem}:\n{table}", flush=True)
        summaries += runs
    print(f"\nbest validation accuracy, multilevel 4 to {args.max_layers} layers (paper's figure in brackets):")
    print("| problem | stepper | best val acc (%) | at layers | wall time (s) |\n|---|---|---|---|---|")
    for s in summaries:
        paper = PAPER_ACCURACY.get(s["problem"], {}).get(s["stepper"])
        bracket = f" [{paper:g}]" if paper is not None else ""
        print(f"| {s['problem']} | {s['stepper']} | {100 * s['best_val_accuracy']:.2f}{bracket} | "
              f"{s['best_val_n_layers']} | {s['time_s']:.0f} |")
    print(f"wrote {args.out}/")
    return summaries


if __name__ == "__main__":
    main()
