r"""Training checkpoints: everything needed to continue a multilevel training run exactly, in one HDF5 file.

:func:`ocdl.solvers.multilevel` with ``checkpoint=Checkpointing(path, every=K)``
(:class:`Checkpointing`) writes a checkpoint every ``K`` iterations (counted
over all levels), at the end of each level, when it starts, and when it is
interrupted by Ctrl-C; with ``Checkpointing(path, resume=True)`` it continues
from the file, if there is one, so that the final parameters are those of an
uninterrupted run with the same seed (the same random draws, bit for bit). A
checkpoint (:class:`Checkpoint`) holds

* the level in progress and its :class:`~ocdl.solvers.training_loop.TrainingState`:
  iteration count, :math:`\theta, W, \mu`, the best parameters with their
  accuracy and iteration, the history, the elapsed time and the solver's
  buffers (SGD's momentum, Adam's moments);
* the state of the random generator (``rng.bit_generator.state``);
* every completed level: its history record and its result (best parameters,
  value, iteration count, status, message, per-iteration history);
* ``run``: what must not change between the interrupted and the resumed run
  (the solver's ``repr``, which names all its options, the levels, the sizes
  and the fingerprint of the problem), checked on resume;
* ``settings``: the caller's JSON-able description of the run (the command
  line's settings), returned unchanged so that a run can be rebuilt from its
  checkpoint alone;
* ``checkpointing``: the ``repr`` of the :class:`Checkpointing` that wrote it
  (for a reader; not compared on resume, where the path, ``every`` and
  ``resume`` may change without changing the result);
* ``shares``: the numbers of training examples of the processes (MPI ranks,
  :mod:`ocdl.distributed`) that wrote it, in rank order. A run resumed with
  other shares (another number of processes) continues validly, not as the
  writer would have (the sums round differently): it resumes with a
  :class:`ResumeWarning`, on rank 0. Checkpoints written before the shares
  were recorded resume without one: their split cannot be told, and no split
  makes a run invalid.

Checkpoints written before the solvers were objects (``run`` holding the
solver function's name and its keyword options, level results without a
status) load as today's: :func:`load_checkpoint` rebuilds the solver's
``repr`` from the name and the options, and a level's status from its
success, message and last record, so that they resume exactly.

The file is written by :func:`ocdl.io.write_tree` (kind ``"ocdl-checkpoint"``,
a format version, checksums): a temporary file in the same folder, flushed,
fsync'ed and renamed over the previous checkpoint, so a write that is
interrupted, even by SIGKILL, leaves the previous checkpoint intact, and a
checkpoint damaged afterwards is refused, not resumed from. Arrays are
datasets in their own dtype (exact), small values JSON attributes, histories
JSON text in ``uint8`` datasets (no attribute size limit).

Ctrl-C during a run with checkpoints writes the last completed iteration (a
half-done iteration is discarded, so the resumed run repeats it exactly) and
raises :class:`TrainingInterrupted`, a :class:`KeyboardInterrupt` that says
where the checkpoint is. A Ctrl-C that Python loses (:class:`InterruptLatch`)
stops the run after the iteration it arrived in. Under MPI (``mpiexec`` passes
Ctrl-C to every rank, each at another point of its work, some inside MPI) the
first Ctrl-C stops every rank at the end of the same iteration and the final
checkpoint is written; a second one stops at once, from the last checkpoint
written.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocdl.backend import to_device
from ocdl.io import OcdlFileError, read_tree, write_tree
from ocdl.reduction import Reduction
from ocdl.validation import check_positive

from .block_coordinate_descent import BlockCoordinateDescent
from .first_order import SGD, Adam
from .params import Params
from .result import SolverResult, Status
from .training_loop import TrainingState

__all__ = [
    "CHECKPOINT_KIND", "CHECKPOINT_NAME", "Checkpoint", "CheckpointWriter", "Checkpointing", "InterruptLatch",
    "ResumeWarning", "TrainingInterrupted", "load_checkpoint", "save_checkpoint",
]

CHECKPOINT_KIND = "ocdl-checkpoint"
"""The ``format`` tag of checkpoint files (see :mod:`ocdl.io`)."""

CHECKPOINT_NAME = "checkpoint.h5"
"""The checkpoint's file name inside a run's output folder (the command line's convention)."""

_SEQUENCE = "__sequence__"  # marks a group holding a tuple or list of buffers



@dataclass(frozen=True, repr=False)
class Checkpointing:
    """How :func:`ocdl.solvers.multilevel` checkpoints a run: the strategy object of its ``checkpoint=``.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (the command line uses ``DIR / CHECKPOINT_NAME``);
        its folder is created when it is first written. A new run replaces
        the file when it starts (unless ``resume``).
    every : int
        Write after every ``every``-th iteration, counted over all levels;
        also at the start, at the end of each level and on Ctrl-C.
    resume : bool
        Continue from ``path`` if the file exists (a fresh start if not); see
        :func:`ocdl.solvers.multilevel`.
    settings : dict, optional
        JSON-able description of the run stored in the checkpoint
        (:attr:`Checkpoint.settings`), e.g. the command line's settings.
        When resuming without it, the checkpoint's are kept.

    Its ``repr`` (without the settings) is recorded in every checkpoint it writes.

    Raises
    ------
    TypeError
        If ``path`` is not a path, ``resume`` not a bool, or ``settings`` not
        a JSON-able dict.
    ValueError
        If ``every`` is not a positive integer.
    """

    path: Path
    every: int = 1
    resume: bool = False
    settings: dict | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(self.path).__name__}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "every", check_positive("every", self.every, integer=True))
        if not isinstance(self.resume, (bool, np.bool_)):
            raise TypeError(f"resume must be True or False, got {self.resume!r}")
        object.__setattr__(self, "resume", bool(self.resume))
        settings = {} if self.settings is None else self.settings
        if not isinstance(settings, dict):
            raise TypeError(f"settings must be a dict, got {type(settings).__name__}")
        object.__setattr__(self, "settings", _plain_json(settings))

    def __repr__(self) -> str:
        return f"Checkpointing({str(self.path)!r}, every={self.every}, resume={self.resume})"


