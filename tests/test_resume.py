"""Crash tests: a training process killed (SIGKILL), killed while writing a checkpoint, or
interrupted (SIGINT) resumes to the parameters of an uninterrupted run with the same seed.

Each test runs ``resume_worker.py`` (multilevel BCD on a small ellipses problem,
3 levels of 5 iterations) in a subprocess; the reference is the same run,
uninterrupted, in this process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import resume_worker

from ocdl.checkpoint import load_checkpoint
from ocdl.io import OcdlFileError, load_params
from solvers import multilevel

WORKER = Path(resume_worker.__file__)
TIMEOUT = 60


@pytest.fixture(scope="module")
def reference():
    problem, theta0, validation = resume_worker.build()
    result = multilevel(problem, theta0, validation=validation, progress=False, **resume_worker.OPTIONS)
    return {key: result.x[key] for key in ("theta", "W", "mu")}


def start(tmp_path, *options):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "ckpt.h5"), str(tmp_path / "out.h5"), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background job (``pytest &``) ignores SIGINT, and a Python started
        # with SIGINT ignored raises no KeyboardInterrupt: give the worker the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run(tmp_path, *options):
    proc = start(tmp_path, *options)
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def wait_for(proc, path, condition):
    """Poll the checkpoint ``path`` until ``condition(checkpoint)`` holds; fail if ``proc`` ends first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker ended before the test could interrupt it"
        if path.exists():
            checkpoint = load_checkpoint(path)
            if condition(checkpoint):
                return checkpoint
        time.sleep(0.01)
    raise AssertionError("timed out waiting for the checkpoint")


def assert_same(out_file, reference):
    params = load_params(out_file)
    for key, expected in reference.items():
        np.testing.assert_allclose(params[key], expected, rtol=1e-12, atol=0)


def test_sigkill_in_the_middle_of_a_level_resumes_exactly(tmp_path, reference):
    path = tmp_path / "ckpt.h5"
    proc = start(tmp_path, "--sleep", "0.1")
    seen = wait_for(proc, path, lambda c: c.level == 1 and c.iteration >= 2)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    saved = load_checkpoint(path)
    assert saved.level == 1 and 2 <= saved.iteration <= 5 and not saved.finished
    assert saved.iteration >= seen.iteration
    assert not (tmp_path / "out.h5").exists()
    code, _, err = run(tmp_path, "--resume")
    assert code == 0, err
    assert_same(tmp_path / "out.h5", reference)
    assert load_checkpoint(path).finished


def test_killed_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, reference):
    path = tmp_path / "ckpt.h5"
    # write 1: the start; writes 2..6: iterations 1..5 of level 0; write 7: its end; 8, 9: level 1
    code, _, _ = run(tmp_path, "--die-in-write", "9")
    assert code == -signal.SIGKILL
    saved = load_checkpoint(path)  # the previous checkpoint is intact
    assert (saved.level, saved.iteration) == (1, 1)
    partial = list(tmp_path.glob(".ckpt.h5.*.tmp"))
    assert len(partial) == 1  # the half-written temporary file of write 9
    with pytest.raises(OcdlFileError, match="damaged ocdl checkpoint: missing entry"):
        load_checkpoint(partial[0])
    code, _, err = run(tmp_path, "--resume")
    assert code == 0, err
    assert_same(tmp_path / "out.h5", reference)
    assert not list(tmp_path.glob(".ckpt.h5.*.tmp"))  # removed on resume


def test_ctrl_c_writes_a_final_checkpoint_and_exits_cleanly(tmp_path, reference):
    path = tmp_path / "ckpt.h5"
    proc = start(tmp_path, "--every", "100", "--sleep", "0.1")  # periodic writes: the start and level ends only
    while int(proc.stdout.readline()) < 7:  # 5 iterations of level 0, 2 of level 1
        pass
    proc.send_signal(signal.SIGINT)  # during the wait after iteration 2 of level 1
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and f"interrupted; resume with --resume {path}" in err
    reported = json.loads(out.splitlines()[-1])
    saved = load_checkpoint(path)
    assert (saved.level, saved.iteration) == (reported["level"], reported["iteration"])
    assert saved.level == 1 and saved.iteration >= 2  # written on Ctrl-C: no periodic write holds a state
    code, _, err = run(tmp_path, "--resume", "--every", "100")
    assert code == 0, err
    assert_same(tmp_path / "out.h5", reference)
