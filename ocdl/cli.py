"""The ``ocdl`` command: train the paper's networks, compare steppers, draw the stability figures.

::

    ocdl demo                                     # ResNet, antisymmetric, Verlet on ellipses; prints a table
    ocdl train --problem swiss-roll --stepper verlet --max-layers 64 --out runs/swiss-verlet
    ocdl train --resume runs/swiss-verlet             # after Ctrl-C or a crash: continue from the checkpoint
    ocdl compare --problem peaks --steppers resnet,antisymmetric,verlet --max-layers 64 --out runs/peaks
    ocdl train --problem mnist --stepper resnet --train-size 5000 --val-size 1000 --max-layers 8 --out runs/mnist
    ocdl phase-plane --out runs/stability

Options left out take the paper's settings for the problem
(:func:`ocdl.experiments.paper_settings`). Mistakes in the input end with a
one-line message on stderr and exit status 2 (usage) or 1 (values, files).

Started by ``mpiexec -n P`` (``P > 1``), ``train``, ``compare`` and ``demo``
split the examples over the ``P`` processes (:mod:`ocdl.distributed`): rank 0
alone prints, draws the progress bars and writes files; an error on any rank
ends every rank with the same message (printed once) and exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ocdl.solvers.checkpoint import CHECKPOINT_NAME, Checkpointing, TrainingInterrupted, load_checkpoint

from .backend import out_of_memory
from .distributed import abort, launched_rank, world
from .experiments import (
    DTYPES,
    MEMORY,
    PAPER_STEPPERS,
    PROBLEMS,
    Run,
    Settings,
    compare,
    load_data,
    paper_settings,
    results_table,
    stability_figures,
    train,
    write_run,
)
from .factory import KINDS
from .io import OcdlFileError, leftover_temporaries
from .validation import PropagationError

DEMO_MAX_LAYERS = 64
QUICK = dict(max_layers=8, max_iter=3)
"""The ``--quick`` budget of ``ocdl demo``: a smoke test of a few seconds."""


class UsageError(Exception):
    """A command line argparse rejects (raised instead of printing the usage and exiting)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def _steppers(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in KINDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"steppers must be a comma-separated list of {', '.join(KINDS)}; got {text!r}"
        )
    return names


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """Options of :class:`ocdl.experiments.Settings` (default: the paper's value for the problem)."""
    group = parser.add_argument_group("settings (default: the paper's for the problem)")
    add = group.add_argument
    add("--max-layers", type=int, metavar="N", help="finest level's layers (2-D: 1024, MNIST: 16)")
    add("--first-layers", type=int, metavar="N", help="coarsest level's layers (4)")
    add("--width", type=int, metavar="n", help="features (2-D, points duplicated) or channels (MNIST)")
    add("--final-time", type=float, metavar="T", help="final time T (ellipses, swiss roll 20; peaks 5; MNIST 6)")
    add("--alpha", type=float, dest="alpha_theta", metavar="A", help="time-smoothness weight of the network")
    add("--alpha-w", type=float, dest="alpha_W", metavar="A", help="classifier regularization weight")
    add("--iterations", type=int, dest="max_iter", metavar="K", help="block coordinate descent iterations per level "
        "(20)")
    add("--batch-size", type=int, metavar="S", help="examples of the gradient per iteration (all)")
    add("--hessian-batch-size", type=int, metavar="S", help="Gauss-Newton matrix's examples (2-D: all, MNIST: 5000)")
    add("--chunk-size", type=int, metavar="S", help="examples propagated at once, bounds the memory (2-D: all, "
        "MNIST: 5000)")
    add("--cg-maxiter", type=int, metavar="K", help="CG iterations of the Gauss-Newton step (20)")
    add("--classifier-newton-steps", type=int, metavar="K", help="classifier's Newton-PCG steps per iteration "
        "(2-D: 2, MNIST: 5)")
    add("--classifier-cg-maxiter", type=int, metavar="K", help="CG iterations per classifier Newton step "
        "(2-D: 2, MNIST: 10)")
    add("--gamma", type=float, metavar="G", help="gamma of the antisymmetric ResNet (0)")
    add("--init-scale", type=float, metavar="X", help="scale of the random initial weights (1)")
    add("--seed", type=int, metavar="I", help="seed of weights, batches, row order and ellipses/peaks points (0)")
    add("--device", choices=("cpu", "gpu"), help="cpu (NumPy) or gpu (CuPy)")
    add("--dtype", choices=DTYPES, help="floating type of data and parameters (float64)")
    add("--memory", choices=MEMORY, help="forward states: all stored, recomputed from checkpoints, rebuilt backward "
        "(leapfrog, verlet), or auto: stored when they fit in half the memory, on the GPU half its free memory (auto)")
    add("--data-dir", metavar="DIR", help="MNIST: folder of the IDX files ($OCDL_MNIST_DIR, shared/data/mnist)")
    add("--train-size", type=int, metavar="S", help="MNIST: training images (50000)")
    add("--val-size", type=int, metavar="S", help="MNIST: validation images (10000)")