class ResumeWarning(UserWarning):
    """A checkpoint resumed into a valid run that is not, bit for bit, the one its writer would have continued
    (the examples are split otherwise: another number of processes, :attr:`Checkpoint.shares`), or whose run
    could not be compared in full (written by an earlier ocdl, see :meth:`Checkpoint.check_run`).

    ``ocdl train --resume`` prints it as its own ``ocdl: warning:`` line.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a training run with checkpoints; the final checkpoint has been written.

    A :class:`KeyboardInterrupt`, so code that does not know it still stops.

    Attributes
    ----------
    checkpoint : pathlib.Path
        The checkpoint file; continue with ``Checkpointing(checkpoint, resume=True)`` (``ocdl train --resume DIR``).
    level : int
        The level (0-based) the checkpoint continues with.
    iteration : int
        Completed iterations of that level saved in the checkpoint.
    n_layers : int or None
        That level's layers; the message names the level by them.
    everywhere : bool
        Every worker of the run stopped here, at the same iteration (always
        without data parallelism; under MPI, the first Ctrl-C's stop, agreed by
        :class:`InterruptLatch`): the workers may finish together.
    """

    def __init__(self, checkpoint: Path, level: int, iteration: int, n_layers: int | None = None,
                 everywhere: bool = True) -> None:
        where = f"the {n_layers}-layer level" if n_layers is not None else f"level {level + 1} (counted from 1)"
        super().__init__(f"training interrupted; {checkpoint} continues with {where} after {iteration} iterations")
        self.checkpoint, self.level, self.iteration, self.n_layers = checkpoint, level, iteration, n_layers
        self.everywhere = everywhere


