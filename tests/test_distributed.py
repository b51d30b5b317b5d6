"""Data-parallel training over MPI (ocdl.distributed), run under a real ``mpiexec`` with P = 1, 2, 3 processes.

Every test here starts ``mpiexec`` (from the virtual environment of the
interpreter running the tests, else from PATH) through a subprocess; they
skip with the reason when mpi4py or ``mpiexec`` is absent, and the suite's
summary prints how many ran (conftest.py). What they compare against is
computed here in one process without MPI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ocdl.solvers.checkpoint import CHECKPOINT_NAME, load_checkpoint

from ocdl.distributed import LAUNCHER_RANKS
from ocdl.experiments import load_data, paper_settings, train, write_run
from ocdl.io import load_params

HERE = Path(__file__).resolve().parent
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
OCDL = shutil.which("ocdl", path=str(Path(sys.executable).parent)) or "ocdl"
try:
    import mpi4py  # noqa: F401

    MISSING = None if MPIEXEC else "no mpiexec next to the interpreter or on PATH"
except ImportError:
    MISSING = 'mpi4py is not installed (pip install -e ".[mpi]")'

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(MISSING is not None, reason=f"needs MPI: {MISSING}")]

ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
TIMEOUT = 240


def mpiexec(n: int, *command: str, cwd: Path | None = None, timeout: float = TIMEOUT, **popen):
    """Run ``command`` on ``n`` processes; the finished process (stdout and stderr as text)."""
    return subprocess.run([MPIEXEC, "-n", str(n), *command], env=ENV, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **popen)


def worker(n: int, scenario: str, out: Path):
    proc = mpiexec(n, sys.executable, str(HERE / "mpi_worker.py"), scenario, str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# -- the reduction and the learning problem on the ranks -------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_reductions_and_data_terms_on_the_ranks(tmp_path, n):
    """Sums and means (numbers, float32/float64 arrays, the CuPy stand-in through host and device
    buffers), identical on every rank; errors raised on every rank; out-of-step ranks, other shapes and
    other data refused; every data term of the learning problem as in one process, also with ranks
    that hold no example of a sub-sample; a blow-up on one rank's examples raised on all."""
    worker(n, "reductions", tmp_path)
    for rank in range(n):
        assert (tmp_path / f"reductions-rank{rank}.txt").read_text() == "ok"


# -- training: P ranks as one process ---------------------------------------------------------------

import mpi_worker  # noqa: E402  (tests/ is on the path: the worker's configurations are the reference's)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The worker's ``train`` scenario on 1, 2 and 3 ranks (one mpiexec each); the folder of its files."""
    if MISSING is not None:
        pytest.skip(MISSING)
    out = tmp_path_factory.mktemp("trained")
    for n in (1, 2, 3):
        worker(n, "train", out)
    return out


@pytest.fixture(scope="module")
def reference():
    """One process without MPI, per configuration (computed when first asked for)."""
    cache, data = {}, {}

    def get(config):
        if config not in cache:
            problem = mpi_worker.CONFIGS[config][0]
            if problem not in data:
                data[problem] = load_data(mpi_worker.settings_of(config))
            cache[config] = mpi_worker.train_config(config, data[problem])
        return cache[config]

    return get


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("config", list(mpi_worker.CONFIGS))
def test_training_on_ranks_equals_one_process(trained, reference, config, n):
    """Objective history and final parameters after three block-coordinate-descent iterations (batch and
    Gauss-Newton sub-sample split unevenly over the ranks): 1e-12 relative in float64, 1e-5 in float32; the
    ranks agree to the last bit."""
    if config.startswith("mnist") and not mpi_worker.mnist_available():
        pytest.skip("MNIST files not found (OCDL_MNIST_DIR or ../shared/data/mnist)")
    ranks = [np.load(trained / f"{config}-P{n}-rank{rank}.npz") for rank in range(n)]
    for other in ranks[1:]:
        for key in ranks[0].files:
            np.testing.assert_array_equal(other[key], ranks[0][key])
    one = reference(config)
    rtol = 1e-12 if config.endswith("float64") else 1e-5
    for key in ("objective", "theta", "W", "mu"):
        scale = np.max(np.abs(one[key]))
        assert np.max(np.abs(ranks[0][key] - one[key])) <= rtol * scale, key
    np.testing.assert_array_equal(ranks[0]["val_accuracy"], one["val_accuracy"])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_reading_the_shares_trains_as_sharing_the_whole_data_set(trained, n):
    """MNIST read in shares on every rank trains bit for bit as the whole data set shared by train, as before."""
    if not mpi_worker.mnist_available():
        pytest.skip("MNIST files not found (OCDL_MNIST_DIR or ../shared/data/mnist)")
    for rank in range(n):
        shares, whole = (np.load(trained / f"mnist-float64{kind}-P{n}-rank{rank}.npz") for kind in ("", "-whole"))
        for key in whole.files:
            np.testing.assert_array_equal(shares[key], whole[key])


