r"""Section 6.4 of Haber & Ruthotto (2017), MNIST: Table 1, Figure 7, and the cost of the full run.

Six channels of ``3 x 3`` convolutions (:math:`n = 6 \cdot 28^2 = 4704`; the
one-channel images are lifted to six channels by duplicating them, as the
paper widens the 2-D data by duplication), :math:`T = 6`, time smoothness
:math:`\alpha = 0.005`, the classifier regularized by the squared discrete
Laplacian of its weight images with weight 0.01, softmax, multilevel with
4, 8, 16 layers; block coordinate descent with the full gradient and a
5,000-example sub-sample for the Gauss-Newton matrix (at most 20 CG
iterations). Steppers: ResNet, antisymmetric ResNet, Verlet.

The paper's run (50,000 training and 10,000 validation images) propagates
``--chunk-size`` examples at a time (5,000), which bounds the memory; in
float32 on 2 cores it takes about 41 minutes for ResNet with 6 iterations
per level. ``--train-size``, ``--val-size``, ``--hessian-batch-size``,
``--max-layers`` and ``--iterations`` make a reduced run, and ``--cost``
instead measures one iteration and one Gauss-Newton product at the given
size and extrapolates them to the paper's size (linear in the examples and
in the layers).

Writes a comparison folder (``table.md`` = Table 1, training and validation
error per level and stepper; ``<stepper>/images.png`` = Figure 7).

Run ``python examples/paper_mnist.py --train-size 1000 --val-size 500 --max-layers 8 [--out DIR]``
or ``python examples/paper_mnist.py --cost --train-size 1000 --val-size 500``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ocdl.experiments import DTYPES, MEMORY, PAPER_STEPPERS, compare, iteration_cost, paper_settings

DEFAULT_OUT = Path("runs") / "paper_mnist"
PAPER_SIZE = {"n_train": 50000, "n_val": 10000, "n_hessian": 5000, "max_layers": 16, "levels": (4, 8, 16)}

#: Validation error (%) at 16 layers reported in the paper's Table 1.
PAPER_VAL_ERROR = {"resnet": 1.53, "antisymmetric": 1.38, "verlet": 1.58}


def full_size_estimate(cost: dict, cg_iters: int = 20) -> float:
    """Seconds per iteration at the paper's size and 16 layers, extrapolated from :func:`iteration_cost`.

    ``cg_iters`` Gauss-Newton products on 5,000 examples plus the rest of the
    measured iteration scaled from ``n_train`` to 50,000 examples, all
    scaled from ``n_layers`` to 16 layers.
    """
    rest = cost["iteration_s"] - cost["cg_iters"] * cost["gn_product_s"]
    per_layers = (
        cg_iters * cost["gn_product_s"] * PAPER_SIZE["n_hessian"] / cost["n_hessian"]
        + rest * PAPER_SIZE["n_train"] / cost["n_train"]
    )
    return per_layers * PAPER_SIZE["max_layers"] / cost["n_layers"]


def main(argv: list[str] | None = None) -> list[dict] | dict:
    """Run the reduced comparison (or, with ``--cost``, the cost measurement); return what it printed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steppers", default=",".join(PAPER_STEPPERS), help="comma-separated steppers")
    parser.add_argument("--train-size", type=int, help="training images (paper: 50000)")
    parser.add_argument("--val-size", type=int, help="validation images (paper: 10000)")
    parser.add_argument("--hessian-batch-size", type=int, help="examples of the Gauss-Newton matrix (paper: 5000)")
    parser.add_argument("--chunk-size", type=int, help="examples propagated at once (5000)")
    parser.add_argument("--max-layers", type=int, help="finest level (paper: 16)")
    parser.add_argument("--iterations", type=int, help="iterations per level")
    parser.add_argument("--data-dir", help="folder of the MNIST files")
    parser.add_argument("--memory", choices=MEMORY,
                        help="forward states: auto (stored when they fit in half the memory), store-all, recompute, "
                             "reversible (Verlet)")
    parser.add_argument("--dtype", choices=DTYPES, help="float64 (default) or float32")
    parser.add_argument("--cost", action="store_true", help="measure one iteration and extrapolate to full size")
    parser.add_argument("--cost-layers", type=int, default=4, help="layers of the --cost measurement (4)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="comparison folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    overrides = dict(train_size=args.train_size, val_size=args.val_size, hessian_batch_size=args.hessian_batch_size,
                     chunk_size=args.chunk_size,
                     max_layers=args.max_layers, max_iter=args.iterations, data_dir=args.data_dir,
                     memory=args.memory, dtype=args.dtype)

    if args.cost:
        cost = iteration_cost(paper_settings("mnist", "resnet", **overrides), args.cost_layers,
                              progress=not args.no_progress)
        cost["full_size_iteration_s"] = full_size_estimate(cost)
        iterations = paper_settings("mnist", "resnet").max_iter
        levels = PAPER_SIZE["levels"]
        cost["full_run_s_per_stepper"] = cost["full_size_iteration_s"] * iterations * sum(levels) / levels[-1]
        print(json.dumps(cost, indent=2))
        print(f"one iteration at the paper's size, 16 layers (ResNet): about {cost['full_size_iteration_s'] / 60:.0f}"
              f" min; {iterations} iterations on each of the levels {levels}: about "
              f"{cost['full_run_s_per_stepper'] / 3600:.1f} h per stepper")
        return cost

    summaries, table = compare("mnist", args.steppers.split(","), args.out, progress=not args.no_progress,
                               **overrides)
    print(table)
    print("paper, validation error at 16 layers (50,000 training images): "
          + ", ".join(f"{name} {error}%" for name, error in PAPER_VAL_ERROR.items()))
    print(f"wrote {args.out}/")
    return summaries


if __name__ == "__main__":
    main()