@dataclass
class Checkpoint:
    """The content of a checkpoint file.

    Attributes
    ----------
    level : int
        The level (0-based) in progress, or the next one to start; equal to
        the number of levels when the run is finished.
    state : TrainingState or None
        The loop state of that level; ``None`` when the level has not
        completed an iteration (it starts from the previous level's result,
        or from the caller's initial parameters at level 0).
    levels : list of dict
        One record per completed level, as in :func:`ocdl.solvers.multilevel`'s
        history (``result`` a :class:`~ocdl.solvers.result.SolverResult`).
    rng : numpy.random.Generator
        The random generator; ``state.rng`` is this same object.
    run : dict
        What the resumed run must share with this one: ``layers`` (the
        numbers of layers of all levels), ``params_per_layer``,
        ``n_features``, ``n_outputs`` (the shapes of the parameters, checked
        on load), and whatever else the writer adds (:func:`ocdl.solvers.multilevel`:
        the solver's ``repr``, stepper, final time, examples, dtype, the
        problem's fingerprint).
    settings : dict
        The caller's JSON-able settings (``{}`` if none were given).
    checkpointing : str
        The ``repr`` of the :class:`Checkpointing` that wrote it (``""`` in
        files written before it was recorded).
    shares : list of int or None
        The numbers of training examples of the processes that wrote it, in
        rank order (one number without data parallelism); ``None`` in files
        written before they were recorded.
    """

    level: int
    state: TrainingState | None
    levels: list[dict]
    rng: np.random.Generator
    run: dict
    settings: dict
    checkpointing: str = ""
    shares: list[int] | None = None

    @property
    def finished(self) -> bool:
        """Whether every level is done."""
        return self.level >= len(self.run["layers"])

    @property
    def iteration(self) -> int:
        """Completed iterations of the level in progress."""
        return 0 if self.state is None else self.state.iteration

    def deepens(self, layers: Any) -> bool:
        """Whether ``layers`` (the numbers of layers of a run's levels) are this checkpoint's and more after them.

        A run with more levels than the one that wrote the checkpoint, and
        the same before, continues it as if it had planned them from the
        start: nothing of a level depends on the levels after it.
        """
        planned = self.run["layers"]
        return isinstance(layers, list) and len(layers) > len(planned) and layers[: len(planned)] == planned

    def resplit(self, shares: list[int], path: str | os.PathLike) -> str | None:
        """What continuing this checkpoint on processes holding ``shares`` training examples changes, in words
        (``None``: nothing, the shares being the writer's or not recorded; see :class:`ResumeWarning`)."""
        if self.shares is None or self.shares == shares:
            return None
        was, now = len(self.shares), len(shares)
        if was != now:
            how = "without mpiexec" if was == 1 else f"with mpiexec -n {was}"
            return (f"{path} was written by {_processes(was)} and continues on {now}: a valid run, but not the one "
                    f"{_processes(was)} would have computed (the sums over the examples round differently); resume "
                    f"{how} for a bit-identical continuation")
        return (f"{path} was written by {_processes(was)} holding {self.shares} training examples and continues on "
                f"{now} holding {shares}: a valid run, but not the one those shares would have computed (the sums "
                "over the examples round differently); give the processes the writer's shares for a bit-identical "
                "continuation")

    def check_run(self, run: dict, path: str | os.PathLike, earlier: dict | None = None) -> None:
        """Raise ``ValueError`` naming every entry of ``run`` that differs from the checkpoint's.

        ``earlier`` maps an entry to the form an earlier ocdl recorded for this run's value (the stepper's
        ``repr`` before it named the stepper's settings, :meth:`~ocdl.Stepper.repr_before_settings`): a
        checkpoint holding that form resumes, with a :class:`ResumeWarning` that what it lacks could not be
        compared.

        The entry ``"problem"`` (a :meth:`~ocdl.LearningProblem.fingerprint`)
        is compared entry by entry, and only in the entries the checkpoint
        records: a checkpoint written before an entry was recorded is checked
        for the rest. The entry ``"layers"`` may extend the checkpoint's by
        more levels after its last (:meth:`deepens`): a deeper run continues
        this one.
        """
        now = _plain_json(run)
        problem_now, problem_was = now.pop("problem", None), self.run.get("problem")
        was = {key: value for key, value in self.run.items() if key != "problem"}
        if self.deepens(now.get("layers")):
            was["layers"] = now["layers"]
        for key, form in (earlier or {}).items():
            if was.get(key) == form != now.get(key):
                warnings.warn(f"{path} was written by an earlier ocdl, whose {key} was {form!r}: resumed as "
                              f"{now[key]!r}, which it could not check", ResumeWarning, stacklevel=4)
                was[key] = now[key]
        changed = [f"{key}: {was.get(key)!r} there, {now.get(key)!r} now" for key in sorted(set(now) | set(was))
                   if was.get(key) != now.get(key)]
        if changed:
            raise ValueError(
                f"{path} was written by a different run ({'; '.join(changed)}); resume with the same "
                "problem and solver, or start a new run without resume"
            )
        if isinstance(problem_now, dict) and isinstance(problem_was, dict):
            changed = list(dict.fromkeys(  # a data set named once, though two of its digests differ
                _problem_change(key, problem_was[key], value) for key, value in problem_now.items()
                if key in problem_was and problem_was[key] != value))
            if changed:
                raise ValueError(
                    f"{path} was written for a different learning problem ({'; '.join(changed)}); resume "
                    "with the same problem, or start a new run without resume"
                )


