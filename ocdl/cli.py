"""The ``ocdl`` command: train the paper's networks, compare steppers, draw the stability figures.

::

    ocdl demo                                     # ResNet, antisymmetric, Verlet on ellipses; prints a table
    ocdl train --problem swiss-roll --stepper verlet --max-layers 64 --out runs/swiss-verlet
    ocdl train --resume runs/swiss-verlet             # after Ctrl-C or a crash: continue from the checkpoint
    ocdl train --resume runs/swiss-verlet --max-layers 128   # a finished run: continue it with more levels
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
import inspect
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ocdl.problems import mnist
from ocdl.problems.mnist import ENV_VAR, user_data_dir
from ocdl.solvers.checkpoint import (
    CHECKPOINT_NAME,
    Checkpointing,
    ResumeWarning,
    TrainingInterrupted,
    load_checkpoint,
)

from .backend import out_of_memory
from .distributed import abort, launched_rank, world
from .experiments import (
    DEVICES,
    DTYPES,
    MEMORY,
    PAPER_STEPPERS,
    PROBLEMS,
    Run,
    Settings,
    compare,
    compare_plan,
    folder_name,
    load_data,
    paper_settings,
    results_table,
    resume_compare,
    stability_figures,
    train,
    write_run,
)
from .experiments.cost import finest_level_cost
from .experiments.output import PLAN_NAME
from .factory import KINDS
from .io import OcdlFileError, leftover_temporaries
from .reduction import Reduction
from .validation import PropagationError

DEMO_MAX_LAYERS = 64
QUICK = dict(max_layers=8, max_iter=3)
"""The ``--quick`` budget of ``ocdl demo``: a smoke test of a few seconds."""


class UsageError(Exception):
    """A command line argparse rejects (raised instead of printing the usage and exiting)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


STEPPER_NAMES = f"{', '.join(KINDS)}, or MODULE:CLASS (a LayerStepper subclass of yours, in the current folder or " \
                "importable)"
"""The steppers the options name, in words."""


def _stepper(text: str) -> str:
    """A stepper's name, in form: a name of :data:`~ocdl.KINDS` or ``MODULE:CLASS`` (the settings import a user's
    module, :func:`ocdl.factory.find_kind`, before any data are read; an error there is a value's, status 1)."""
    text = text.strip()
    module, colon, name = text.partition(":")
    if text not in KINDS and not (colon and module and name):
        raise argparse.ArgumentTypeError(f"stepper must be one of {STEPPER_NAMES}; got {text!r}")
    return text