# -- the command line --------------------------------------------------------------------------------

TRAIN = ["train", "--problem", "peaks", "--stepper", "resnet", "--width", "4", "--first-layers", "4",
         "--max-layers", "8", "--iterations", "3", "--batch-size", "2000", "--hessian-batch-size", "1000",
         "--cg-maxiter", "5", "--checkpoint-every", "1"]
"""Two levels of three iterations. Five CG iterations: with the paper's 20 (and alpha = 5e-6) the Gauss-Newton
systems are so ill-conditioned that runs on 1 and 2 processes differ by 3e-6 after one iteration (float64 rounding
amplified by CG), equally valid runs that no tolerance of 1e-12 compares."""


def ocdl(n: int, *args: str, cwd: Path, **popen):
    return mpiexec(n, OCDL, *args, cwd=cwd, **popen)


def final_params(folder: Path) -> dict:
    params = load_params(folder / "params.h5")
    return {key: params[key] for key in ("theta", "W", "mu")}


def assert_same_run(folder: Path, reference: Path, ranks: int) -> None:
    mine, theirs = final_params(folder), final_params(reference)
    for key in mine:
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-12, atol=1e-12 * np.abs(theirs[key]).max())
    results, expected = (json.loads((f / "results.json").read_text()) for f in (folder, reference))
    assert results["ranks"] == ranks
    for level, level_expected in zip(results["levels"], expected["levels"], strict=True):
        np.testing.assert_allclose(level["objective"], level_expected["objective"], rtol=1e-12)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``mpiexec -n 2 ocdl train`` (two levels, 4 and 8 layers): its run folder and output."""
    if MISSING is not None:
        pytest.skip(MISSING)
    cwd = tmp_path_factory.mktemp("cli")
    proc = ocdl(2, *TRAIN, "--out", "p2", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "p2", proc


def test_rank_0_alone_prints_and_writes(uninterrupted):
    folder, proc = uninterrupted
    assert proc.stdout.count("wrote p2/results.json") == 1 and proc.stdout.count("| best val |") == 1
    assert proc.stderr.count("BCD N=8:   0%") == 1  # one progress bar per level: rank 0's
    assert sorted(p.name for p in folder.iterdir()) == [
        "accuracy.png", "checkpoint.h5", "features.png", "params.h5", "results.json"]
    assert json.loads((folder / "results.json").read_text())["ranks"] == 2
    saved = load_checkpoint(folder / CHECKPOINT_NAME)  # global parameters, whatever the ranks
    assert saved.finished and saved.run["n_examples"] == 4000


def _rank_pid(marker: str, rank: int) -> int | None:
    """The process id of rank ``rank`` of the run whose command line holds ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ranks = {f"{name}={rank}".encode() for name in LAUNCHER_RANKS}
        if marker.encode() in cmdline and ranks & set(environ):
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks' processes in /proc")
def test_a_killed_rank_then_resume_on_one_and_on_three_ranks(uninterrupted, tmp_path):
    """SIGKILL of rank 1 after the first checkpointed iteration ends the whole run; the checkpoint (global
    parameters and state) resumes on one process and on three to the uninterrupted two-rank result (1e-12), with
    one warning that says so, on two to that result bit for bit, without one."""
    reference, _ = uninterrupted
    run = subprocess.Popen([MPIEXEC, "-n", "2", OCDL, *TRAIN, "--out", "killed", "--no-progress"], env=ENV,
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint, deadline, killed = tmp_path / "killed" / CHECKPOINT_NAME, time.monotonic() + TIMEOUT, False
    pid, written = None, set()
    try:
        # Cheap polling, so that a loaded machine cannot let the run end unseen: rank 1's pid is looked up once,
        # and the checkpoint's writes are told apart by their inodes (each write is a rename of a new file): the
        # second one is iteration 1's (the first is written at the start).
        while time.monotonic() < deadline and run.poll() is None:
            pid = pid or _rank_pid("killed", 1)
            try:
                written.add(checkpoint.stat().st_ino)
            except OSError:
                pass
            if pid is not None and len(written) >= 2:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
        run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert killed, "the run ended before a rank could be killed"
    assert run.returncode != 0
    saved = load_checkpoint(checkpoint)
    assert not saved.finished and (saved.level, saved.iteration) > (0, 0)  # past the checkpoint of the start
    for ranks in (1, 2, 3):
        folder = tmp_path / f"resumed-on-{ranks}"
        shutil.copytree(tmp_path / "killed", folder)
        proc = ocdl(ranks, "train", "--resume", folder.name, "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert_same_run(folder, reference, ranks)
        said = f"ocdl: warning: {folder.name}/{CHECKPOINT_NAME} was written by 2 processes and continues on {ranks}: "
        assert proc.stderr.count("warning") == (ranks != 2) and proc.stderr.count(said) == (ranks != 2), proc.stderr
        if ranks == 2:  # on as many ranks as before: bit for bit
            for key, value in final_params(folder).items():
                np.testing.assert_array_equal(value, final_params(reference)[key])


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="sends SIGINT")
def test_ctrl_c_under_mpiexec_stops_every_rank_after_one_iteration_with_the_final_checkpoint(tmp_path):
    """SIGINT to mpiexec, in the second level: every rank stops after the same iteration, rank 0 writes the final
    checkpoint and says so, every rank exits 130; the resumed run is the uninterrupted one bit for bit. (It aborted
    every rank at once: rank 1, with nothing to write, killed rank 0 before its write, 3 times in 4; the checkpoint
    stayed at the level's start.)"""
    argv = [*TRAIN, "--iterations", "8", "--checkpoint-every", "1000", "--no-progress"]
    straight = ocdl(2, *argv, "--out", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    run = subprocess.Popen([MPIEXEC, "-n", "2", OCDL, *argv, "--out", "stopped"], env=ENV, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint, deadline = tmp_path / "stopped" / CHECKPOINT_NAME, time.monotonic() + TIMEOUT
    sent, written = False, set()
    try:
        while time.monotonic() < deadline and run.poll() is None:
            try:
                written.add(checkpoint.stat().st_ino)  # written at the start and at the end of level 1
            except OSError:
                pass
            if len(written) >= 2:
                run.send_signal(signal.SIGINT)
                sent = True
                break
            time.sleep(0.005)
        _, err = run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert sent, "the run ended before it could be interrupted"
    assert run.returncode == 130, err[-3000:]
    assert err.count("ocdl: training interrupted; stopped/checkpoint.h5 continues with the 8-layer level after") == 1
    assert "continue with: ocdl train --resume stopped" in err
    saved = load_checkpoint(checkpoint)
    assert not saved.finished and (saved.level, saved.iteration) >= (1, 1), (saved.level, saved.iteration)
    resumed = ocdl(2, "train", "--resume", "stopped", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for key, value in final_params(tmp_path / "stopped").items():
        np.testing.assert_array_equal(value, final_params(tmp_path / "straight")[key])


def test_a_finished_run_continues_deeper_on_two_ranks(uninterrupted, tmp_path):
    """``mpiexec -n 2 ocdl train --resume DIR --max-layers 16`` on the finished 8-layer run equals, bit for bit,
    the two-rank run straight to 16 layers (rank 0 reads the checkpoint and its settings for every rank)."""
    finished, _ = uninterrupted
    shutil.copytree(finished, tmp_path / "deeper")
    proc = ocdl(2, "train", "--resume", "deeper", "--max-layers", "16", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote deeper/results.json") == 1
    straight = ocdl(2, *TRAIN, "--max-layers", "16", "--out", "straight", "--no-progress", cwd=tmp_path)  # last wins
    assert straight.returncode == 0, straight.stderr[-3000:]
    for key, value in final_params(tmp_path / "deeper").items():
        np.testing.assert_array_equal(value, final_params(tmp_path / "straight")[key])
    results = json.loads((tmp_path / "deeper" / "results.json").read_text())
    assert [level["n_layers"] for level in results["levels"]] == [4, 8, 16] and results["ranks"] == 2
    assert_same_run(tmp_path / "deeper", tmp_path / "straight", 2)


def test_errors_are_one_line_printed_once_with_the_status_of_every_rank(tmp_path):
    proc = ocdl(2, *TRAIN, "--width", "3", cwd=tmp_path)  # every rank rejects the settings
    assert proc.returncode == 1
    assert proc.stderr.strip() == "ocdl: error: --width must be a multiple of 2 (the points are duplicated), got 3"
    proc = ocdl(3, "train", "--problem", "peaks", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("--problem and --stepper are required") == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def _mpmd(*ranks: list[str], cwd: Path):
    """``mpiexec`` with one command line per rank (MPICH's and Open MPI's ``:`` syntax)."""
    command = [MPIEXEC]
    for i, args in enumerate(ranks):
        command += ([":"] if i else []) + ["-n", "1", OCDL, *args]
    return subprocess.run(command, env=ENV, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_ranks_with_other_settings_are_refused(tmp_path):
    """Another seed on one rank (or data read from another file) is refused on every rank, printed once."""
    proc = _mpmd([*TRAIN, "--seed", "0"], [*TRAIN, "--seed", "1"], cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the 2 workers hold different settings (seed: 1 on rank 1, 0 on rank 0)" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.h5"))


def test_an_error_on_one_rank_only_ends_every_rank(tmp_path):
    """A run folder that rank 0 cannot use (a file in its place): the one-line error, every rank stops."""
    (tmp_path / "taken").write_text("not a folder")
    proc = ocdl(2, *TRAIN, "--out", "taken", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["ocdl train: --out taken cannot be a run folder: it is a file (see ocdl --help)"]


def test_compare_on_two_ranks_equals_one_process(tmp_path):
    options = dict(width=4, first_layers=4, max_layers=4, max_iter=2, batch_size=400, hessian_batch_size=100,
                   cg_maxiter=5)
    flags = [f"--{'iterations' if name == 'max_iter' else name.replace('_', '-')}={value}"
             for name, value in options.items()]
    proc = ocdl(2, "compare", "--problem", "peaks", "--steppers", "resnet,antisymmetric", "--out", "two",
                "--no-progress", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| best val |") == 1
    summaries = [train(paper_settings("peaks", stepper, **options), progress=False).summary()
                 for stepper in ("resnet", "antisymmetric")]
    two = json.loads((tmp_path / "two" / "comparison.json").read_text())
    for mine, theirs in zip(two, summaries, strict=True):
        assert mine["ranks"] == 2 and theirs["ranks"] == 1
        for level, level_one in zip(mine["levels"], theirs["levels"], strict=True):
            np.testing.assert_allclose(level["objective"], level_one["objective"], rtol=1e-12)
            assert level["val_accuracy"] == level_one["val_accuracy"]


MNIST_OPTIONS = dict(width=1, first_layers=2, max_layers=2, max_iter=3, train_size=40, val_size=13, batch_size=20,
                     hessian_batch_size=10, cg_maxiter=3, classifier_newton_steps=2, classifier_cg_maxiter=2)
"""A short MNIST run (two levels) in the well-conditioned settings of mpi_worker's MNIST configuration."""


def test_mnist_on_two_ranks_reads_shares_and_equals_one_process(tmp_path):
    """``mpiexec -n 2 ocdl train --problem mnist``: each rank reads its share of the (gzipped) files, and the run
    equals one process's on the whole data set (1e-12): final parameters, objectives, validation accuracies."""
    data_dir = mpi_worker.write_mnist(tmp_path / "mnist", n_train=60, n_test=9)
    flags = [f"--{ {'max_iter': 'iterations', 'train_size': 'train-size'}.get(name, name.replace('_', '-')) }={value}"
             for name, value in MNIST_OPTIONS.items()]
    proc = ocdl(2, "train", "--problem", "mnist", "--stepper", "antisymmetric", "--data-dir", str(data_dir), *flags,
                "--out", "two", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = train(paper_settings("mnist", "antisymmetric", data_dir=str(data_dir), **MNIST_OPTIONS), progress=False)
    one = tmp_path / "one"
    write_run(run, one)
    assert_same_run(tmp_path / "two", one, ranks=2)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert (results["n_train"], results["n_val"]) == (40, 13)
    assert [level["val_accuracy"] for level in results["levels"]] == [level["val_accuracy"] for level in run.levels()]
    assert (tmp_path / "two" / "images.png").read_bytes()[:4] == b"\x89PNG"


def readme_example() -> str:
    """The ```python block of the README's section "Running on several processes or GPUs"."""
    text = (HERE.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running on several processes or GPUs", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_on_two_processes_as_on_one(tmp_path):
    code = tmp_path / "example.py"
    code.write_text(readme_example())
    two = mpiexec(2, sys.executable, str(code), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(code)], env=ENV, cwd=tmp_path, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.stdout == one.stdout and two.stdout.count("levels") == 1, two.stdout
    assert (tmp_path / "peaks.h5").exists()


def test_the_scaling_benchmark_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE.parent / "benchmarks" / "scaling.py"), "--quick", "--json",
                           str(tmp_path / "s.json")], env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode and "MNIST" in proc.stderr and not mpi_worker.mnist_available():
        pytest.skip("MNIST files not found")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((tmp_path / "s.json").read_text())
    assert [r.get("ranks") for r in records[:2]] == [1, 2]
    assert records[0]["reductions"] == records[1]["reductions"]  # the same steps on one rank and on two
    model = records[2]
    assert set(model["predicted_efficiency"]) == {"cpu_8_ranks", "cpu_16_ranks", "cpu_64_ranks", "gpu_8"}
    assert all(0 < e <= 1 for e in model["predicted_efficiency"].values())


def test_the_data_memory_benchmark_runs(tmp_path):
    data_dir = mpi_worker.write_mnist(tmp_path / "mnist")
    proc = subprocess.run([sys.executable, str(HERE.parent / "benchmarks" / "data_memory.py"), "--quick", "--ranks",
                           "1,2", "--data-dir", str(data_dir), "--json", str(tmp_path / "m.json")], env=ENV,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((tmp_path / "m.json").read_text())
    assert [(r["ranks"], r["way"]) for r in records] == [(1, "whole"), (1, "shares"), (2, "whole"), (2, "shares")]
    for record in records:  # every rank its share of the 24 training and 12 validation images, whichever way
        ranks = record["per_rank"]
        assert [r["n_train"] for r in ranks] == [24 // record["ranks"]] * record["ranks"]
        assert sum(r["n_val"] for r in ranks) == 12 and {r["examples"] for r in ranks} == {24}
        assert all(r["start_mib"] <= r["load_peak_mib"] <= r["setup_peak_mib"] for r in ranks), ranks