_DATA = {"Y0": "training data Y0", "C": "training labels C", "validation": "validation data"}
_DATA |= {f"{key}_rows": name for key, name in _DATA.items()}
"""The fingerprint's data entries (digests: of the whole arrays, and split-independent ones) and how a message
names them."""


def _processes(count: int) -> str:
    return "1 process" if count == 1 else f"{count} processes"


def _problem_change(key: str, was: Any, now: Any) -> str:
    """How a message names the change of the fingerprint's entry ``key`` (checkpoint ``was``, now ``now``)."""
    if key not in _DATA:
        return f"{key}: checkpoint {was}, now {now}"
    if was is None or now is None:
        given = {True: "none", False: "given"}
        return f"{_DATA[key]}: checkpoint {given[was is None]}, now {given[now is None]}"
    return f"{_DATA[key]} differs"


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The file; its folder is created if needed.
    checkpoint : Checkpoint
        What to write; arrays may live on the GPU.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``settings``, ``run``, a history or a buffer holds a value that is
        neither an array nor JSON-able.
    """
    tree: dict[str, Any] = {
        "level": int(checkpoint.level),
        "rng": _plain_json(checkpoint.rng.bit_generator.state),
        "run": _plain_json(checkpoint.run),
        "settings": _plain_json(checkpoint.settings),
        "checkpointing": str(checkpoint.checkpointing),
        "shares": _plain_json(checkpoint.shares),
        "levels": {str(i): _level_tree(record) for i, record in enumerate(checkpoint.levels)},
    }
    if checkpoint.state is not None:
        tree["state"] = _state_tree(checkpoint.state)
    return write_tree(path, tree, CHECKPOINT_KIND)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    device : {"cpu", "gpu"}
        Where the arrays go.

    Returns
    -------
    Checkpoint

    Raises
    ------
    OcdlFileError
        If the file is missing, truncated, corrupt (its checksum does not
        match), not HDF5, not an ocdl file, an ocdl file of another kind, of
        a newer format, or a checkpoint that lacks or garbles an entry (the
        message says which).
    """
    tree = read_tree(path, CHECKPOINT_KIND)
    try:
        rng = _generator(tree["rng"])
        levels = tree["levels"]
        checkpoint = Checkpoint(
            level=_count(tree["level"], "level"),
            state=None if "state" not in tree else _state_from_tree(tree["state"], rng, device),
            levels=[_level_from_tree(levels[str(i)], device) for i in range(len(levels))],
            rng=rng,
            run=_upgraded_run(_dict(tree["run"], "run")),
            settings=_dict(tree["settings"], "settings"),
            checkpointing=str(tree.get("checkpointing", "")),
            shares=_shares(tree.get("shares")),
        )
        _check_shapes(checkpoint)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, UnicodeDecodeError) as err:
        message = f"missing entry {err}" if isinstance(err, KeyError) else str(err)
        raise OcdlFileError(f"{path}: damaged ocdl checkpoint: {message}") from None
    return checkpoint