_SETTING_NAMES = ("max_layers", "first_layers", "width", "final_time", "alpha_theta", "alpha_W", "max_iter",
                  "batch_size", "hessian_batch_size", "chunk_size", "cg_maxiter", "classifier_newton_steps",
                  "classifier_cg_maxiter", "gamma", "init_scale", "seed",
                  "device", "dtype", "memory", "data_dir", "train_size", "val_size")


def _overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in _SETTING_NAMES if getattr(args, name, None) is not None}


def _report_run(run: Run, paths: dict) -> None:
    print(results_table([run.summary()]))
    for path in paths.values():
        print(f"wrote {path}")


def _resume_settings(path: Path) -> Settings:
    """The settings stored in the checkpoint ``path`` of ``ocdl train``; a one-line error if it cannot resume here."""
    leftovers = [] if path.exists() else leftover_temporaries(path)
    if leftovers:
        raise OcdlFileError(
            f"{path.parent}: no checkpoint was completed in this folder (only {leftovers[0].name}, left by a write "
            "that was killed); start the run again without --resume"
        )
    settings = load_checkpoint(path).settings
    names = {field.name for field in dataclasses.fields(Settings)}
    if set(settings) != names:
        found = "no command-line settings" if not settings else f"settings {sorted(settings)}, not those of ocdl train"
        raise OcdlFileError(
            f"{path}: a checkpoint of the Python API with {found}; resume it from Python with "
            f"ocdl.solvers.multilevel(..., checkpoint=Checkpointing({str(path)!r}, resume=True)) and the same "
            "problem and solver"
        )
    return Settings(**settings)


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        given = sorted(name for name in ("problem", "stepper", *_SETTING_NAMES) if getattr(args, name) is not None)
        if given or args.out:
            raise UsageError(f"ocdl train: --resume takes the settings and the folder from the checkpoint; "
                             f"drop {', '.join('--' + name.replace('_', '-') for name in given) or '--out'}")
        out = Path(args.resume)
        rank0 = _resume_settings(out / CHECKPOINT_NAME) if args.reduction.rank == 0 else None
        settings = args.reduction.gather(rank0)[0]  # rank 0 reads the checkpoint; every rank gets its settings
    else:
        if args.problem is None or args.stepper is None:
            raise UsageError("ocdl train: --problem and --stepper are required (or --resume DIR)")
        settings = paper_settings(args.problem, args.stepper, **_overrides(args))
        out = Path(args.out or Path("runs") / f"{args.problem}-{args.stepper}")
    data = load_data(settings)
    if args.reduction.rank == 0:
        out.mkdir(parents=True, exist_ok=True)  # an unusable folder fails now, not after the training
    checkpoint = Checkpointing(out / CHECKPOINT_NAME, every=args.checkpoint_every, resume=args.resume is not None)
    run = train(settings, data, progress=not args.no_progress, checkpoint=checkpoint, reduction=args.reduction)
    if args.reduction.rank == 0:
        _report_run(run, write_run(run, out))
    return 0


def _compare(args: argparse.Namespace) -> int:
    out = Path(args.out or Path("runs") / f"{args.problem}-compare")
    _, table = compare(args.problem, args.steppers, out, progress=not args.no_progress, reduction=args.reduction,
                       **_overrides(args))
    print(table)
    print(f"wrote {out}/ (table.md, comparison.json, accuracy.png, features.png for 2-D problems, "
          "one folder per stepper)")
    return 0


def _phase_plane(args: argparse.Namespace) -> int:
    if args.reduction.rank == 0:  # no training data to split: one process draws them
        stability_figures(args.out)
    return 0


