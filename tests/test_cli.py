"""The ``ocdl`` command line on tiny budgets, and its one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from ocdl.solvers import BlockCoordinateDescent, Checkpointing, multilevel
from ocdl.solvers.checkpoint import CHECKPOINT_KIND, load_checkpoint
from test_io import flip_data_byte

import ocdl
from ocdl.backend import cupy_available
from ocdl.cli import main
from ocdl.io import load_params, read_tree, write_tree
from ocdl.learning_problem import LearningProblem

TINY = ["--max-layers", "8", "--iterations", "2", "--no-progress"]


def test_train_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "| layers | resnet train acc (%)" in printed and f"wrote {out / 'params.h5'}" in printed
    results = json.loads((out / "results.json").read_text())
    assert {"problem", "stepper", "settings", "levels", "best_val_accuracy", "time_s"} <= set(results)
    assert (results["problem"], results["stepper"]) == ("ellipses", "resnet")
    assert [rec["n_layers"] for rec in results["levels"]] == [4, 8]
    assert {"n_layers", "train_accuracy", "best_val_accuracy", "time_s"} <= set(results["levels"][0])
    assert results["settings"]["max_iter"] == 2 and results["settings"]["alpha_theta"] == 1e-3
    with h5py.File(out / "params.h5", "r") as f:
        assert f["theta"].shape == (8 * 5,) and f["W"].shape == (2, 1) and f["mu"].shape == (1,)
    assert load_params(out / "params.h5")["settings"]["problem"] == "ellipses"
    assert (out / "accuracy.png").is_file() and (out / "features.png").is_file()
    assert not list(out.glob(".*.tmp"))  # results.json, params.h5, checkpoint.h5 written by renames


def test_compare_and_options(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--problem", "peaks", "--steppers", "resnet,verlet", "--out", str(out), "--final-time", "2",
            "--max-layers", "4", "--iterations", "1", "--alpha", "1e-4", "--width", "2", "--dtype", "float32",
            "--memory", "recompute", "--chunk-size", "300", "--classifier-newton-steps", "3",
            "--classifier-cg-maxiter", "4", "--no-progress"]
    assert main(argv) == 0
    assert "| layers | resnet train acc (%) | resnet best val acc (%) | verlet" in capsys.readouterr().out
    results = json.loads((out / "resnet" / "results.json").read_text())
    assert (results["settings"]["final_time"], results["settings"]["alpha_theta"]) == (2.0, 1e-4)
    assert results["settings"]["width"] == 2
    assert (results["settings"]["dtype"], results["settings"]["memory"]) == ("float32", "recompute")
    assert results["settings"]["chunk_size"] == 300
    assert (results["settings"]["classifier_newton_steps"], results["settings"]["classifier_cg_maxiter"]) == (3, 4)
    with h5py.File(out / "resnet" / "params.h5", "r") as f:
        assert f["theta"].dtype == np.float32
    for name in ("table.md", "comparison.json", "accuracy.png", "features.png", "verlet/params.h5"):
        assert (out / name).is_file()


def test_phase_plane_and_quick_demo(tmp_path, capsys):
    assert main(["phase-plane", "--out", str(tmp_path / "stab")]) == 0
    assert (tmp_path / "stab" / "figure1.png").is_file() and (tmp_path / "stab" / "figure2.png").is_file()
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "antisymmetric best val acc (%)" in printed and "demo took" in printed
    assert (tmp_path / "demo" / "verlet" / "results.json").is_file()


def test_the_demo_replaces_a_demo_and_keeps_any_other_run(tmp_path, capsys):
    """``ocdl demo`` run again replaces its folder (the README's command may be run twice); a comparison of
    other steppers, or a run folder, stays unless --overwrite (the demo wrote over them before)."""
    demo = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(demo), "--no-progress"]) == 0
    assert main(["demo", "--quick", "--out", str(demo), "--no-progress"]) == 0
    other, same = tmp_path / "other", tmp_path / "same"
    assert main(["compare", "--problem", "ellipses", "--steppers", "resnet,verlet", "--max-layers", "4",
                 "--iterations", "1", "--out", str(other), "--no-progress"]) == 0
    assert main(["compare", "--problem", "ellipses", "--max-layers", "8", "--iterations", "1", "--out", str(same),
                 "--no-progress"]) == 0  # the demo's problem and steppers, but a user's comparison
    run = tmp_path / "run"
    assert main(["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    for out in (other, same, run):
        before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
        assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
        assert f"ocdl demo: {out} holds a finished run (" in capsys.readouterr().err
        assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert main(["demo", "--quick", "--out", str(other), "--overwrite", "--no-progress"]) == 0
    assert json.loads((other / "plan.json").read_text())["steppers"] == ["resnet", "antisymmetric", "verlet"]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_run_killed_while_writing_its_folder_writes_it_on_resume(command, tmp_path, capsys):
    """``results.json`` (``comparison.json``) is written last; a run killed before it, its checkpoint finished,
    writes the whole folder again when resumed (it said "nothing to resume" and kept the folder incomplete)."""
    out = tmp_path / "run"
    argv = (["train", "--stepper", "resnet", *TINY] if command == "train" else
            ["compare", "--steppers", "resnet", "--max-layers", "4", "--iterations", "1", "--no-progress"])
    assert main([*argv, "--problem", "ellipses", "--out", str(out)]) == 0
    marker = "results.json" if command == "train" else "comparison.json"
    written = sorted(path.relative_to(out) for path in out.rglob("*") if path.is_file())
    last = max(written, key=lambda path: (out / path).stat().st_mtime_ns)
    assert last == Path(marker)
    for name in (marker, "features.png"):  # as a kill while the figures were written leaves it
        (out / name).unlink()
    capsys.readouterr()
    assert main([command, "--resume", str(out), "--no-progress"]) == 0
    assert "nothing to resume" not in capsys.readouterr().out
    assert sorted(path.relative_to(out) for path in out.rglob("*") if path.is_file()) == written


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["train", "--problem", "circles", "--stepper", "resnet"], 2, "invalid choice: 'circles'"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--max-layers", "abc"], 2, "invalid int value"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--max-layers", "0"], 1,
         "--max-layers must be a positive integer"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--final-time", "-1"], 1,
         "--final-time must be a finite number > 0"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--gamma", "0.1"], 1, "--gamma is only used"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--memory", "reversible"], 1,
         "--memory 'reversible' needs a reversible stepper"),
        (["train", "--problem", "mnist", "--stepper", "resnet", "--data-dir", "/no/such/folder"], 1,
         "MNIST data folder /no/such/folder does not exist; pass --data-dir"),
        (["compare", "--problem", "peaks", "--steppers", "resnet,resnet"], 2,
         "argument --steppers: steppers must be a comma-separated list of distinct"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--iterations", "2.5"], 2,
         "argument --iterations: invalid int value: '2.5'"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--alpha", "-1"], 1,
         "ocdl: error: --alpha must be a finite number >= 0, got -1.0"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--alpha-w", "-1"], 1,
         "ocdl: error: --alpha-w must be a finite number >= 0, got -1.0"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--max-layers", "2"], 1,
         "ocdl: error: --max-layers (2) must be at least --first-layers (4)"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--data-dir", "mnist"], 1,
         "ocdl: error: --train-size, --val-size and --data-dir are for mnist"),
        (["train", "--problem", "ellipses", "--stepper", "verlet", "--max-layers", "1000000000"], 1,
         "ocdl: error: --max-layers 1000000000: 28 levels up to 536,870,912 layers; the finest would take about "),
        (["train", "--resume", "/no/such/run", "--iterations", "3"], 2, "drop --iterations"),
        (["train", "--problem", "ellipses"], 2, "--problem and --stepper are required (or --resume DIR)"),
        (["compare", "--steppers", "resnet"], 2, "ocdl compare: --problem is required (or --resume DIR)"),
        (["train", "--resume", "/no/such/run"], 1, "/no/such/run/checkpoint.h5: no such file"),
        (["train", "--resume", "/no/such/run", "--seed", "3"], 2, "--resume takes the settings"),
        ([], 2, "the following arguments are required: COMMAND"),
        (["train", "--problem", "ellipses", "--stepper", "resnet", "--checkpoint-every", "0"], 2,
         "argument --checkpoint-every: must be an integer >= 1, got '0'"),
        (["compare", "--problem", "ellipses", "--checkpoint-every", "x"], 2,
         "argument --checkpoint-every: must be an integer >= 1, got 'x'"),
        (["demo", "--max-layers", "0"], 2, "argument --max-layers: must be an integer >= 1, got '0'"),
        (["demo", "--quick", "--max-layers", "16"], 2, "argument --max-layers: not allowed with argument --quick"),
    ],
)
def test_bad_input_is_one_line_without_traceback(argv, status, message, capsys, tmp_path):
    out = ["--out", str(tmp_path / "x")] if argv and argv[0] == "train" and "--resume" not in argv else []
    assert main([*argv, *out]) == status
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def raise_during_training(monkeypatch, error: BaseException, when):
    """Make the experiments' ``multilevel`` raise ``error`` at the iteration where ``when(call, k, state)`` holds
    (``call``: 1 in the first run of ``multilevel``, 2 in the second, ...); return the original ``multilevel``."""
    import ocdl.experiments.training as training

    multilevel, calls = training.multilevel, []

    def patched(*args, **kwargs):
        calls.append(1)

        def callback(k, state):
            if when(len(calls), k, state):
                raise error

        return multilevel(*args, callback=callback, **kwargs)

    monkeypatch.setattr(training, "multilevel", patched)
    return multilevel


def in_the_8_layer_level(run: int | None = None):
    """``when`` of :func:`raise_during_training`: the second iteration of the 8-layer level (of the ``run``-th
    run of ``multilevel`` only, if given: the ``run``-th stepper of a comparison)."""
    return lambda call, k, state: (run is None or call == run) and k == 1 and state.params.theta.size == 8 * 5


def test_interrupted_training_resumes_exactly(tmp_path, capsys, monkeypatch):
    import ocdl.experiments.training as training

    argv = ["train", "--problem", "ellipses", "--stepper", "verlet", "--max-layers", "8", "--iterations", "3",
            "--checkpoint-every", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    multilevel = raise_during_training(monkeypatch, KeyboardInterrupt(), in_the_8_layer_level())
    assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    err = capsys.readouterr().err
    assert "training interrupted" in err and f"ocdl train --resume {tmp_path / 'cut'}" in err
    assert "continues with the 8-layer level after 2 iterations" in err  # levels named by their layers
    assert not (tmp_path / "cut" / "results.json").exists()
    monkeypatch.setattr(training, "multilevel", multilevel)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    whole, cut = (load_params(tmp_path / name / "params.h5") for name in ("whole", "cut"))
    assert (whole["theta"] == cut["theta"]).all() and (whole["W"] == cut["W"]).all()
    levels = [json.loads((tmp_path / name / "results.json").read_text())["levels"] for name in ("whole", "cut")]
    assert [rec["val_accuracy"] for rec in levels[0]] == [rec["val_accuracy"] for rec in levels[1]]


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = ["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(blocker / "run"),
            "--max-layers", "4", "--iterations", "1", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ocdl train: --out {blocker / 'run'} cannot be a run folder: Not a directory")
    assert len(err.strip().splitlines()) == 1


def test_python_dash_m_ocdl_reports_errors_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "ocdl", "train", "--problem", "ellipses", "--stepper", "resnet",
                           "--iterations", "-3"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "ocdl: error: --iterations must be a positive integer, got -3"


@pytest.mark.skipif(cupy_available(), reason="CuPy and a GPU are present: --device gpu is valid here")
def test_gpu_without_cupy_is_one_line(capsys, tmp_path):
    argv = ["compare", "--problem", "ellipses", "--device", "gpu", "--out", str(tmp_path / "x"), "--no-progress"]
    assert main(argv) == 1 and not (tmp_path / "x").exists()
    assert capsys.readouterr().err.strip() == (
        "ocdl: error: --device 'gpu' needs CuPy and a CUDA device (pip install ocdl[gpu]); use --device 'cpu'"
    )


def resume_error(folder, capsys) -> str:
    """The one line ``ocdl train --resume folder`` prints when it fails (exit status 1)."""
    assert main(["train", "--resume", str(folder), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocdl: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_resume_from_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(out), *TINY]) == 0
    flip_data_byte(out / "checkpoint.h5", "levels/0/result/x/theta")
    assert f"{out / 'checkpoint.h5'}: corrupt ocdl file" in resume_error(out, capsys)


def test_resume_after_a_first_checkpoint_write_was_killed(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.h5.0a1b2c3d.tmp").write_bytes(b"\0" * 512)  # all that a SIGKILL left
    err = resume_error(out, capsys)
    assert f"{out}: no checkpoint was completed in this folder (only .checkpoint.h5.0a1b2c3d.tmp" in err


def test_resume_from_a_checkpoint_of_the_python_api_is_one_line(tmp_path, capsys):
    net = ocdl.network("resnet", 2, 2, 1.0)
    problem = LearningProblem(net, ocdl.SoftmaxCrossEntropy(), np.ones((4, 2)), np.array([0, 1, 0, 1]))
    out = tmp_path / "api"
    multilevel(problem, net.init_params(0), max_layers=4, solver=BlockCoordinateDescent(max_iter=1), progress=False,
               checkpoint=Checkpointing(out / "checkpoint.h5"))
    err = resume_error(out, capsys)
    assert "a checkpoint of the Python API with no command-line settings; resume it from Python" in err
    assert f"checkpoint=Checkpointing({str(out / 'checkpoint.h5')!r}, resume=True)" in err


def test_a_checkpoint_of_ocdl_train_before_the_solvers_were_objects_resumes_exactly(tmp_path, capsys):
    """tests/data/legacy_cli_checkpoint.h5: ``ocdl train --problem ellipses --stepper verlet --max-layers 8
    --iterations 3 --checkpoint-every 1``, interrupted in its second level by the code of commit 0cf207c;
    legacy_cli_params.h5: that code's uninterrupted run."""
    import shutil
    from pathlib import Path

    data = Path(__file__).resolve().parent / "data"
    (tmp_path / "cut").mkdir()
    shutil.copy(data / "legacy_cli_checkpoint.h5", tmp_path / "cut" / "checkpoint.h5")
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err  # it recorded no number of processes: nothing to warn of
    then, now = load_params(data / "legacy_cli_params.h5"), load_params(tmp_path / "cut" / "params.h5")
    for key in ("theta", "W", "mu"):
        np.testing.assert_array_equal(now[key], then[key])


@pytest.mark.parametrize("where", ["training", "checkpoint write"])
def test_out_of_gpu_memory_is_one_line_and_leaves_whole_files(where, tmp_path, capsys, monkeypatch):
    """CuPy's out-of-memory error (the stand-in's ``cupy.cuda.memory.OutOfMemoryError``) in the middle of a GPU
    run, in a training iteration or while a checkpoint is written: one line that names ``--chunk-size`` and
    ``--memory``, exit status 1, no traceback, no results, and the checkpoint on disk the last whole one."""
    from ocdl.solvers.checkpoint import load_checkpoint
    from standin_cupy import install

    import ocdl.io

    cupy = install(monkeypatch)
    oom = cupy.cuda.memory.OutOfMemoryError(3 << 30, 120 << 30)
    if where == "training":
        raise_during_training(monkeypatch, oom, in_the_8_layer_level())
    else:
        asnumpy, copies = ocdl.io.asnumpy, []

        def copy_until_memory_runs_out(x):
            copies.append(x)
            if len(copies) == 40:  # inside a later checkpoint, some of its arrays already written
                raise oom
            return asnumpy(x)

        monkeypatch.setattr(ocdl.io, "asnumpy", copy_until_memory_runs_out)
    out = tmp_path / "run"
    argv = ["train", "--problem", "ellipses", "--stepper", "resnet", "--device", "gpu", "--out", str(out),
            "--max-layers", "8", "--iterations", "3", "--checkpoint-every", "1", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == ("ocdl: error: out of memory: Out of memory allocating 3,221,225,472 bytes (allocated so far: "
                   "128,849,018,880 bytes).; start again with a smaller --chunk-size (examples propagated at once) "
                   "or --memory recompute (fewer stored states)\n")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.h5"]  # no results, no temporary file
    assert load_checkpoint(out / "checkpoint.h5").settings["device"] == "gpu"  # whole: it loads


def test_allocation_failures_are_recognised():
    """Failed allocations on the host (NumPy's MemoryError) and the GPU (CuPy's, the CUDA libraries') are
    told apart from other errors, also those that mention memory."""
    from ocdl.backend import out_of_memory

    def cupy_error(module, message):
        return type("CUBLASError", (RuntimeError,), {"__module__": module})(message)

    assert out_of_memory(MemoryError("Unable to allocate 3.2 GiB for an array"))
    assert out_of_memory(cupy_error("cupy_backends.cuda.libs.cublas", "CUBLAS_STATUS_ALLOC_FAILED"))
    assert out_of_memory(cupy_error("cupy_backends.cuda.api.runtime", "cudaErrorMemoryAllocation: out of memory"))
    # a module load or a kernel launch (RawModule, RawKernel) goes through the driver API
    assert out_of_memory(cupy_error("cupy_backends.cuda.api.driver", "CUDA_ERROR_OUT_OF_MEMORY: out of memory"))
    assert not out_of_memory(cupy_error("cupy_backends.cuda.api.driver", "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal "
                                        "memory access was encountered"))
    assert not out_of_memory(cupy_error("cupy_backends.cuda.api.runtime", "cudaErrorIllegalAddress"))
    assert not out_of_memory(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED"))  # not CuPy's
    assert not out_of_memory(ValueError("memory must be one of auto, store-all"))


def test_help_shows_every_default_and_marks_the_required_options(capsys):
    from ocdl.cli import SETTING_OPTIONS

    for command in ("train", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        printed = capsys.readouterr().out
        text = " ".join(printed.split())
        options, current = {}, []  # each option's lines of help: from "  --flag" to the next line at that indent
        for line in printed.split("options:", 1)[1].splitlines():
            if line.startswith("  -"):
                current = options.setdefault(line.split()[0].rstrip(","), [])
            if line.startswith("  "):
                current.append(line)
        flags = [flag for flag, *_ in SETTING_OPTIONS] + ["--out", "--no-progress"]
        flags += ["--checkpoint-every"] + (["--steppers"] if command == "compare" else [])
        for flag in flags:
            assert "(default: " in " ".join(" ".join(options[flag]).split()), (command, flag, options[flag])
        assert "required, unless --resume DIR: --problem" in text and "the data set (required unless --resume)" in text
    assert "--iterations K block coordinate descent iterations per level (default: 20)" in text
    assert "--classifier-newton-steps K classifier's Newton-PCG steps per iteration (default: ellipses, swiss-roll, " \
           "peaks 2; mnist 5)" in text
    assert "--width n features (2-D, the points duplicated) or channels (MNIST) (default: ellipses 2; swiss-roll 4, " \
           "verlet 2; peaks 8, verlet 2; mnist 6)" in text
    assert "--train-size S MNIST: training images (default: 50000)" in text


def test_settings_that_cannot_mean_what_was_asked_are_said(tmp_path, capsys):
    argv = ["train", "--problem", "ellipses", "--stepper", "resnet", "--max-layers", "5", "--iterations", "1",
            "--batch-size", "5000", "--hessian-batch-size", "3000", "--out", str(tmp_path / "run"), "--no-progress"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert not caught  # the solvers' UserWarning of the batch size: said once, below, in the options' names
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "ocdl: warning: --max-layers 5: the levels double from --first-layers 4, so the finest level has 4 layers; "
        "use --max-layers 4, or 8 for one more level",
        "ocdl: warning: --batch-size 5000 is more than the 1000 training examples: every iteration takes all 1000",
        "ocdl: warning: --hessian-batch-size 3000 is more than the 1000 examples of a batch: the Gauss-Newton matrix "
        "takes all 1000",
    ]
    levels = json.loads((tmp_path / "run" / "results.json").read_text())["levels"]
    assert [rec["n_layers"] for rec in levels] == [4]


def test_an_absurd_depth_is_refused_with_its_estimated_cost(tmp_path, capsys, monkeypatch):
    import ocdl.cli

    out = tmp_path / "deep"
    assert main(["train", "--problem", "ellipses", "--stepper", "verlet", "--max-layers", "1000000000",
                 "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert re.search(r"the finest would take about [\d.,]+ (days|years) for its 20 iterations and [\d.]+ GB of memory "
                     r"\(the machine has [\d.]+ GB\)", err), err
    assert err.endswith("choose fewer layers, or add --force to run it anyway") and not out.exists()

    calls = []
    monkeypatch.setattr(ocdl.cli, "train", lambda *args, **kwargs: calls.append(args) or 1 / 0)
    with pytest.raises(ZeroDivisionError):  # --force: past the check, into the training (stubbed)
        main(["train", "--problem", "ellipses", "--stepper", "verlet", "--max-layers", "1000000000", "--force",
              "--out", str(out), "--no-progress"])
    assert calls and calls[0][0].max_layers == 1000000000


def test_cost_estimate_scales_with_layers_and_examples():
    from ocdl.experiments import load_data, paper_settings
    from ocdl.experiments.cost import duration, finest_level_cost, size

    settings = paper_settings("ellipses", "resnet", max_layers=64, max_iter=10)
    data = load_data(settings)
    small = finest_level_cost(settings, data, seconds_per_layer=1e-6)
    n_train, n_val = data.Y_train.shape[0], data.Y_val.shape[0]
    # 10 iterations of 64 layers on (6 + 4 * 20) n_train + n_val examples, 1 microsecond per layer and example
    assert small.n_layers == 64 and small.seconds == pytest.approx(10 * 64 * 1e-6 * (86 * n_train + n_val))
    deep = finest_level_cost(settings.replace(max_layers=64 * 1024), data, seconds_per_layer=1e-6)
    assert deep.seconds == pytest.approx(1024 * small.seconds) and deep.memory_bytes > 100 * small.memory_bytes
    assert (duration(42), duration(5400), duration(3 * 365.25 * 86400)) == ("42 s", "1.5 hours", "3.0 years")
    assert (size(512), size(2.5e9)) == ("512 bytes", "2.5 GB")


def test_data_dir_on_resuming_a_generated_problem_is_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"  # a fresh 2-D run refuses --data-dir; a resumed one ignored it
    interrupted_run(["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(out), "--max-layers", "8",
                     "--iterations", "2", "--checkpoint-every", "1", "--no-progress"], monkeypatch)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--data-dir", str(tmp_path), "--no-progress"]) == 2
    assert f"ocdl train: --data-dir is for mnist; the run in {out} is on ellipses" in capsys.readouterr().err


def test_the_layer_is_timed_on_as_many_examples_as_a_short_sweep_takes(monkeypatch):
    """The estimate that refuses an absurd network must not run it: the timing grows from one example while a
    sweep takes under its budget (it always took 1,024: minutes and 15 GB for 1,000 MNIST channels)."""
    from ocdl.experiments import load_data, paper_settings
    from ocdl.experiments.cost import layer_seconds

    settings = paper_settings("ellipses", "resnet")
    data = load_data(settings)
    sizes, forward = [], ocdl.Network.forward

    def counted(self, theta, Y0):
        sizes.append(Y0.shape[0])
        return forward(self, theta, Y0)

    monkeypatch.setattr(ocdl.Network, "forward", counted)
    assert layer_seconds(settings, data, budget=0.0) > 0 and set(sizes) == {1}  # a slow sweep: one example
    sizes.clear()
    assert layer_seconds(settings, data, budget=np.inf) > 0 and max(sizes) == min(1024, len(data.Y_train))
    assert sizes[:3] == [1, 1, 1] and all(b >= 2 * a for a, b in zip(sizes[::3], sizes[3::3]))


def test_tables_show_short_times_with_their_digits():
    from ocdl.experiments.output import results_table

    level = {"n_layers": 4, "train_accuracy": 1.0, "best_val_accuracy": 1.0}
    summary = {"problem": "ellipses", "stepper": "resnet", "levels": [level], "best_val_accuracy": 1.0,
               "best_val_n_layers": 4}
    rows = [results_table([dict(summary, time_s=t)]).splitlines()[-1] for t in (0.0123, 0.04, 13.26)]
    assert rows == ["| time (s) |  | 0.012 |", "| time (s) |  | 0.04 |", "| time (s) |  | 13.3 |"]


# -- runs are never lost ---------------------------------------------------------------------------


def interrupted_run(argv, monkeypatch, after_iterations=1):
    """Run ``ocdl train argv`` and stop it by Ctrl-C after ``after_iterations`` iterations (exit status 130)."""
    import ocdl.experiments.training as training

    after = lambda call, k, state: k + 1 == after_iterations  # noqa: E731
    multilevel = raise_during_training(monkeypatch, KeyboardInterrupt(), after)
    assert main(argv) == 130
    monkeypatch.setattr(training, "multilevel", multilevel)


def test_resuming_on_another_number_of_processes_is_one_warning(tmp_path, capsys, monkeypatch):
    """A checkpoint of two processes (its shares of the examples set so) resumed on one: one ``ocdl: warning:``
    line naming them and how to continue bit for bit, then the run; on one process again, none."""
    out = tmp_path / "two"
    interrupted_run(["train", "--problem", "ellipses", "--stepper", "verlet", "--checkpoint-every", "1", "--out",
                     str(out), *TINY], monkeypatch)
    path = out / "checkpoint.h5"
    tree = read_tree(path, CHECKPOINT_KIND)
    (n,) = tree["shares"]
    tree["shares"] = [n // 2, n - n // 2]  # as two processes would have written it
    write_tree(path, tree, CHECKPOINT_KIND)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and (
        f"ocdl: warning: {path} was written by 2 processes and continues on 1: a valid run, but not the one 2 "
        "processes would have computed (the sums over the examples round differently); resume with mpiexec -n 2 for "
        "a bit-identical continuation\n") in err
    assert main(["train", "--resume", str(out), "--max-layers", "16", "--no-progress"]) == 0  # written by one
    assert "warning" not in capsys.readouterr().err


def test_a_rerun_without_resume_keeps_an_unfinished_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ow"
    argv = ["train", "--problem", "ellipses", "--stepper", "verlet", "--out", str(out), "--no-progress"]
    interrupted_run([*argv, "--max-layers", "256", "--checkpoint-every", "1"], monkeypatch, after_iterations=2)
    saved = (out / "checkpoint.h5").read_bytes()
    capsys.readouterr()
    assert main([*argv, "--max-layers", "4", "--iterations", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ocdl train: {out} holds an unfinished run (checkpoint.h5); continue it with ocdl train --resume "
                   f"{out}, or add --overwrite to discard it (see ocdl --help)")
    assert (out / "checkpoint.h5").read_bytes() == saved
    assert main([*argv, "--max-layers", "4", "--iterations", "2", "--overwrite"]) == 0
    assert load_checkpoint(out / "checkpoint.h5").finished and load_checkpoint(out / "checkpoint.h5").levels[-1][
        "n_layers"] == 4


def test_a_rerun_without_resume_keeps_a_finished_run(tmp_path, capsys):
    out = tmp_path / "done"
    argv = ["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(out), *TINY]
    assert main(argv) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"ocdl train: {out} holds a finished run (checkpoint.h5, results.json, params.h5, accuracy.png, " \
           "features.png); choose another --out, or add --overwrite to replace it" in err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    (out / "stale.txt").write_text("not ocdl's")
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert load_params(out / "params.h5")["settings"]["seed"] == 1 and (out / "stale.txt").exists()


def test_compare_keeps_a_finished_comparison(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--problem", "ellipses", "--steppers", "resnet", "--out", str(out), "--max-layers", "4",
            "--iterations", "1", "--no-progress"]
    assert main(argv) == 0
    table = (out / "table.md").read_text()
    assert main(argv) == 2 and "holds a finished run (plan.json, comparison.json, table.md" in capsys.readouterr().err
    assert (out / "table.md").read_text() == table
    assert main([*argv, "--overwrite"]) == 0


def test_mnist_folder_is_stored_absolute_and_may_move_before_resuming(tmp_path, capsys, monkeypatch):
    from test_experiments import fake_mnist

    (tmp_path / "work").mkdir()
    fake_mnist(tmp_path / "work" / "digits")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("OCDL_MNIST_DIR", raising=False)
    out = tmp_path / "run"
    interrupted_run(["train", "--problem", "mnist", "--stepper", "resnet", "--data-dir", "digits", "--width", "2",
                     "--train-size", "16", "--val-size", "8", "--max-layers", "8", "--iterations", "2",
                     "--checkpoint-every", "1", "--out", str(out), "--no-progress"], monkeypatch)
    assert load_checkpoint(out / "checkpoint.h5").settings["data_dir"] == str(tmp_path / "work" / "digits")
    monkeypatch.chdir(tmp_path)  # resume from elsewhere: the stored folder is absolute
    monkeypatch.setenv("OCDL_MNIST_DIR", str(fake_mnist(tmp_path / "other", seed=1)))  # not before a stored one
    interrupted_run(["train", "--resume", str(out), "--no-progress"], monkeypatch, after_iterations=2)
    monkeypatch.delenv("OCDL_MNIST_DIR")
    (tmp_path / "work" / "digits").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 1
    assert "does not exist; pass --data-dir or set OCDL_MNIST_DIR" in capsys.readouterr().err
    monkeypatch.setenv("OCDL_MNIST_DIR", str(tmp_path / "moved"))  # the environment variable names it anew ...
    interrupted_run(["train", "--resume", str(out), "--no-progress"], monkeypatch, after_iterations=2)
    monkeypatch.setenv("OCDL_MNIST_DIR", str(tmp_path / "nowhere"))  # ... and --data-dir before it
    assert main(["train", "--resume", str(out), "--data-dir", "moved", "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["settings"]["data_dir"] == str(tmp_path / "moved")


def test_an_interrupted_comparison_resumes_exactly(tmp_path, capsys, monkeypatch):
    import ocdl.experiments.training as training

    argv = ["compare", "--problem", "ellipses", "--steppers", "resnet,verlet", "--max-layers", "8", "--iterations",
            "3", "--checkpoint-every", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    multilevel = raise_during_training(monkeypatch, KeyboardInterrupt(), in_the_8_layer_level(run=2))  # verlet
    cut = tmp_path / "cut"
    assert main([*argv, "--out", str(cut)]) == 130
    err = capsys.readouterr().err
    assert f"continues with the 8-layer level after 2 iterations; continue with: ocdl compare --resume {cut}" in err
    assert (cut / "plan.json").is_file() and (cut / "resnet" / "results.json").is_file()
    assert not load_checkpoint(cut / "verlet" / "checkpoint.h5").finished
    assert not (cut / "comparison.json").exists()
    monkeypatch.setattr(training, "multilevel", multilevel)
    assert main(argv + ["--out", str(cut)]) == 2  # not started again by accident
    assert f"{cut} holds an unfinished run (plan.json, verlet/checkpoint.h5)" in capsys.readouterr().err
    assert main(["compare", "--resume", str(cut), "--iterations", "5"]) == 2
    assert "--resume takes the settings and the folder from the run (only --data-dir may change); drop " \
           "--iterations" in capsys.readouterr().err
    assert main(["compare", "--resume", str(cut), "--no-progress"]) == 0
    for stepper in ("resnet", "verlet"):
        whole, resumed = (load_params(tmp_path / name / stepper / "params.h5") for name in ("whole", "cut"))
        assert all((whole[key] == resumed[key]).all() for key in ("theta", "W", "mu"))
    tables = [json.loads((tmp_path / name / "comparison.json").read_text()) for name in ("whole", "cut")]
    assert [[rec["val_accuracy"] for rec in run["levels"]] for run in tables[0]] == \
           [[rec["val_accuracy"] for rec in run["levels"]] for run in tables[1]]
    capsys.readouterr()
    before = (cut / "comparison.json").read_bytes()
    assert main(["compare", "--resume", str(cut / "plan.json")]) == 0  # a file in the folder names the folder
    said = capsys.readouterr().out
    assert f"ocdl compare: {cut} holds a finished run, up to 8 layers" in said and "nothing to resume" in said
    assert "ocdl compare --problem ellipses --steppers resnet,verlet --max-layers 16 --out NEW_DIR" in said
    assert (cut / "comparison.json").read_bytes() == before


def test_resume_names_a_finished_run_and_takes_the_checkpoint_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["train", "--problem", "ellipses", "--stepper", "verlet", "--out", str(out), "--max-layers", "8",
            "--iterations", "3", "--checkpoint-every", "1", "--no-progress"]
    interrupted_run(argv, monkeypatch, after_iterations=2)
    assert main(["train", "--resume", str(out / "checkpoint.h5"), "--no-progress"]) == 0  # the file, not its folder
    results = json.loads((out / "results.json").read_text())
    assert [rec["n_layers"] for rec in results["levels"]] == [4, 8]
    capsys.readouterr()
    files = {path.name: path.read_bytes() for path in out.iterdir()}
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out.strip()
    best = f"{100 * results['best_val_accuracy']:.2f}% at {results['best_val_n_layers']} layers"
    assert said.startswith(f"ocdl train: {out} holds a finished run, up to 8 layers (best validation accuracy: "
                           f"verlet {best}); nothing to resume.")
    assert said.endswith(f"Continue it deeper, from its 8-layer level: ocdl train --resume {out} --max-layers 16")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == files  # nothing trained or written again


DEEPER = ["--problem", "ellipses", "--stepper", "verlet", "--iterations", "2", "--checkpoint-every", "1",
          "--no-progress"]


def same_runs(a, b) -> None:
    """The run folders ``a`` and ``b`` hold the same run, bit for bit: parameters, settings, every level's
    record and traces (all but the times)."""
    first, second = (load_params(folder / "params.h5") for folder in (a, b))
    assert all((first[key] == second[key]).all() for key in ("theta", "W", "mu"))
    results = [json.loads((folder / "results.json").read_text()) for folder in (a, b)]
    for summary in results:
        summary.pop("time_s")
        for level in summary["levels"]:
            level.pop("time_s")
    assert results[0] == results[1]
    assert all((folder / name).is_file() for folder in (a, b) for name in ("accuracy.png", "features.png"))


@pytest.fixture(scope="module")
def straight_to_16(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", *DEEPER, "--max-layers", "16", "--out", str(out)]) == 0
    return out


def test_a_finished_run_continues_deeper_exactly(tmp_path, capsys, monkeypatch, straight_to_16):
    import ocdl.experiments.training as training

    out = tmp_path / "run"
    assert main(["train", *DEEPER, "--max-layers", "8", "--out", str(out)]) == 0
    multilevel, trained = training.multilevel, []
    monkeypatch.setattr(training, "multilevel", lambda *args, **kwargs: multilevel(
        *args, callback=lambda k, state: trained.append(state.params.theta.size // 5), **kwargs))
    assert main(["train", "--resume", str(out), "--max-layers", "16", "--no-progress"]) == 0
    assert set(trained) == {16}  # the 4- and 8-layer levels are not trained again
    same_runs(out, straight_to_16)
    summary = json.loads((out / "results.json").read_text())
    assert [rec["n_layers"] for rec in summary["levels"]] == [4, 8, 16] and summary["settings"]["max_layers"] == 16
    assert load_checkpoint(out / "checkpoint.h5").settings["max_layers"] == 16
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # finished now at 16 layers
    assert "up to 16 layers" in capsys.readouterr().out


def test_a_deeper_run_killed_before_its_folder_writes_it_on_resume(tmp_path, capsys, straight_to_16):
    """The checkpoint finished at 16 layers, results.json still the 8-layer run's (a SIGKILL between them): resume
    said "finished up to 8 layers", and its advice, --max-layers 16, was refused ("finished at 16")."""
    out = tmp_path / "run"
    assert main(["train", *DEEPER, "--max-layers", "8", "--out", str(out)]) == 0
    shallow = (out / "results.json").read_text()
    assert main(["train", "--resume", str(out), "--max-layers", "16", "--no-progress"]) == 0
    (out / "results.json").write_text(shallow)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "up to 8 layers" not in capsys.readouterr().out
    same_runs(out, straight_to_16)


def test_a_deeper_run_interrupted_in_its_new_level_resumes_exactly(tmp_path, capsys, monkeypatch, straight_to_16):
    out = tmp_path / "run"
    assert main(["train", *DEEPER, "--max-layers", "8", "--out", str(out)]) == 0
    import ocdl.experiments.training as training

    multilevel = raise_during_training(monkeypatch, KeyboardInterrupt(),
                                       lambda call, k, state: k == 1 and state.params.theta.size == 16 * 5)
    assert main(["train", "--resume", str(out), "--max-layers", "16", "--no-progress"]) == 130
    assert "continues with the 16-layer level after 2 iterations" in capsys.readouterr().err
    monkeypatch.setattr(training, "multilevel", multilevel)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # the stored settings plan 16 layers now
    same_runs(out, straight_to_16)


def test_an_unfinished_run_continues_deeper_exactly(tmp_path, monkeypatch, straight_to_16):
    import ocdl.experiments.training as training

    out = tmp_path / "run"
    multilevel = raise_during_training(monkeypatch, KeyboardInterrupt(),
                                       lambda call, k, state: k == 0 and state.params.theta.size == 8 * 5)
    assert main(["train", *DEEPER, "--max-layers", "8", "--out", str(out)]) == 130
    monkeypatch.setattr(training, "multilevel", multilevel)
    saved = load_checkpoint(out / "checkpoint.h5")
    assert (saved.level, saved.iteration) == (1, 1)  # in the 8-layer level
    assert main(["train", "--resume", str(out), "--max-layers", "16", "--no-progress"]) == 0
    same_runs(out, straight_to_16)


def test_max_layers_on_resume_must_add_a_level(tmp_path, capsys, monkeypatch):
    out, cut = tmp_path / "run", tmp_path / "cut"
    assert main(["train", *DEEPER, "--max-layers", "8", "--out", str(out)]) == 0
    interrupted_run(["train", *DEEPER, "--max-layers", "8", "--out", str(cut)], monkeypatch, after_iterations=1)
    files = {path.name: path.read_bytes() for path in out.iterdir()}
    capsys.readouterr()
    for max_layers in ("8", "15", "4"):
        assert main(["train", "--resume", str(out), "--max-layers", max_layers]) == 1
        assert capsys.readouterr().err.strip() == (
            f"ocdl: error: --max-layers {max_layers} adds no level to the run in {out}, which is finished at 8 "
            "layers; give --max-layers 16 or more to continue it deeper")
    assert main(["train", "--resume", str(cut), "--max-layers", "8"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"ocdl: error: --max-layers 8 adds no level to the run in {cut}, which plans levels up to 8 layers; give "
        "--max-layers 16 or more to continue it deeper")
    assert main(["train", "--resume", str(out), "--max-layers", "2"]) == 1
    assert "--max-layers (2) must be at least --first-layers (4)" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--max-layers", "16", "--iterations", "3"]) == 2
    assert ("--resume takes the settings and the folder from the run (only --data-dir and, to add levels, "
            "--max-layers may change); drop --iterations") in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--force"]) == 2  # --force only with --max-layers
    assert "drop --force" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == files  # nothing trained or written


@pytest.mark.parametrize("command", [["train", "--problem", "ellipses", "--stepper", "resnet"], ["demo", "--quick"],
                                     ["compare", "--problem", "ellipses", "--steppers", "resnet"]])
def test_an_out_that_cannot_be_a_folder_is_named(tmp_path, capsys, command):
    """A file given as --out failed with the OS's "[Errno 17] File exists: 'README.md'", naming no option."""
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*command, "--out", str(tmp_path / "notes.txt"), *TINY[-1:]]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'notes.txt'} cannot be a run folder: it is a file" in err, err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_load_run_classifies_as_the_run_did(tmp_path):
    """A run folder read back (ocdl.experiments.load_run) gives the run's validation accuracy, and its
    predictions are the sign of the logistic classifier on the network's features, computed here by hand."""
    from ocdl.experiments import load_data, load_run
    from ocdl.io import save_params

    out = tmp_path / "run"
    assert main(["train", "--problem", "ellipses", "--stepper", "verlet", "--out", str(out), *TINY]) == 0
    run = load_run(out)
    assert run.network.n_steps == 8 and run.settings.stepper == "verlet"
    data = load_data(run.settings)
    recorded = json.loads((out / "results.json").read_text())["levels"][-1]["best_val_accuracy"]
    assert run.accuracy(data.Y_val, data.C_val) == recorded
    saved = load_params(out / "params.h5")
    features = run.network.forward(saved["theta"], np.tile(data.Y_val, (1, run.settings.width // 2)))
    by_hand = (features @ saved["W"] + saved["mu"] > 0).astype(int).ravel()  # logistic: class 1 where p > 1/2
    np.testing.assert_array_equal(run.predict(data.Y_val), by_hand)
    with pytest.raises(FileNotFoundError, match="holds no params.h5: not a finished run folder"):
        load_run(tmp_path)
    save_params(tmp_path / "params.h5", saved["theta"], saved["W"], saved["mu"])
    with pytest.raises(ocdl.io.OcdlFileError, match="parameters without the settings of ocdl train"):
        load_run(tmp_path)


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bars_only_on_a_terminal(tmp_path, capsys, monkeypatch, terminal):
    """`ocdl demo > log 2>&1` wrote every redraw of the bars into the log (426 lines)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    argv = ["train", "--problem", "ellipses", "--stepper", "resnet", "--out", str(tmp_path / "run"),
            "--max-layers", "8", "--iterations", "2"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("it/s]" in err or "s/it]" in err) == terminal, err


def test_a_full_disk_while_checkpointing_is_one_line(tmp_path, capsys, monkeypatch):
    """It printed HDF5's traceback; the README promises one line. The last completed checkpoint stays."""
    from collections import namedtuple

    import ocdl.io

    out = tmp_path / "run"
    writes = []
    disk_usage = ocdl.io.shutil.disk_usage

    def filling(where):
        writes.append(where)
        usage = disk_usage(where)
        return usage if len(writes) < 3 else namedtuple("usage", "total used free")(usage.total, usage.total, 0)

    monkeypatch.setattr(ocdl.io.shutil, "disk_usage", filling)
    argv = ["train", "--problem", "ellipses", "--stepper", "resnet", "--checkpoint-every", "1", "--out", str(out)]
    assert main([*argv, *TINY]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocdl: error: [Errno 28] cannot write ") and "No space left on device" in err
    assert len(err.strip().splitlines()) == 1, err
    assert load_checkpoint(out / "checkpoint.h5").iteration >= 1 and not list(out.glob(".*.tmp"))