class InterruptLatch:
    """Ctrl-C that is not lost: remembered as well as raised, and raised again by :meth:`check`.

    Python raises ``KeyboardInterrupt`` from its SIGINT handler in whatever
    the main thread runs next. When that is a finalizer (``__del__``, a weak
    reference's callback: array libraries run them all the time), Python
    prints "Exception ignored" and goes on, and a run stopped by Ctrl-C, or
    by ``timeout -s INT`` at the end of its time, trains on (seen: a run went
    on until it was killed, losing its last iterations). Inside ``with
    InterruptLatch() as latch:`` in the main thread, where Python's own
    handler is in place (not where SIGINT is ignored or handled otherwise),
    SIGINT also sets :attr:`arrived`, and :meth:`check`, called where
    stopping is safe (after an iteration), raises the ``KeyboardInterrupt``
    that was lost.

    With a ``reduction`` of several workers (MPI) the first SIGINT raises
    nothing: a rank stopped alone would leave the others waiting in a
    reduction, or killed by ``MPI_Abort`` while rank 0 writes the checkpoint.
    :meth:`check`, which every rank calls after the same iteration, sums the
    ranks' flags (one reduction) and raises on all of them if one was
    interrupted (:attr:`agreed`). A second SIGINT raises at once, as without
    MPI.
    """

    def __init__(self, reduction: Any = None) -> None:
        self.arrived = False
        self.agreed = False
        self._installed = False
        self._reduction = reduction if getattr(reduction, "size", 1) > 1 else None

    def __enter__(self) -> InterruptLatch:
        self._installed = (threading.current_thread() is threading.main_thread()
                           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self._installed:
            signal.signal(signal.SIGINT, self._handler)
            self._unraisable_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def _unraisable(self, unraisable: Any) -> None:
        """Keep quiet about the ``KeyboardInterrupt`` a finalizer swallowed ("Exception ignored in ...", a
        traceback before the one-line message): :meth:`check` raises it again."""
        if not (self.arrived and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            self._unraisable_hook(unraisable)

    def _handler(self, signum: int, frame: Any) -> None:
        first, self.arrived = not self.arrived, True
        if self._reduction is None or not first:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if SIGINT arrived (its own raise was lost, or it would not be here); with
        several workers, on every worker if it arrived at any (a collective operation: all call it together)."""
        if self._reduction is not None:
            self.agreed = self._reduction.sum(float(self.arrived)) > 0
            if self.agreed:
                raise KeyboardInterrupt
        elif self.arrived:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = self._unraisable_hook


class CheckpointWriter:
    """Writes the checkpoints of one multilevel run (used by :func:`ocdl.solvers.multilevel`).

    Parameters
    ----------
    checkpointing : Checkpointing
        The file, how often to write, and the settings to store.
    run : dict
        :attr:`Checkpoint.run` of this run.
    shares : list of int
        :attr:`Checkpoint.shares` of this run: its processes' numbers of
        training examples, in rank order.
    reduction : Reduction, optional
        The workers of a data-parallel run (:mod:`ocdl.distributed`): rank 0
        alone reads and writes the file, and :meth:`resume` hands its
        checkpoint (global parameters, random generator, history) to every
        rank. Default: one process.
    earlier : dict, optional
        Forms of entries of ``run`` that an earlier ocdl recorded (see
        :meth:`Checkpoint.check_run`).

    Creating a writer (on rank 0) removes temporary files of the checkpoint
    left behind by a write that was killed.

    Raises
    ------
    ValueError
        If the checkpoint's path is a folder.
    """

    def __init__(self, checkpointing: Checkpointing, run: dict, shares: list[int], reduction: Reduction | None = None,
                 earlier: dict | None = None) -> None:
        self.reduction = Reduction() if reduction is None else reduction
        self.earlier = earlier
        self.path = checkpointing.path
        if self.path.is_dir():
            raise ValueError(f"checkpoint must be a file, {self.path} is a folder (use {self.path / CHECKPOINT_NAME})")
        self.every = checkpointing.every
        self.run = run
        self.shares = list(shares)
        self.settings = checkpointing.settings
        self.checkpointing = repr(checkpointing)
        self._pending: Checkpoint | None = None  # the newest complete state, if not yet written
        self._written: Checkpoint | None = None

    def resume(self, device: str = "cpu") -> Checkpoint | None:
        """The checkpoint to continue from (``None`` if there is no file), checked against this run.

        Its arrays go to ``device`` (``"cpu"`` or ``"gpu"``), and its
        :attr:`Checkpoint.run` becomes this run's: the same, or with more
        levels after the checkpoint's (:meth:`Checkpoint.deepens`), which a
        finished checkpoint then continues with. A checkpoint that trains on
        with other shares of the examples than its writer's (another number
        of processes) resumes with a :class:`ResumeWarning`, issued on rank 0
        (:meth:`Checkpoint.resplit`).

        Raises
        ------
        OcdlFileError
            If the file exists but is not a readable checkpoint.
        ValueError
            If it was written by a different run (see :meth:`Checkpoint.check_run`).
        """

        def read() -> Checkpoint | None:
            if not self.path.exists():
                return None
            saved = load_checkpoint(self.path, device)
            saved.check_run(self.run, self.path, self.earlier)
            return saved

        with self.reduction.errors():  # a file rank 0 cannot use stops every rank
            saved = self.reduction.on_rank0(read)
        if saved is None:
            return None
        saved.run = self.run  # this run's levels: those of the checkpoint, or more after them (a deeper run)
        change = None if saved.finished else saved.resplit(self.shares, self.path)
        if change is not None and self.reduction.rank == 0:
            warnings.warn(change, ResumeWarning, stacklevel=3)
        if not self.settings:
            self.settings = saved.settings
        self._written = saved
        return saved

    def start(self, rng: np.random.Generator) -> None:
        """Write the start of a fresh run: level 0, no iteration yet."""
        self._save(self._checkpoint(0, None, [], copy.deepcopy(rng)))

    def iteration(self, level: int, levels: list[dict], state: TrainingState) -> None:
        """Record the state after a completed iteration of ``level``; write it every ``every`` iterations."""
        snapshot = _snapshot(state)
        self._pending = self._checkpoint(level, snapshot, list(levels), snapshot.rng)
        total = sum(record["iterations"] for record in levels) + state.iteration
        if total % self.every == 0:
            self._save(self._pending)

    def level_done(self, levels: list[dict], rng: np.random.Generator) -> None:
        """Write the end of the level ``len(levels) - 1``: the next level has not started."""
        self._save(self._checkpoint(len(levels), None, list(levels), copy.deepcopy(rng)))

    def interrupted(self, everywhere: bool = True) -> TrainingInterrupted:
        """Write the newest complete state if it is not on disk yet; the exception to raise for Ctrl-C
        (``everywhere``: every worker stops here, see :class:`TrainingInterrupted`)."""
        if self._pending is not None:
            self._save(self._pending)
        saved = self._written
        layers = saved.run["layers"]
        n_layers = layers[saved.level] if saved.level < len(layers) else None
        return TrainingInterrupted(self.path, saved.level, saved.iteration, n_layers, everywhere)

    def _checkpoint(self, level: int, state: TrainingState | None, levels: list[dict],
                    rng: np.random.Generator) -> Checkpoint:
        return Checkpoint(level, state, levels, rng, self.run, self.settings, self.checkpointing, self.shares)

    def _save(self, checkpoint: Checkpoint) -> None:
        if self.reduction.rank == 0:
            save_checkpoint(self.path, checkpoint)
        self._written, self._pending = checkpoint, None


# -- conversion to and from trees ------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON fallback: NumPy/CuPy scalars and 0-d arrays as Python numbers."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__} here (only arrays and JSON-able values)")


def _plain_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, NumPy scalars numbers)."""
    return json.loads(json.dumps(value, default=_plain))


def _json_bytes(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, default=_plain).encode(), dtype=np.uint8)