def _steppers(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or len({folder_name(name) for name in names}) != len(names):  # x:y.Z and x.y:Z share a folder
        raise argparse.ArgumentTypeError(f"steppers must be a comma-separated list of distinct names (and run "
                                         f"folders); got {text!r}")
    return [_stepper(name) for name in names]


def _positive_int(text: str) -> int:
    """An option's integer >= 1 (argparse names the option in its message)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


SETTING_OPTIONS = (
    # flag, Settings field, type, metavar, help (the default is added from the paper's settings)
    ("--max-layers", "max_layers", int, "N", "finest level's layers; levels double from --first-layers"),
    ("--first-layers", "first_layers", int, "N", "coarsest level's layers"),
    ("--width", "width", int, "n", "features (2-D, the points duplicated) or channels (MNIST)"),
    ("--final-time", "final_time", float, "T", "final time T; a layer's step is h = T / N"),
    ("--alpha", "alpha_theta", float, "A", "time-smoothness weight of the network"),
    ("--alpha-w", "alpha_W", float, "A", "classifier regularization weight"),
    ("--iterations", "max_iter", int, "K", "block coordinate descent iterations per level"),
    ("--batch-size", "batch_size", int, "S", "examples of the gradient per iteration"),
    ("--hessian-batch-size", "hessian_batch_size", int, "S", "examples of the Gauss-Newton matrix, from the batch"),
    ("--chunk-size", "chunk_size", int, "S", "examples propagated at once; bounds the memory"),
    ("--cg-maxiter", "cg_maxiter", int, "K", "CG iterations of the Gauss-Newton step"),
    ("--classifier-newton-steps", "classifier_newton_steps", int, "K", "classifier's Newton-PCG steps per iteration"),
    ("--classifier-cg-maxiter", "classifier_cg_maxiter", int, "K", "CG iterations per classifier Newton step"),
    ("--gamma", "gamma", float, "G", "gamma of the antisymmetric ResNet (eq. 4.12)"),
    ("--init-scale", "init_scale", float, "X", "scale of the random initial weights"),
    ("--seed", "seed", int, "I", "seed of weights, batches, row order and ellipses/peaks points"),
    ("--device", "device", DEVICES, None, "cpu (NumPy) or gpu (CuPy)"),
    ("--dtype", "dtype", DTYPES, None, "floating type of data and parameters"),
    ("--memory", "memory", MEMORY, None, "forward states: all stored, recomputed from checkpoints, rebuilt backward "
     "(leapfrog, verlet), or auto: at each level, stored when they fit in half the memory, on the GPU half its free "
     "memory; under mpiexec, half a rank's share of it"),
    ("--data-dir", "data_dir", str, "DIR", "MNIST: folder of the four IDX files"),
    ("--train-size", "train_size", int, "S", "MNIST: training images"),
    ("--val-size", "val_size", int, "S", "MNIST: validation images"),
)
"""The command line's options of :class:`~ocdl.experiments.Settings`."""

_SETTING_NAMES = tuple(field for _, field, *_ in SETTING_OPTIONS)

FLAGS = {field: flag for flag, field, *_ in SETTING_OPTIONS} | {"n_train": "--train-size", "n_val": "--val-size"}
"""The option that sets each setting (and the MNIST loader's names for two of them)."""

MAX_HOURS = 24
"""Longest estimated time of the finest level that ``train`` and ``compare`` start without ``--force``."""


def _paper_default(field: str) -> str:
    """The default of ``field`` in words: one value, or the value per problem (and Verlet's where it differs)."""
    if field == "data_dir":
        return f"${ENV_VAR}, else {user_data_dir()}"
    if field in ("train_size", "val_size"):  # the loader's defaults: the paper's split
        return str(inspect.signature(mnist).parameters[{"train_size": "n_train", "val_size": "n_val"}[field]].default)
    per_problem = {}
    for problem in PROBLEMS:
        usual, verlet = (getattr(paper_settings(problem, stepper), field) for stepper in ("resnet", "verlet"))
        text = "all" if usual is None else f"{usual:g}" if isinstance(usual, float) else str(usual)
        if verlet != usual:
            text += f", verlet {verlet}"
        per_problem.setdefault(text, []).append(problem)
    if len(per_problem) == 1:
        return next(iter(per_problem))
    return "; ".join(f"{', '.join(problems)} {text}" for text, problems in per_problem.items())


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """Options of :class:`ocdl.experiments.Settings` (default: the paper's value for the problem)."""
    group = parser.add_argument_group("settings (default: the paper's for the problem)")
    for flag, field, kind, metavar, text in SETTING_OPTIONS:
        typed = {"choices": kind} if isinstance(kind, tuple) else {"type": kind, "metavar": metavar}
        group.add_argument(flag, dest=field, help=f"{text} (default: {_paper_default(field)})", **typed)


def _overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in _SETTING_NAMES if getattr(args, name, None) is not None}


def in_flags(message: str) -> str:
    """``message`` with the names of settings replaced by the options that set them (``max_iter``: ``--iterations``).

    A name of one plain word (``width``, ``device``) is a setting's only where a value or a verb follows it
    (``device 'gpu'``, ``width 3``, ``seed must``), so that "a CUDA device" stays as it is.
    """
    for name in sorted(FLAGS, key=len, reverse=True):
        after = "" if "_" in name else r"(?= (?:must |is |'|\d))"
        message = re.sub(rf"(?<![\w-]){name}(?![\w-]){after}", FLAGS[name], message)
    return message