def _demo(args: argparse.Namespace) -> int:
    budget = dict(QUICK) if args.quick else {"max_layers": args.max_layers}
    start = time.perf_counter()
    _, table = compare("ellipses", PAPER_STEPPERS, args.out, progress=not args.no_progress, reduction=args.reduction,
                       **budget)
    print(f"ResNet, antisymmetric ResNet and Verlet on the concentric ellipses, multilevel 4 to "
          f"{budget['max_layers']} layers (paper's settings otherwise):")
    print(table)
    print(f"demo took {time.perf_counter() - start:.1f} s; wrote {args.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ocdl`` argument parser with its four commands."""
    parser = _Parser(prog="ocdl", description="Deep learning as discrete optimal control (Haber & Ruthotto 2017).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="ResNet, antisymmetric ResNet, Verlet on ellipses, 4 to 64 layers (~15 s)")
    demo.add_argument("--out", default="runs/demo", help="run folder (runs/demo)")
    demo.add_argument("--max-layers", type=int, default=DEMO_MAX_LAYERS, help=f"finest level ({DEMO_MAX_LAYERS})")
    demo.add_argument("--quick", action="store_true", help="a few seconds: 8 layers, 3 iterations per level")
    demo.set_defaults(handler=_demo)

    train_parser = commands.add_parser("train", help="train one stepper on one problem (multilevel)")
    train_parser.add_argument("--problem", choices=PROBLEMS)
    train_parser.add_argument("--stepper", choices=KINDS)
    train_parser.add_argument("--out", metavar="DIR", help="run folder (runs/PROBLEM-STEPPER), with checkpoint.h5")
    train_parser.add_argument("--checkpoint-every", type=int, default=10, metavar="K",
                              help="write DIR/checkpoint.h5 every K iterations (10), after each level, on Ctrl-C")
    train_parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    _add_settings(train_parser)
    train_parser.set_defaults(handler=_train)

    compare_parser = commands.add_parser("compare", help="train several steppers on one problem: one figure, one table")
    compare_parser.add_argument("--problem", required=True, choices=PROBLEMS)
    compare_parser.add_argument("--steppers", type=_steppers, default=list(PAPER_STEPPERS),
                                help="comma-separated steppers (resnet,antisymmetric,verlet)")
    compare_parser.add_argument("--out", help="comparison folder (runs/PROBLEM-compare)")
    _add_settings(compare_parser)
    compare_parser.set_defaults(handler=_compare)

    phase = commands.add_parser("phase-plane", help="the stability figures 1 and 2 (examples 1 and 2)")
    phase.add_argument("--out", default="runs/stability", help="folder of figure1.png, figure2.png (runs/stability)")
    phase.set_defaults(handler=_phase_plane)

    for sub in (demo, train_parser, compare_parser):
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ocdl`` command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 2 for a command line argparse rejects; 1 for invalid
        values, missing or damaged files, a diverging training, or memory
        that ran out (host or GPU: the line names ``--chunk-size`` and
        ``--memory``); 130 when interrupted. Errors print one line on stderr,
        no traceback. Results, parameters and checkpoints are written by a
        rename (:mod:`ocdl.io`): an error leaves each as it was or whole,
        never a part of one. Under ``mpiexec`` every rank returns the same
        status and rank 0 alone prints.
    """
    if launched_rank() > 0:  # rank 0 alone prints (tables, progress bars, warnings, errors)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return _main(argv)
    return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    reduction = None
    try:
        reduction = world()
        with reduction.errors():  # an error of any rank ends every rank, at the latest at the end
            args = build_parser().parse_args(argv)
            args.reduction = reduction
            status = args.handler(args)
            reduction.gather(None)
        return status
    except UsageError as err:
        print(f"{err} (see ocdl --help)", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, OcdlFileError, PropagationError, ImportError) as err:
        print(f"ocdl: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if not out_of_memory(err):
            raise
        print(f"ocdl: error: out of memory: {_one_line(err)}; start again with a smaller --chunk-size "
              "(examples propagated at once) or --memory recompute (fewer stored states)", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        print(f"ocdl: {stop}; continue with: ocdl train --resume {Path(stop.checkpoint).parent}", file=sys.stderr)
        return abort(reduction, 130)
    except KeyboardInterrupt:
        print("ocdl: interrupted", file=sys.stderr)
        return abort(reduction, 130)