def _from_json_bytes(data: Any, name: str) -> Any:
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise TypeError(f"{name} must be JSON text in a uint8 dataset")
    return json.loads(data.tobytes().decode())


def _encode(value: Any) -> Any:
    """A buffer value as a tree node: arrays as is, sequences as marked groups, scalars as JSON."""
    if isinstance(value, (tuple, list)):
        return {_SEQUENCE: type(value).__name__, **{str(i): _encode(v) for i, v in enumerate(value)}}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if getattr(value, "ndim", 0) > 0:
        return value
    return _plain_json(value)


def _decode(node: Any, device: str) -> Any:
    if isinstance(node, dict):
        if _SEQUENCE in node:
            items = [_decode(node[str(i)], device) for i in range(len(node) - 1)]
            return tuple(items) if node[_SEQUENCE] == "tuple" else items
        return {k: _decode(v, device) for k, v in node.items()}
    if isinstance(node, np.ndarray):
        return to_device(node, device)
    return node


_PARAMS = ("theta", "W", "mu")


def _params_tree(params: Params) -> dict:
    return dict(zip(_PARAMS, params))


def _params(node: dict, name: str, device: str) -> Params:
    out = []
    for key in _PARAMS:
        x = node[key]
        if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name}/{key} must be a floating-point dataset")
        out.append(to_device(x, device))
    return Params(*out)