@contextmanager
def _said_in_flags() -> Iterator[None]:
    """Errors of the settings and the data, told with the options' names."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise type(err)(in_flags(_one_line(err))) from err


def _warn(message: str) -> None:
    print(f"ocdl: warning: {message}", file=sys.stderr)


@contextmanager
def _library_warnings_said() -> Iterator[None]:
    """The library's warnings the command line tells its own way: a
    :class:`~ocdl.solvers.checkpoint.ResumeWarning` (a run resumed on another number of processes) as an
    ``ocdl: warning:`` line; the solvers' warnings of a batch_size or hessian_batch_size above the examples not at
    all (:func:`_check_request` says them in the options' names); others as Python shows them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(hessian_)?batch_size \d+ is more than", UserWarning)
        warnings.simplefilter("always", ResumeWarning)  # a line, also under python -W error
        shown = warnings.showwarning

        def show(message, category, *where) -> None:
            if issubclass(category, ResumeWarning):
                _warn(_one_line(message))
            else:
                shown(message, category, *where)

        warnings.showwarning = show
        yield


def _check_request(settings: Settings, data, force: bool, reduction: Reduction) -> None:
    """Warn about settings that cannot mean what was asked; refuse a finest level of absurd cost unless ``force``.

    Under ``mpiexec`` the cost is one process's (its share of the examples and of the memory).

    Raises
    ------
    ValueError
        If the finest level would take more than :data:`MAX_HOURS` hours or
        more memory than the machine has (estimated by
        :func:`ocdl.experiments.cost.finest_level_cost`) and not ``force``.
    """
    finest = settings.levels[-1]
    cost = finest_level_cost(settings, data, reduction=reduction)
    if (cost.seconds > MAX_HOURS * 3600 or cost.memory_bytes > cost.machine_bytes) and not force:
        raise ValueError(
            f"--max-layers {settings.max_layers}: {len(settings.levels)} levels up to {finest:,} layers; the finest "
            f"would take {cost.describe()}; choose fewer layers, or add --force to run it anyway"
        )
    if finest != settings.max_layers:
        _warn(f"--max-layers {settings.max_layers}: the levels double from --first-layers {settings.first_layers}, "
              f"so the finest level has {finest} layers; use --max-layers {finest}, or {2 * finest} for one more level")
    n_train = data.whole_size("train")
    batch = min(settings.batch_size or n_train, n_train)
    if settings.batch_size is not None and settings.batch_size > n_train:
        _warn(f"--batch-size {settings.batch_size} is more than the {n_train} training examples: every iteration "
              f"takes all {n_train}")
    if settings.hessian_batch_size is not None and settings.hessian_batch_size > batch:
        _warn(f"--hessian-batch-size {settings.hessian_batch_size} is more than the {batch} examples of a batch: "
              f"the Gauss-Newton matrix takes all {batch}")


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars unless --no-progress or stderr is no terminal (a log file would get every redraw); under
    mpiexec, which passes the processes' output through pipes, rank 0's always (the others draw none)."""
    return not args.no_progress and (sys.stderr.isatty() or args.reduction.size > 1)


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


RUN_FILES = (CHECKPOINT_NAME, "results.json", "params.h5", "accuracy.png", "features.png", "images.png")
"""What ``ocdl train`` writes in its folder (``--overwrite`` removes these, and only these, first)."""

COMPARE_FILES = (PLAN_NAME, "comparison.json", "table.md", "accuracy.png", "features.png")
"""What ``ocdl compare`` writes in its folder, beside one run folder per stepper."""



def _comparison_files(out: Path, steppers: Sequence[str]) -> tuple[str, ...]:
    """What the comparison folder ``out`` may hold of ocdl's: its own files and those of the run folders of every
    built-in stepper, of ``steppers`` and of the steppers its ``plan.json`` names (a user's among them)."""
    try:
        planned = compare_plan(out)["steppers"]
    except (OSError, ValueError, KeyError, TypeError):
        planned = []
    planned = [folder_name(name) for name in planned if isinstance(name, str)]
    folders = [folder_name(name) for name in (*KINDS, *steppers)]
    folders += [folder for folder in planned  # a folder inside out: never ../victim
                if folder not in ("", ".", "..") and Path(folder).name == folder]
    return COMPARE_FILES + tuple(f"{folder}/{file}" for folder in dict.fromkeys(folders) for file in RUN_FILES)


def _claim_folder(command: str, out: Path, overwrite: bool, names: Sequence[str], resume_hint: str) -> None:
    """Refuse a folder that holds a run's files unless ``overwrite`` (then remove them); create the folder.

    An unfinished checkpoint is named as such, with how to continue it
    (``resume_hint``); a finished run's outputs with how to keep them.
    """
    held = [name for name in names if (out / name).exists()]
    if held and not overwrite:
        unfinished = [name for name in held if name.endswith(CHECKPOINT_NAME) and not _finished(out / name)]
        if PLAN_NAME in held and "comparison.json" not in held:  # a comparison that has not written its table
            unfinished.insert(0, PLAN_NAME)
        if unfinished:
            raise UsageError(f"ocdl {command}: {out} holds an unfinished run ({', '.join(unfinished)}); continue it "
                             f"with {resume_hint}, or add --overwrite to discard it")
        raise UsageError(f"ocdl {command}: {out} holds a finished run ({', '.join(held)}); choose another --out, or "
                         "add --overwrite to replace it")
    for name in held if overwrite else ():
        (out / name).unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)  # an unusable folder fails now, not after the training
    except OSError as error:  # a file of that name, no permission: the OS's message names no option
        why = "it is a file" if out.is_file() else error.strerror or str(error)
        raise UsageError(f"ocdl {command}: --out {out} cannot be a run folder: {why}") from None


def _finished(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds a finished run (an unreadable one counts as unfinished: it is not discarded)."""
    try:
        return load_checkpoint(checkpoint).finished
    except (OcdlFileError, OSError, ValueError):
        return False


def _absolute_data_dir(overrides: dict) -> dict:
    """``overrides`` with ``data_dir`` made absolute (``~`` expanded), so that a run resumes from any folder."""
    if overrides.get("data_dir") is not None:
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().absolute())
    return overrides


def _resume_folder(command: str, args: argparse.Namespace, kept: Sequence[str], may_change: str = "--data-dir"
                   ) -> Path:
    """The folder ``--resume`` names (itself, or the folder of a file in it); refuse the options a resumed run
    takes from its folder (all but ``--data-dir`` and those in ``kept``: names of settings, or ``"force"``).
    ``may_change`` says in words which options a resumed run takes."""
    given = [name for name in ("problem", "stepper", "steppers", *_SETTING_NAMES)
             if getattr(args, name, None) is not None and name != "data_dir" and name not in kept]
    flags = [FLAGS.get(name, f"--{name}") for name in given] + ["--out"] * bool(args.out)
    flags += ["--force"] * (args.force and "force" not in kept) + ["--overwrite"] * args.overwrite
    if flags:
        raise UsageError(f"ocdl {command}: --resume takes the settings and the folder from the run (only "
                         f"{may_change} may change); drop {', '.join(flags)}")
    path = Path(args.resume)
    return path.parent if path.is_file() else path


def _data_dir_anew(args: argparse.Namespace, stored: str | None) -> str | None:
    """The MNIST folder a resumed run reads instead of its stored one (``None``: the stored one): ``--data-dir``;
    else, where the stored folder no longer exists (it moved), ``$OCDL_MNIST_DIR``. A run started without
    ``--data-dir`` stored none, and reads ``$OCDL_MNIST_DIR`` or the default, as at its start."""
    if args.data_dir is None and stored is not None and Path(stored).is_dir():
        return None
    return _absolute_data_dir({"data_dir": args.data_dir or os.environ.get(ENV_VAR) or None})["data_dir"]


def _data_dir_for_mnist(command: str, args: argparse.Namespace, problem: str) -> None:
    """Refuse ``--data-dir`` on resuming a run of a generated problem (it would be ignored)."""
    if args.data_dir is not None and problem != "mnist":
        raise UsageError(f"ocdl {command}: --data-dir is for mnist; the run in {args.resume} is on {problem}, whose "
                         "generator makes its data: drop --data-dir")


def _finished_message(command: str, out: Path, summaries: Sequence[dict]) -> str:
    """What ``--resume`` says about the finished run or comparison in ``out`` (``summaries``: its results)."""
    best = "; ".join(f"{run['stepper']} {100 * run['best_val_accuracy']:.2f}% at {run['best_val_n_layers']} layers"
                     for run in summaries)
    finest = max(rec["n_layers"] for run in summaries for rec in run["levels"])
    said = (f"ocdl {command}: {out} holds a finished run, up to {finest} layers (best validation accuracy: {best}); "
            "nothing to resume.")
    if command == "train":
        return f"{said} Continue it deeper, from its {finest}-layer level: ocdl train --resume {out} " \
               f"--max-layers {2 * finest}"
    steppers = ",".join(run["stepper"] for run in summaries)
    return (f"{said} A deeper comparison starts anew: ocdl compare --problem {summaries[0]['problem']} --steppers "
            f"{steppers} --max-layers {2 * finest} --out NEW_DIR, with its other settings")


def _deeper(settings: Settings, max_layers: int, out: Path, finished: bool) -> Settings:
    """``settings`` of the run in ``out`` with ``max_layers``, which must add levels to those it planned.

    Raises
    ------
    ValueError
        If ``max_layers`` adds no level (the message names the least that does).
    """
    with _said_in_flags():
        deeper = settings.replace(max_layers=max_layers)
    planned = settings.levels[-1]
    if len(deeper.levels) <= len(settings.levels):
        state = "is finished at" if finished else "plans levels up to"
        raise ValueError(f"--max-layers {max_layers} adds no level to the run in {out}, which {state} {planned} "
                         f"layers; give --max-layers {2 * planned} or more to continue it deeper")
    return deeper


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        deeper = args.max_layers is not None
        out = _resume_folder("train", args, kept=("max_layers", "force") if deeper else (),
                             may_change="--data-dir and, to add levels, --max-layers")
        path = Path(args.resume) if Path(args.resume).is_file() else out / CHECKPOINT_NAME

        def read() -> tuple[Settings, str | None]:
            with _said_in_flags():
                settings = _resume_settings(path)
            if deeper:
                return _deeper(settings, args.max_layers, out, _finished(path)), None
            finished = None
            if _finished(path) and (out / "results.json").is_file():
                summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
                if summary.get("settings") == settings.to_dict():  # else: a deeper run killed before its folder
                    finished = _finished_message("train", out, [summary])
            return settings, finished

        settings, finished = args.reduction.on_rank0(read)
        if finished is not None:
            print(finished)
            return 0
        _data_dir_for_mnist("train", args, settings.problem)
        data_dir = _data_dir_anew(args, settings.data_dir) if settings.problem == "mnist" else None
        if data_dir is not None:
            with _said_in_flags():
                settings = settings.replace(data_dir=data_dir)
        with _said_in_flags():
            data = load_data(settings, args.reduction)
        if deeper:
            _check_request(settings, data, args.force, args.reduction)
    else:
        if args.problem is None or args.stepper is None:
            raise UsageError("ocdl train: --problem and --stepper are required (or --resume DIR)")
        with _said_in_flags():
            settings = paper_settings(args.problem, args.stepper, **_absolute_data_dir(_overrides(args)))
            data = load_data(settings, args.reduction)
        _check_request(settings, data, args.force, args.reduction)
        out = Path(args.out or Path("runs") / f"{args.problem}-{folder_name(args.stepper)}")
        hint = f"ocdl train --resume {out}"
        args.reduction.on_rank0(lambda: _claim_folder("train", out, args.overwrite, RUN_FILES, hint))
        path = out / CHECKPOINT_NAME
    args.resume_hint = f"ocdl train --resume {out}"
    checkpoint = Checkpointing(path, every=args.checkpoint_every, resume=args.resume is not None)
    run = train(settings, data, progress=_progress(args), checkpoint=checkpoint, reduction=args.reduction)
    if args.reduction.rank == 0:
        _report_run(run, write_run(run, out))
    return 0


def _compare(args: argparse.Namespace) -> int:
    if args.resume:
        out = _resume_folder("compare", args, kept=())

        def read() -> tuple[dict, str | None]:
            with _said_in_flags():
                plan = compare_plan(out)
            finished = None
            if (out / "comparison.json").is_file() and all(
                    _finished(out / folder_name(stepper) / CHECKPOINT_NAME) for stepper in plan["steppers"]):
                summaries = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
                finished = _finished_message("compare", out, summaries)
            return plan, finished

        plan, finished = args.reduction.on_rank0(read)
        if finished is not None:
            print(finished)
            return 0
        args.resume_hint = f"ocdl compare --resume {out}"
        _data_dir_for_mnist("compare", args, plan["problem"])
        data_dir = _data_dir_anew(args, plan["overrides"].get("data_dir")) if plan["problem"] == "mnist" else None
        with _said_in_flags():
            _, table = resume_compare(out, progress=_progress(args), checkpoint_every=args.checkpoint_every,
                                      reduction=args.reduction, data_dir=data_dir)
    else:
        if args.problem is None:
            raise UsageError("ocdl compare: --problem is required (or --resume DIR)")
        overrides = _absolute_data_dir(_overrides(args))
        steppers = args.steppers or list(PAPER_STEPPERS)
        out = Path(args.out or Path("runs") / f"{args.problem}-compare")
        with _said_in_flags():
            all_settings = [paper_settings(args.problem, stepper, **overrides) for stepper in steppers]
            data = load_data(all_settings[0], args.reduction)
        for settings in all_settings:
            _check_request(settings, data, args.force, args.reduction)
        args.resume_hint = f"ocdl compare --resume {out}"
        args.reduction.on_rank0(lambda: _claim_folder("compare", out, args.overwrite,
                                                      _comparison_files(out, steppers), args.resume_hint))
        _, table = compare(args.problem, steppers, out, progress=_progress(args),
                           checkpoint_every=args.checkpoint_every, reduction=args.reduction, **overrides)
    print(table)
    print(f"wrote {out}/ (table.md, comparison.json, accuracy.png, features.png for 2-D problems, "
          "one folder per stepper)")
    return 0


def _phase_plane(args: argparse.Namespace) -> int:
    if args.reduction.rank == 0:  # no training data to split: one process draws them
        stability_figures(args.out)
    return 0


def _a_demo(out: Path) -> bool:
    """Whether the folder ``out`` holds a demo's comparison (its ``plan.json`` says so), which a demo replaces."""
    try:
        plan = compare_plan(out)
    except (OSError, ValueError):
        return False
    return plan.get("demo") is True


def _demo(args: argparse.Namespace) -> int:
    budget = dict(QUICK) if args.quick else {"max_layers": args.max_layers}
    start = time.perf_counter()
    out = Path(args.out)
    args.resume_hint = f"ocdl compare --resume {out}"
    args.reduction.on_rank0(lambda: _claim_folder("demo", out, args.overwrite or _a_demo(out),
                                                  _comparison_files(out, PAPER_STEPPERS), args.resume_hint))
    with _said_in_flags():
        _, table = compare("ellipses", PAPER_STEPPERS, out, progress=_progress(args), reduction=args.reduction,
                           demo=True, **budget)
    print(f"ResNet, antisymmetric ResNet and Verlet on the concentric ellipses, multilevel 4 to "
          f"{budget['max_layers']} layers (paper's settings otherwise):")
    print(table)
    print(f"demo took {time.perf_counter() - start:.1f} s; wrote {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ocdl`` argument parser with its four commands."""
    parser = _Parser(prog="ocdl", description="Deep learning as discrete optimal control (Haber & Ruthotto 2017).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="ResNet, antisymmetric ResNet, Verlet on ellipses, 4 to 64 layers (~15 s)")
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder (default: runs/demo)")
    budget = demo.add_mutually_exclusive_group()
    budget.add_argument("--max-layers", type=_positive_int, default=DEMO_MAX_LAYERS, metavar="N",
                        help=f"finest level's layers (default: {DEMO_MAX_LAYERS})")
    budget.add_argument("--quick", action="store_true", help="a few seconds: 8 layers, 3 iterations per level")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace what DIR holds of ocdl's (a demo's folder is replaced without it)")
    demo.set_defaults(handler=_demo)

    train_parser = commands.add_parser("train", help="train one stepper on one problem (multilevel)")
    required = train_parser.add_argument_group("required, unless --resume DIR")
    required.add_argument("--problem", choices=PROBLEMS, help="the data set (required unless --resume)")
    required.add_argument("--stepper", type=_stepper, metavar="NAME",
                          help=f"the forward propagation: {STEPPER_NAMES} (required unless --resume)")
    train_parser.add_argument("--out", metavar="DIR",
                              help="run folder, with checkpoint.h5 (default: runs/PROBLEM-STEPPER)")
    train_parser.add_argument("--checkpoint-every", type=_positive_int, default=10, metavar="K",
                              help="write DIR/checkpoint.h5 every K iterations, after each level and on Ctrl-C "
                                   "(default: 10)")
    train_parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint; --data-dir "
                              f"(or ${ENV_VAR} where the stored folder moved) may name the MNIST folder anew; "
                              "--max-layers beyond its finest "
                              "level adds levels (continues a finished run deeper, as if they had been planned)")
    train_parser.add_argument("--overwrite", action="store_true",
                              help="discard what DIR holds (a checkpoint, a finished run's outputs) and start anew")
    train_parser.add_argument("--force", action="store_true",
                              help=f"run even if the finest level is estimated to take over {MAX_HOURS} hours or "
                                   "more memory than the machine has")
    _add_settings(train_parser)
    train_parser.set_defaults(handler=_train)

    compare_parser = commands.add_parser("compare", help="train several steppers on one problem: one figure, one table")
    required = compare_parser.add_argument_group("required, unless --resume DIR")
    required.add_argument("--problem", choices=PROBLEMS, help="the data set (required unless --resume)")
    compare_parser.add_argument("--steppers", type=_steppers, metavar="LIST",
                                help=f"comma-separated, distinct, of {STEPPER_NAMES} "
                                     f"(default: {','.join(PAPER_STEPPERS)})")
    compare_parser.add_argument("--out", metavar="DIR", help="comparison folder (default: runs/PROBLEM-compare)")
    compare_parser.add_argument("--checkpoint-every", type=_positive_int, default=10, metavar="K",
                                help="write DIR/STEPPER/checkpoint.h5 every K iterations, after each level and on "
                                     "Ctrl-C (default: 10)")
    compare_parser.add_argument("--resume", metavar="DIR", help="continue the comparison in DIR from its "
                                f"checkpoints; --data-dir (or ${ENV_VAR} where the stored folder moved) may name the "
                                "MNIST folder anew")
    compare_parser.add_argument("--overwrite", action="store_true",
                                help="discard what DIR holds (a comparison, finished or not) and start anew")
    compare_parser.add_argument("--force", action="store_true",
                                help=f"run even if a finest level is estimated to take over {MAX_HOURS} hours or "
                                     "more memory than the machine has")
    _add_settings(compare_parser)
    compare_parser.set_defaults(handler=_compare)

    phase = commands.add_parser("phase-plane", help="the stability figures 1 and 2 (examples 1 and 2)")
    phase.add_argument("--out", default="runs/stability", metavar="DIR",
                       help="folder of figure1.png, figure2.png (default: runs/stability)")
    phase.set_defaults(handler=_phase_plane)

    for sub in (demo, train_parser, compare_parser):
        sub.add_argument("--no-progress", action="store_true",
                         help="no progress bars (default: shown where stderr is a terminal, and under mpiexec)")
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
    args = reduction = None
    try:
        reduction = world()
        with _library_warnings_said(), reduction.errors():  # an error of any rank ends every rank, at the end
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
        hint = getattr(args, "resume_hint", None) or f"ocdl train --resume {Path(stop.checkpoint).parent}"
        print(f"ocdl: {stop}; continue with: {hint}", file=sys.stderr)
        if not stop.everywhere:
            return abort(reduction, 130)
        reduction.gather(None)  # every rank stopped here: none ends while rank 0 writes and prints
        return 130
    except KeyboardInterrupt:
        print("ocdl: interrupted", file=sys.stderr)
        return abort(reduction, 130)
