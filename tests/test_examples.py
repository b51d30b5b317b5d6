"""The paper's experiment scripts in ``examples/`` on a tiny budget: options reach the runs, files are written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from ocdl.problems import write_idx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"_ocdl_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_mnist(tmp_path):
    """Random 28 x 28 'digits' in the four IDX files of MNIST."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for split, count in (("train", 24), ("t10k", 6)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8))
    return folder


def test_paper_2d_runs_the_comparison_and_prints_the_paper_beside_it(tmp_path, capsys):
    paper_2d = load_example("paper_2d")
    runs = paper_2d.main(["--problems", "ellipses", "--steppers", "resnet,verlet", "--max-layers", "8",
                          "--iterations", "1", "--out", str(tmp_path), "--no-progress"])
    assert [(r["problem"], r["stepper"]) for r in runs] == [("ellipses", "resnet"), ("ellipses", "verlet")]
    printed = capsys.readouterr().out
    assert "| ellipses | resnet |" in printed and "[100]" in printed
    for name in ("table.md", "accuracy.png", "features.png", "resnet/results.json", "verlet/params.h5"):
        assert (tmp_path / "ellipses" / name).is_file()
    levels = json.loads((tmp_path / "ellipses" / "verlet" / "results.json").read_text())["levels"]
    assert [rec["n_layers"] for rec in levels] == [4, 8]


def test_paper_mnist_passes_sizes_memory_and_dtype_to_the_runs(tmp_path, fake_mnist):
    paper_mnist = load_example("paper_mnist")
    out = tmp_path / "cmp"
    paper_mnist.main(["--steppers", "verlet", "--train-size", "16", "--val-size", "8", "--hessian-batch-size", "8",
                      "--max-layers", "4", "--iterations", "1", "--data-dir", str(fake_mnist), "--memory",
                      "reversible", "--dtype", "float32", "--out", str(out), "--no-progress"])
    settings = json.loads((out / "verlet" / "results.json").read_text())["settings"]
    assert (settings["train_size"], settings["val_size"], settings["hessian_batch_size"]) == (16, 8, 8)
    assert (settings["memory"], settings["dtype"], settings["max_layers"]) == ("reversible", "float32", 4)
    assert (out / "table.md").is_file()


def test_paper_mnist_cost_extrapolates_linearly_in_examples_and_layers(fake_mnist):
    paper_mnist = load_example("paper_mnist")
    cost = paper_mnist.main(["--cost", "--cost-layers", "2", "--train-size", "16", "--val-size", "8",
                             "--hessian-batch-size", "8", "--data-dir", str(fake_mnist), "--no-progress"])
    assert cost["n_layers"] == 2 and cost["n_train"] == 16 and cost["n_hessian"] == 8
    # 20 products on 5,000 Hessian examples plus the rest of the iteration on 50,000, from 2 to 16 layers
    rest = cost["iteration_s"] - cost["cg_iters"] * cost["gn_product_s"]
    expected = (20 * cost["gn_product_s"] * 5000 / 8 + rest * 50000 / 16) * 16 / 2
    assert cost["full_size_iteration_s"] == pytest.approx(expected)


def test_prolongation_stability_measures_every_level_and_its_prolongations(tmp_path, capsys):
    from ocdl.solvers.checkpoint import load_checkpoint

    from ocdl import input_sensitivity
    from ocdl.cli import main
    from ocdl.experiments import Settings, build_network, load_data, widen

    out = tmp_path / "anti"
    assert main(["train", "--problem", "swiss-roll", "--stepper", "antisymmetric", "--max-layers", "8",
                 "--iterations", "1", "--out", str(out), "--no-progress"]) == 0
    records = load_example("prolongation_stability").main([str(out), "--examples", "5"])
    assert [(r["trained_layers"], r["n_layers"]) for r in records] == [(4, 4), (4, 8), (8, 8)]
    assert [r["h"] for r in records] == [5.0, 2.5, 2.5]  # T = 20
    # the trained 8-layer network, measured directly on the first 5 validation examples
    checkpoint = load_checkpoint(out / "checkpoint.h5")
    settings = Settings(**checkpoint.settings)
    Y0 = widen(load_data(settings).Y_val[:5], settings)
    direct = input_sensitivity(build_network(settings, 8), checkpoint.levels[1]["result"].x.theta, Y0)
    assert records[2]["sensitivity"] == pytest.approx(direct, rel=1e-8)
    assert "| 4 layers | " in capsys.readouterr().out