def _state_tree(state: TrainingState) -> dict:
    tree = {
        "iteration": int(state.iteration),
        "best_accuracy": float(state.best_accuracy),
        "best_iteration": state.best_iteration,
        "elapsed": float(state.elapsed),
        "params": _params_tree(state.params),
        "history": _json_bytes(state.history),
        "buffers": _encode(state.buffers),
    }
    if state.best is not None:
        tree["best"] = _params_tree(state.best)
    return tree


def _state_from_tree(node: dict, rng: np.random.Generator, device: str) -> TrainingState:
    best_iteration = node["best_iteration"]
    if best_iteration is not None:
        best_iteration = _count(best_iteration, "state/best_iteration")
    history = _from_json_bytes(node["history"], "state/history")
    if not isinstance(history, list):
        raise TypeError("state/history must be a list of records")
    return TrainingState(
        iteration=_count(node["iteration"], "state/iteration"),
        params=_params(node["params"], "state/params", device),
        rng=rng,
        best=_params(node["best"], "state/best", device) if "best" in node else None,
        best_accuracy=float(node["best_accuracy"]),
        best_iteration=best_iteration,
        history=history,
        elapsed=float(node["elapsed"]),
        buffers=_decode(_dict(node["buffers"], "state/buffers"), device),
    )


def _level_tree(record: dict) -> dict:
    result = record["result"]
    tree = {key: _plain_json(value) for key, value in record.items() if key != "result"}
    tree["result"] = {
        "x": _params_tree(result.x),
        "fun": _plain_json(result.fun),
        "nit": int(result.nit),
        "status": result.status.name,
        "success": bool(result.success),
        "message": str(result.message),
        "history": _json_bytes(result.history),
    }
    return tree


def _level_from_tree(node: dict, device: str) -> dict:
    node = _dict(node, "levels")
    res = node["result"]
    success, message = bool(res["success"]), str(res["message"])
    history = _from_json_bytes(res["history"], "levels/result/history")
    if not isinstance(history, list):
        raise TypeError("levels/result/history must be a list of records")
    result = SolverResult(
        x=_params(res["x"], "levels/result/x", device),
        fun=float(res["fun"]),
        nit=_count(res["nit"], "levels/result/nit"),
        status=_status(res["status"]) if "status" in res else _legacy_status(success, message, history),
        success=success,
        message=message,
        history=history,
    )
    record = {key: value for key, value in node.items() if key != "result"}
    _count(record["iterations"], "levels/iterations")
    return record | {"result": result}


