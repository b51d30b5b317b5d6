r"""States on disk: the forward sweep writes :math:`x_0, \dots, x_{N-1}` to an HDF5 file.

Member :math:`k` of the state (an ``s x n_k`` array) goes to the dataset
``state_k`` of shape ``(N, s, n_k)``, chunked by ``chunk_steps`` steps and
optionally compressed; :math:`x_N` goes to ``final_state_k``. The sweeps read
the states back a chunk at a time (descending for the adjoint, ascending for
the sensitivities) and recompute each step's cache with one
``stepper.step``, so memory holds :math:`O(\text{chunk\_steps})` states,
independent of :math:`N`. GPU (CuPy) states are copied to the host with
:func:`ocdl.backend.asnumpy` and back with ``xp.asarray``.

The file's root attributes describe the run (``h5ls -v`` or ``h5py`` show
them): ``format = "ocdl-trajectory"``, ``format_version``, ``ocdl_version``,
``stepper`` (class name), ``stepper_repr``, ``n_steps``, ``h``, ``dtype``,
``n_members`` and ``shapes`` (JSON list of the members' shapes ``[s, n_k]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import weakref
from pathlib import Path

import numpy as np

from .._workspace import run_step
from ..backend import asnumpy, get_array_module
from ..validation import check_positive
from .base import MemoryPolicy, Trajectory

FORMAT = "ocdl-trajectory"
FORMAT_VERSION = 1
COMPRESSIONS = (None, "gzip", "lzf")
MAX_CHUNK_BYTES = 2**32 - 1
"""HDF5's limit on the bytes of one chunk (4 GiB): a chunk holds fewer steps where ``chunk_steps`` states of a
member would exceed it."""


def _remove(path: str, temporary: bool) -> None:
    """Delete a temporary file and its private directory."""
    if temporary:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (POSIX; ``True`` where that cannot be asked)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _temporary_directory(directory: str | None) -> str:
    """A new private directory ``ocdl-trajectory-HOST-PID-*`` for a temporary file, under ``directory`` (default
    :func:`tempfile.gettempdir`), after removing those of this host whose process no longer runs: a run killed
    with SIGKILL cannot remove its own, and they hold its states (gigabytes, for a large run)."""
    parent = Path(tempfile.gettempdir() if directory is None else directory)
    prefix = f"ocdl-trajectory-{socket.gethostname()}-"
    for orphan in parent.glob(f"{prefix}*-*"):
        pid = orphan.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(orphan, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)


def _release(h5file, path: str, temporary: bool) -> None:
    """Close the file, delete it if temporary (the trajectory's finalizer: runs at most once)."""
    try:
        h5file.close()
    finally:
        _remove(path, temporary)


class HDF5Trajectory(Trajectory):
    r"""The states of one propagation in an HDF5 file.

    Attributes
    ----------
    path : the file's name.
    temporary : whether :meth:`close` deletes the file.
    file : the open ``h5py.File`` (read it, do not write it).

    Held in memory: :math:`x_N` and, during a sweep, one block of
    ``chunk_steps`` states plus the state and cache being served. The file is
    closed (and a temporary one deleted) by :meth:`close`, by leaving a
    ``with`` block, and, as a last resort, when the trajectory is garbage
    collected or the interpreter exits.
    """

    def __init__(self, stepper, theta_steps, h, state0, policy: HDF5) -> None:
        import h5py

        self._stepper, self._theta, self._h = stepper, theta_steps, h
        self.n_steps = len(theta_steps)
        self._chunk = min(policy.chunk_steps, self.n_steps)
        self._xp = get_array_module(*state0)
        self.path, self.temporary = policy.file_name()
        try:  # a new file in a private directory: no truncation, whose close would force writeback on ext4
            self.file = h5py.File(self.path, "x" if self.temporary else "w")
        except BlockingIOError:  # HDF5's lock: another process holds the file
            raise OSError(f"HDF5(path={self.path!r}): the file is open in another process; under mpiexec give each "
                          "rank its own file, or a directory (each process writes temporary files in it)") from None
        except BaseException:
            _remove(self.path, self.temporary)
            raise
        self._finalizer = weakref.finalize(self, _release, self.file, self.path, self.temporary)
        try:
            self._write(state0, policy.compression)
        except BaseException:
            self._finalizer()
            raise

    def _write(self, state0: tuple, compression: str | None) -> None:
        from .._version import __version__

        self._raw_chunks = compression is None
        stepper, N = self._stepper, self.n_steps
        empty = [x.shape for x in state0 if 0 in x.shape]
        if empty:  # HDF5 chunks must not be empty
            raise ValueError(f"HDF5 memory needs states with entries, got a state member of shape {empty[0]} "
                             "(no example?); use StoreAll for an empty batch")
        largest = max(x.nbytes for x in state0)
        if largest > MAX_CHUNK_BYTES:
            raise ValueError(f"HDF5 memory keeps a state member in one chunk of at most 4 GiB, got one of "
                             f"{largest:,} bytes: propagate fewer examples at once (chunk_size) or use Recompute")
        self._chunk = k = min(self._chunk, MAX_CHUNK_BYTES // largest)
        attrs = self.file.attrs
        attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            ocdl_version=__version__,
            stepper=type(stepper).__name__,
            stepper_repr=repr(stepper),
            n_steps=N,
            h=float(self._h),
            dtype=str(state0[0].dtype),
            n_members=len(state0),
            shapes=json.dumps([list(x.shape) for x in state0]),
        )
        self._datasets = [
            self.file.create_dataset(
                f"state_{i}", shape=(N, *x.shape), dtype=x.dtype, chunks=(k, *x.shape), compression=compression
            )
            for i, x in enumerate(state0)
        ]
        self._chunk_layouts = [((k, *x.shape), x.dtype) for x in state0]
        buffers = [np.empty(shape, dtype=dtype) for shape, dtype in self._chunk_layouts]
        state = state0
        for j in range(N):
            for buf, x in zip(buffers, state):
                buf[j % k] = asnumpy(x)
            if j % k == k - 1 or j == N - 1:
                for ds, buf in zip(self._datasets, buffers):
                    self._write_chunk(ds, j - j % k, j + 1, buf)
            state = run_step(stepper.advance, state, self._theta[j], self._h)
        for i, x in enumerate(state):
            self.file.create_dataset(f"final_state_{i}", data=asnumpy(x))
        self.file.flush()
        self.final_state = state

    def _write_chunk(self, ds, start: int, stop: int, buf: np.ndarray) -> None:
        """Rows ``start:stop`` of ``ds`` from ``buf`` (one chunk; uncompressed chunks bypass HDF5's pipeline)."""
        if self._raw_chunks:  # rows of buf past stop fall outside the dataset's extent
            ds.id.write_direct_chunk((start,) + (0,) * (buf.ndim - 1), buf)
        else:
            ds[start:stop] = buf[: stop - start]

    def _read_chunk(self, ds, start: int, stop: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """Rows ``start:stop`` of ``ds`` (one chunk of ``shape`` and ``dtype``), read-only."""
        if self._raw_chunks:
            _, raw = ds.id.read_direct_chunk((start,) + (0,) * (len(shape) - 1))
            return np.frombuffer(raw, dtype=dtype).reshape(shape)[: stop - start]
        return ds[start:stop]

    def _states(self, descending: bool):
        """``(j, state_j)`` read back one chunk of steps at a time."""
        if not self._finalizer.alive:
            raise RuntimeError(f"the trajectory in {self.path} is closed; run the forward sweep again")
        starts = range(0, self.n_steps, self._chunk)
        for start in reversed(starts) if descending else starts:
            stop = min(start + self._chunk, self.n_steps)
            block = [
                self._xp.asarray(self._read_chunk(ds, start, stop, *layout))
                for ds, layout in zip(self._datasets, self._chunk_layouts)
            ]
            rows = range(start, stop)
            for j in reversed(rows) if descending else rows:
                yield j, tuple(member[j - start] for member in block)

    def _served(self, descending: bool):
        for j, state in self._states(descending):
            _, cache = run_step(self._stepper.step, state, self._theta[j], self._h)
            yield j, state, cache

    def reversed_steps(self):
        return self._served(descending=True)

    def steps(self):
        return self._served(descending=False)

    @property
    def is_open(self) -> bool:
        """Whether the file is still open (:meth:`close` not yet called)."""
        return self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


class HDF5(MemoryPolicy):
    r"""Write the forward states to an HDF5 file, read them back per sweep.

    Parameters
    ----------
    path : where the file goes. ``None`` (default): a temporary file under
        :func:`tempfile.gettempdir`; an existing directory: a temporary file
        under it (see :meth:`file_name`); any other path: that file,
        overwritten by each forward sweep and kept after
        :meth:`HDF5Trajectory.close` for inspection. While a trajectory holds
        that file, the policy's further trajectories (a
        :meth:`~ocdl.Network.jacobian` kept open, the chunks of a
        :class:`~ocdl.LearningProblem`) go to temporary files beside it.
        Temporary files are deleted by ``close``; those of a process killed
        before (SIGKILL, a lost node) by the next temporary file made in the
        same directory on the same host. One process at a time may hold a
        named file: under ``mpiexec`` pass a directory.
    compression : ``None``, ``"gzip"`` or ``"lzf"`` (HDF5 filters, per chunk).
    chunk_steps : steps per HDF5 chunk, and per read and write; the memory
        held during a sweep is ``chunk_steps`` states. Fewer where their bytes
        would pass HDF5's 4 GiB chunk limit (:data:`MAX_CHUNK_BYTES`).

    Memory :math:`O(\text{chunk\_steps}\cdot s n)`, disk :math:`N s \sum_k n_k`
    numbers; a reversal costs :math:`N` reads and :math:`N` steps (the
    caches). The states are stored exactly, so the products equal those under
    :class:`~ocdl.memory.StoreAll`.
    """

    def __init__(
        self, path: str | os.PathLike | None = None, compression: str | None = None, chunk_steps: int = 1
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.path = None if path is None else os.fspath(path)
        self.compression = compression
        self.chunk_steps = check_positive("chunk_steps", chunk_steps, integer=True)
        self._holders = weakref.WeakSet()  # open trajectories in the file named by path

    def file_name(self) -> tuple[str, bool]:
        """``(name, temporary)`` of the file for the next trajectory.

        A temporary file is ``trajectory.h5`` in a new private directory
        ``ocdl-trajectory-HOST-PID-*`` (created here) under ``path`` or
        :func:`tempfile.gettempdir`, or, when ``path`` names a file that an
        open trajectory holds, beside that file.
        """
        directory = self.path
        if self.path is not None and not os.path.isdir(self.path):
            if not any(t.is_open for t in self._holders):
                return self.path, False
            directory = os.path.dirname(os.path.abspath(self.path))
        return os.path.join(_temporary_directory(directory), "trajectory.h5"), True

    def forward(self, stepper, theta_steps, h, state0):
        trajectory = HDF5Trajectory(stepper, theta_steps.copy(), h, state0, self)
        if not trajectory.temporary:
            self._holders.add(trajectory)
        return trajectory

    def __repr__(self) -> str:
        return f"HDF5(path={self.path!r}, compression={self.compression!r}, chunk_steps={self.chunk_steps})"