def _check_shapes(checkpoint: Checkpoint) -> None:
    """Raise ``ValueError`` unless the levels and the parameters fit ``checkpoint.run``."""
    run = checkpoint.run
    layers = run["layers"]
    if not isinstance(layers, list) or not all(isinstance(n, int) and n > 0 for n in layers):
        raise ValueError(f"run/layers must be a list of positive integers, got {layers!r}")
    if checkpoint.level != len(checkpoint.levels) or checkpoint.level > len(layers):
        raise ValueError(
            f"level {checkpoint.level} does not follow its {len(checkpoint.levels)} completed levels of {len(layers)}"
        )
    p, n, m = (_count(run[key], f"run/{key}") for key in ("params_per_layer", "n_features", "n_outputs"))
    params = [(f"levels/{i}/result/x", record["result"].x, layers[i]) for i, record in enumerate(checkpoint.levels)]
    state = checkpoint.state
    if state is not None:
        if checkpoint.level == len(layers):
            raise ValueError("a finished run has no state")
        params.append(("state/params", state.params, layers[checkpoint.level]))
        if state.best is not None:
            params.append(("state/best", state.best, layers[checkpoint.level]))
    for name, x, n_layers in params:
        shapes = {key: tuple(value.shape) for key, value in zip(_PARAMS, x)}
        if shapes != {"theta": (n_layers * p,), "W": (n, m), "mu": (m,)}:
            raise ValueError(
                f"{name} has shapes {shapes}, not those of {n_layers} layers of {p} parameters and an "
                f"{n} x {m} classifier"
            )


def _status(name: Any) -> Status:
    if not isinstance(name, str) or name not in Status.__members__:
        raise ValueError(f"levels/result/status must name a Status ({', '.join(Status.__members__)}), got {name!r}")
    return Status[name]


def _legacy_status(success: bool, message: str, history: list) -> Status:
    """The status of a level result written before statuses were recorded (from what it recorded instead)."""
    if success:
        return Status.CALLBACK if message.startswith("stopped by callback") else Status.MAX_ITER
    if history and isinstance(history[-1], dict) and history[-1].get("line_search_failed"):
        return Status.LINE_SEARCH_FAILED
    return Status.NOT_FINITE


_LEGACY_SOLVERS = {"block_coordinate_descent": BlockCoordinateDescent, "sgd": SGD, "adam": Adam}
"""The training solvers of checkpoints written before they were objects: the function's name and its class."""


def _upgraded_run(run: dict) -> dict:
    """``run`` of a checkpoint written before the solvers were objects (``solver``: a function's name,
    ``options``: its keyword arguments) in today's form, ``solver`` the ``repr`` of the solver object that
    those options make (its other options have today's defaults, as they had then); other runs as they are."""
    if "options" not in run or run.get("solver") not in _LEGACY_SOLVERS:
        return run
    options = _dict(run["options"], "run/options")
    try:
        solver = _LEGACY_SOLVERS[run["solver"]](**options)
    except (TypeError, ValueError):  # options no solver of that name takes: compared as written, so refused
        return run
    return {key: value for key, value in run.items() if key != "options"} | {"solver": repr(solver)}


def _generator(state: Any) -> np.random.Generator:
    state = _dict(state, "rng")
    name = state.get("bit_generator")
    if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        raise ValueError(f"rng names an unknown bit generator {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _snapshot(state: TrainingState) -> TrainingState:
    """A copy of ``state`` that later iterations do not change (arrays copied, generator included)."""
    return dataclasses.replace(
        state,
        params=state.params.copy(),
        rng=copy.deepcopy(state.rng),
        best=None if state.best is None else state.best.copy(),
        history=list(state.history),
        buffers=copy.deepcopy(state.buffers),
    )


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _shares(value: Any) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError(f"shares must be a non-empty list of integers >= 0, got {value!r}")
    return [_count(count, "shares") for count in value]


def _dict(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a group, got {type(value).__name__}")
    return value
