"""Smoke test of ``benchmarks/run.py`` and an independent check of ocdl's derivatives against PyTorch.

PyTorch is optional: the comparison is skipped when it does not import. The Table 1 rows of the README and
the documentation are checked against the committed runs' ``results.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")

REQUIRED = {
    "workload": str,
    "stepper": str,
    "dtype": str,
    "library": str,
    "forward_s": float,
    "gradient_s": float,
    "gn_matvec_s": float,
    "roofline_s": float,
    "threads": int,
    "versions": dict,
    "machine": dict,
}


def _load(name: str):
    """A benchmarks module by path, under a name that cannot clash with other modules."""
    full = f"_ocdl_bench_{name}"
    if BENCH not in sys.path:  # the scripts import each other by plain name (``from common import ...``)
        sys.path.append(BENCH)
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(full, os.path.join(BENCH, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, json_path, timeout: int = 120, wrapper: str | None = None) -> tuple[str, list]:
    """Run ``benchmarks/<script> args --json json_path``: what it printed, and the records it wrote.

    ``wrapper``: Python code that runs the script itself (``{script}`` in it replaced by the script's path).
    """
    path = os.path.join(BENCH, script)
    command = [sys.executable, "-c", wrapper.replace("{script}", repr(path))] if wrapper else [sys.executable, path]
    proc = subprocess.run(
        [*command, *args, "--json", str(json_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(json_path.read_text())


def _torch_importable() -> bool:
    return importlib.util.find_spec("torch") is not None


def test_quick_run_writes_the_records(tmp_path):
    out = tmp_path / "quick.json"
    figure = tmp_path / "quick.png"
    printed, records = _run("run.py", "--quick", "--plot", str(figure), json_path=out)
    assert "grad o/t" in printed  # the table was printed
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # and the figure drawn
    assert isinstance(records, list) and records
    for rec in records:
        for key, kind in REQUIRED.items():
            assert key in rec, (key, rec)
            assert isinstance(rec[key], kind), (key, rec[key])
        assert rec["library"] in ("ocdl", "torch")
        assert rec["dtype"] in ("float64", "float32")
        assert rec["threads"] == 2
        for key in ("forward_s", "gradient_s", "gn_matvec_s", "roofline_s"):
            assert rec[key] > 0
    cases = {(r["workload"], r["stepper"], r["dtype"]) for r in records if r["library"] == "ocdl"}
    expected = {
        (w, s, d) for w in ("W1", "W2", "W3") for s in ("resnet", "verlet") for d in ("float64", "float32")
    }
    assert cases == expected
    libraries = {r["library"] for r in records}
    if _torch_importable():
        assert libraries == {"ocdl", "torch"}
        for rec in records:  # the two libraries' gradients, compared in the run itself
            assert rec["gradient_rel_diff"] <= (1e-10 if rec["dtype"] == "float64" else 1e-4), rec
    else:
        assert libraries == {"ocdl"}
        assert "PyTorch is not installed" in printed

    # --merge: the best of several runs (here one run twice) keeps the schema and the times
    printed, again = _run("run.py", "--merge", str(out), str(out), json_path=tmp_path / "merged.json", timeout=60)
    assert len(again) == len(records)
    for a, b in zip(again, records):
        assert {k: a[k] for k in REQUIRED} == {k: b[k] for k in REQUIRED}
        assert len(a["merged_from"]) == 2


def test_rounds_keep_each_librarys_best(tmp_path):
    figure = tmp_path / "rounds.png"  # without a roofline: drawn in milliseconds
    printed, records = _run("run.py", "--quick", "--workloads", "W1", "--dtypes", "float64", "--rounds", "3",
                            "--no-roofline", "--plot", str(figure), json_path=tmp_path / "rounds.json")
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert {(r["stepper"], r["library"]) for r in records if r["library"] == "ocdl"} == {
        ("resnet", "ocdl"), ("verlet", "ocdl")}
    for rec in records:
        assert rec["rounds"] == 3 and len(rec["rounds_s"]) == 3
        for key in ("forward_s", "gradient_s", "gn_matvec_s"):
            assert rec[key] == min(r[key] for r in rec["rounds_s"])


@pytest.mark.parametrize("workload", ["W1", "W2", "W3"])
@pytest.mark.parametrize("stepper", ["resnet", "verlet"])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_gradient_and_gauss_newton_equal_pytorch(workload, stepper, dtype, rtol):
    """ocdl's adjoint gradient and J^T J v agree with PyTorch autograd on the same numbers."""
    pytest.importorskip("torch")
    workloads = _load("workloads")
    torch_reference = _load("torch_reference")
    wl = workloads.QUICK[workload]
    ours = workloads.ocdl_callables(wl, stepper, np.dtype(dtype))
    theirs = torch_reference.torch_callables(wl, stepper, np.dtype(dtype), threads=1, gn_methods="double-backward")
    try:
        pairs = {
            "forward": (ours["forward"](), theirs["forward"]().numpy()),
            "gradient": (ours["gradient_value"](), theirs["gradient_value"]()),
            "gn_matvec": (ours["gn_setup"]()(), theirs["gn_value"]()),
        }
    finally:
        ours["close"]()
    for name, (a, b) in pairs.items():
        assert a.dtype == np.dtype(dtype), name
        assert a.shape == b.shape, name
        err = np.max(np.abs(a - b)) / np.max(np.abs(b))
        assert err <= rtol, (name, err)


@pytest.mark.parametrize("stepper, applications", [("resnet", 1), ("verlet", 2)])
def test_roofline_counts_products_bytes_and_activations(stepper, applications):
    """The estimate on a hand-counted dense workload, each term isolated by making the other rates infinite."""
    workloads, roofline = _load("workloads"), _load("roofline")
    wl = workloads.Workload("T", "test", n_examples=100, n_steps=10, final_time=1.0, width=4)
    layers, E = 10 * applications, 100 * 4 * 8  # layer applications; bytes of one float64 state
    gemm = {"apply": 1e9, "transpose": 2e9, "grad": 4e9}
    flops = 2 * 100 * 4 * 4  # one s x n times n x n product
    fast = {"gemm_flops_per_s": gemm, "bandwidth_bytes_per_s": np.inf, "activations_per_s": np.inf}
    est = roofline.estimate(wl, stepper, np.float64, fast)
    assert est["forward"]["total_s"] == pytest.approx(layers * flops / 1e9)
    assert est["gradient"]["total_s"] == pytest.approx(layers * flops * (1 / 1e9 + 1 / 2e9 + 1 / 4e9))
    assert est["gn_matvec"]["total_s"] == pytest.approx(layers * flops * (2 / 1e9 + 1 / 2e9 + 1 / 4e9))
    no_gemm = {"apply": np.inf, "transpose": np.inf, "grad": np.inf}
    memory_bound = roofline.estimate(wl, stepper, np.float64, dict(fast, gemm_flops_per_s=no_gemm,
                                                                    bandwidth_bytes_per_s=1e6))
    assert memory_bound["forward"]["total_s"] == pytest.approx(layers * 3 * E / 1e6)  # 3 arrays per application
    assert memory_bound["gradient"]["total_s"] == pytest.approx(layers * (4 + 6) * E / 1e6)
    tanh_bound = roofline.estimate(wl, stepper, np.float64, dict(fast, gemm_flops_per_s=no_gemm,
                                                                  activations_per_s=1e6))
    assert tanh_bound["forward"]["total_s"] == pytest.approx(layers * 100 * 4 / 1e6)  # one tanh per feature
    assert tanh_bound["gn_matvec"]["total_s"] == 0.0  # the derivative sweeps reuse the stored sigma'


def test_table_ratios_from_the_records():
    """The table's ratio columns, recomputed from made-up records (each time a different power of 2)."""
    run = _load("run")
    roof = {q: {"total_s": t} for q, t in (("forward", 0.25), ("gradient", 1.0), ("gn_matvec", 2.0))}
    ocdl = {"workload": "W9", "stepper": "resnet", "dtype": "float64", "library": "ocdl",
            "forward_s": 0.5, "gradient_s": 4.0, "gn_matvec_s": 8.0, "roofline": roof}
    torch = dict(ocdl, library="torch", forward_s=0.125, gradient_s=16.0, gn_matvec_s=32.0)
    del torch["roofline"]
    table = run.format_table([ocdl, torch]).splitlines()
    names = ["fwd", "grad", "gn", "torch fwd", "torch grad", "torch gn", "grad o/t", "roof/t", "grad/fwd",
             "gn/fwd", "roof fwd", "fwd/roof", "grad/roof", "gn/roof", "roof g/f", "roof n/f"]
    assert "roof/t" in table[0]
    row = dict(zip(names, [v for v in table[2].split() if v != "|"][3:], strict=True))
    assert row["fwd"] == "500.00" and row["torch grad"] == "16000.00"  # times in ms
    assert row["grad o/t"] == "0.25"  # ocdl gradient / torch gradient
    assert row["roof/t"] == "0.06"  # gradient roofline 1 s / torch gradient 16 s
    assert row["grad/fwd"] == "8.00" and row["gn/fwd"] == "16.00"
    assert row["fwd/roof"] == "2.00" and row["grad/roof"] == "4.00" and row["gn/roof"] == "4.00"
    assert row["roof g/f"] == "4.00" and row["roof n/f"] == "8.00"


def test_targets_from_made_up_records(tmp_path):
    """The targets of issue 24 (targets.py) recomputed by hand: fused ocdl's gradient over PyTorch's with TF32 off
    (not TF32 on, not ocdl plain), W3L's forward over its bandwidth limit, the CPU's gradient scaled from W3 to
    W3L's examples over the GPU's; each stored in its fused record."""
    targets = _load("targets")

    def rec(workload, stepper, library, gradient_s, kernels=None, **more):
        found = {"workload": workload, "stepper": stepper, "dtype": "float32", "library": library,
                 "gradient_s": gradient_s, "forward_s": 0.5, **more}
        return found if kernels is None else dict(found, kernels=kernels)

    records = [
        rec("W1", "resnet", "ocdl", 2.0, "fused"), rec("W1", "resnet", "ocdl", 3.0, "plain"),
        rec("W1", "resnet", "torch", 4.0), rec("W1", "resnet", "torch-tf32", 1.0),
        rec("W3", "resnet", "ocdl", 8.0, "fused"), rec("W3", "resnet", "torch", 1.0),  # W3 is no target
        rec("W3L", "resnet", "ocdl", 1.0, "fused", forward_s=0.3, roofline_s=0.1, n_examples=50000),
        rec("W3L", "resnet", "torch", 0.8),
        rec("W3L", "verlet", "ocdl", 2.0, "fused", forward_s=0.5, roofline_s=0.1, n_examples=50000),
        rec("W2", "verlet", "ocdl", 1.0, "fused", error="out of memory"), rec("W2", "verlet", "torch", 1.0),
    ]
    cpu = [rec("W3", "resnet", "ocdl", 0.25, "fused", n_examples=500, threads=16),
           rec("W3", "resnet", "ocdl", 0.01, "plain", n_examples=500, threads=16)]
    entries = targets.attach(records, cpu)
    assert sorted((e["target"], e["workload"], e["stepper"], e["dtype"]) for e in entries) == sorted(
        [("gradient", w, st, dt) for w in ("W1", "W2", "W3L") for st in ("resnet", "verlet")
         for dt in ("float32", "float64")] + [(t, "W3L", st, "float32") for t in ("forward", "cpu")
                                               for st in ("resnet", "verlet")])  # every target, measured or not
    unmeasured = {(e["target"], e["workload"], e["stepper"], e["dtype"]): e["detail"] for e in entries
                  if e["value"] is None}
    assert unmeasured["gradient", "W2", "verlet", "float32"] == "not measured: ocdl: out of memory"
    assert unmeasured["gradient", "W1", "verlet", "float64"] == "not measured: no record of this case"
    assert len(unmeasured) == 11
    found = {(e["target"], e["workload"], e["stepper"]): e for e in entries if e["dtype"] == "float32"}
    assert (found["gradient", "W1", "resnet"]["value"], found["gradient", "W1", "resnet"]["met"]) == (0.5, True)
    assert "aim" not in found["gradient", "W1", "resnet"]
    w3l = found["gradient", "W3L", "resnet"]
    assert (w3l["value"], w3l["met"], w3l["aim"], w3l["bound"]) == (pytest.approx(1.25), False, 0.5, 1.0)
    assert found["forward", "W3L", "resnet"]["value"] == pytest.approx(3.0)  # 0.3 s over 0.1 s: at the bound, met
    assert found["forward", "W3L", "resnet"]["met"] is True and found["forward", "W3L", "verlet"]["met"] is False
    speedup = found["cpu", "W3L", "resnet"]
    assert speedup["value"] == pytest.approx(0.25 * 100 / 1.0) and speedup["met"] is True  # 25 s on the CPU
    assert "W3, 500 examples x 100, 16 threads" in speedup["detail"]
    assert found["cpu", "W3L", "verlet"]["value"] is None  # no CPU record of Verlet
    assert [e["target"] for e in records[0]["targets"]] == ["gradient"]
    assert "targets" not in records[1] and "targets" not in records[2] and "targets" not in records[4]
    assert [e["target"] for e in records[6]["targets"]] == ["gradient", "forward", "cpu"]
    text = targets.format_targets(entries)
    assert "MISSED" in text and text.endswith("met: 3 of 5 measured; not measured: 11")
    path = tmp_path / "gpu.json"  # targets.py FILE: the entries stored in the records, and those not measured
    path.write_text(json.dumps(records))
    printed = targets.main([str(path)])
    assert sorted(map(str, printed)) == sorted(map(str, entries))


def test_convolution_methods_agree(tmp_path):
    """benchmarks/convolution.py --quick: every method (im2col, shifted matmuls, FFT, PyTorch when
    installed) gives Conv2d's product, which checks Conv2d against three independent algorithms."""
    printed, records = _run("convolution.py", "--quick", json_path=tmp_path / "conv.json")
    expected = {"ocdl", "im2col", "shifts", "fft"} | ({"torch"} if _torch_importable() else set())
    for dtype, tol in (("float64", 1e-13), ("float32", 1e-5)):
        found = {r["method"]: r for r in records if r["dtype"] == dtype}
        assert set(found) == expected
        for r in found.values():
            assert r["seconds"] > 0 and r["gflops"] > 0 and r["threads"] == 2
            assert r["max_rel_diff"] <= tol, r
    assert "/ ocdl" in printed  # the table was printed


def test_threads_benchmark_runs(tmp_path):
    """benchmarks/threads.py --quick: the hand-off's two row blocks together equal one product,
    and both threads of the GIL loop computed ``x * x``."""
    printed, records = _run("threads.py", "--quick", json_path=tmp_path / "threads.json")
    (hand,) = [r for r in records if r["measure"] == "handoff"]
    assert hand["max_rel_diff"] <= 1e-13 and hand["noop_us"] > 0
    assert 0 <= hand["timed_calls"] <= hand["calls"]
    if hand["timed_calls"]:
        assert 0 < hand["main_start_us"] and hand["overhead_us"] > 0
    gils = [r for r in records if r["measure"] == "gil"]
    assert len(gils) == 2
    for r in gils:
        assert r["exact"] and r["us_per_call_1"] > 0 and r["us_per_call_2"] > 0 and r["speedup"] > 0
    assert "speedup" in printed  # the table was printed


# benchmarks/run.py with the stand-in CuPy (tests/standin_cupy.py) as its GPU. A Verlet step on 16 examples
# (W3L in --quick) runs out of the stand-in's memory, as W3L's float64 Verlet may on a GPU; so does the float64
# ResNet's Gauss-Newton product there (a tangent sweep), as PyTorch's double backward of W3L's Verlet does on an
# H100; the fused float32 sweep of a dense ResNet (W1) fails as a kernel that does not compile on a device would.
STANDIN_GPU = """
import runpy, sys
sys.path.insert(0, {tests})
import standin_cupy
cupy = standin_cupy.install()
import ocdl
step = ocdl.Verlet.step
def step_out_of_memory(self, state, theta, h):
    if state[0].shape[0] == 16:
        raise cupy.cuda.memory.OutOfMemoryError(1 << 30, 15 << 30)
    return step(self, state, theta, h)
ocdl.Verlet.step = step_out_of_memory
jvp = ocdl.Network.jvp
def jvp_out_of_memory(self, theta, Y0, *args, **kwargs):
    if Y0.shape[0] == 16 and Y0.dtype == "float64" and isinstance(self.stepper, ocdl.ResNet):
        raise cupy.cuda.memory.OutOfMemoryError(1 << 31, 15 << 30)
    return jvp(self, theta, Y0, *args, **kwargs)
ocdl.Network.jvp = jvp_out_of_memory
resnet_sweep = ocdl.kernels.sweeps.resnet
def resnet_sweep_failing(layer, theta_steps, *args):
    if ocdl.kernels.fused_enabled() and theta_steps.dtype == "float32" and isinstance(layer.transform, ocdl.Dense):
        raise RuntimeError("stand-in: the kernel does not compile")
    return resnet_sweep(layer, theta_steps, *args)
ocdl.kernels.sweeps.resnet = resnet_sweep_failing
sys.argv = [{script}, *sys.argv[1:]]
runpy.run_path({script}, run_name="__main__")
""".replace("{tests}", repr(os.path.join(ROOT, "tests")))


def test_gradient_memory_counts_the_states_held(tmp_path):
    """``gradient_memory.py --quick``: a record per library, stepper and quantity, each above a lower bound
    counted from the networks, not from the script: ocdl's stored trajectory holds the N states (Verlet: two
    variables each); PyTorch's autograd saves each layer application's input and its tanh's output (2 states a
    ResNet step, 4 a Verlet step), and its Gauss-Newton product's graphs hold more than its gradient's."""
    printed, records = _run("gradient_memory.py", "--quick", json_path=tmp_path / "memory.json")
    libraries = ("ocdl", "torch") if _torch_importable() else ("ocdl",)
    if len(libraries) == 1:
        assert "PyTorch is not installed" in printed
    by_case = {(r["library"], r["stepper"], r["quantity"]): r for r in records}
    assert sorted(by_case) == [(lib, s, q) for lib in libraries for s in ("resnet", "verlet")
                               for q in ("gn_matvec", "gradient")]
    n_steps = _load("workloads").WORKLOADS["W3L"].n_steps
    for (library, stepper, _), rec in by_case.items():
        assert rec["state_bytes"] == 16 * 6 * 28 * 28 * 4 and rec["states"] == rec["peak_bytes"] / rec["state_bytes"]
        per_step = {"ocdl": 1, "torch": 2}[library] * (1 if stepper == "resnet" else 2)
        assert rec["states"] >= per_step * n_steps, rec
        assert rec["bytes_at_w3l"] == pytest.approx(rec["states"] * 50000 * 6 * 28 * 28 * 4)
    for stepper in ("resnet", "verlet") if "torch" in libraries else ():
        gn, gradient = (by_case["torch", stepper, q]["peak_bytes"] for q in ("gn_matvec", "gradient"))
        assert gn > gradient


@pytest.mark.parametrize("new_api", [True, False])
def test_tf32_switch_takes_the_api_pytorch_has(monkeypatch, new_api):
    """PyTorch 2.9 and later: ``fp32_precision`` alone (setting both kinds raises); before: ``allow_tf32``."""
    import types

    gpu = _load("gpu")

    class Backend(types.SimpleNamespace):
        def __setattr__(self, name, value):
            if name not in self.__dict__:
                raise AttributeError(f"PyTorch has no {name}")
            super().__setattr__(name, value)

    if new_api:
        matmul, conv = Backend(fp32_precision="none"), Backend(fp32_precision="none")
        cudnn = Backend(conv=conv)
    else:
        matmul, cudnn = Backend(allow_tf32=True), Backend(allow_tf32=True)
        conv = None
    fake = types.SimpleNamespace(backends=types.SimpleNamespace(cuda=types.SimpleNamespace(matmul=matmul), cudnn=cudnn))
    monkeypatch.setitem(sys.modules, "torch", fake)
    for enabled in (False, True):
        gpu.set_tf32(enabled)
        if new_api:
            assert matmul.fp32_precision == conv.fp32_precision == ("tf32" if enabled else "ieee")
            assert "allow_tf32" not in vars(matmul) and "allow_tf32" not in vars(cudnn)
        else:
            assert matmul.allow_tf32 is cudnn.allow_tf32 is enabled
        assert gpu.torch_tf32() == {"matmul": enabled, "conv": enabled}  # read back
    if new_api:  # PyTorch's default: products in IEEE float32, convolutions in TF32 (time_to_accuracy records it)
        matmul.fp32_precision, conv.fp32_precision = "ieee", "tf32"
    else:
        matmul.allow_tf32, cudnn.allow_tf32 = False, True
    assert gpu.torch_tf32() == {"matmul": False, "conv": True}


def test_gpu_mode_on_the_standin(tmp_path):
    """``run.py --device gpu`` on the stand-in device (PyTorch, when installed, on the CPU in its place):
    the records carry the device and the TF32 setting, ocdl is measured with its fused kernels and without (the
    two gradients agree), float32 has PyTorch with TF32 off and on, each case its bandwidth limit (counted here by
    hand), a case out of memory or failing otherwise is recorded, listed and skipped, a Gauss-Newton product out of
    memory leaves its case's other times, and the targets are stored and printed."""
    out, figure = tmp_path / "gpu.json", tmp_path / "gpu.png"
    printed, records = _run("run.py", "--device", "gpu", "--torch-device", "cpu", "--quick", "--workloads", "W1,W3L",
                            "--rounds", "2", "--plot", str(figure), json_path=out, wrapper=STANDIN_GPU)
    assert figure.read_bytes()[:4] == b"\x89PNG"
    workloads = _load("workloads")
    torch = _torch_importable()
    expected = {(w, s, d, lib, kernels) for w in ("W1", "W3L") for s in ("resnet", "verlet")
                for d in ("float64", "float32")
                for lib, kernels in [("ocdl", "fused"), ("ocdl", "plain")] + [("torch", None)] * torch
                + [("torch-tf32", None)] * (torch and d == "float32")}
    found = [(r["workload"], r["stepper"], r["dtype"], r["library"], r.get("kernels")) for r in records]
    assert sorted(found, key=str) == sorted(expected, key=str)  # each case once
    # arrays a fused sweep reads or writes per step: ResNet 2 / 5 / 6, Verlet (two half-steps) 6 / 14 / 16
    passes = {"resnet": (2, 5, 6), "verlet": (6, 14, 16)}
    for rec in records:
        device = rec["device"]
        assert device["gpu"] == "stand-in" and device["cupy"] == "stand-in"
        assert (device["driver_cuda"], device["cuda_runtime"]) == ("13.0", "13.0")
        assert device["copy_bandwidth_bytes_per_s"] > 0 and "driver" in device
        assert rec["tf32"] is (rec["library"] == "torch-tf32")
        wl = workloads.QUICK[rec["workload"]]
        assert rec["n_examples"] == wl.n_examples
        if rec["workload"] == "W3L" and rec["stepper"] == "verlet" and rec["library"] == "ocdl":
            assert rec["error"] == ("out of memory: Out of memory allocating 1,073,741,824 bytes "
                                    "(allocated so far: 16,106,127,360 bytes).")
            name = "ocdl" if rec["kernels"] == "fused" else "ocdl plain"
            assert f"failed: W3L verlet {rec['dtype']} {name}: out of memory" in printed
            continue
        if (rec["workload"], rec["stepper"], rec["dtype"], rec.get("kernels")) == ("W1", "resnet", "float32", "fused"):
            assert rec["error"] == "RuntimeError: stand-in: the kernel does not compile"  # the others ran
            assert "failed: W1 resnet float32 ocdl: RuntimeError: stand-in" in printed
            continue
        state_bytes = wl.n_examples * wl.n_features * (8 if rec["dtype"] == "float64" else 4)
        for key, count in zip(("roofline_s", "roofline_gradient_s", "roofline_gn_matvec_s"), passes[rec["stepper"]]):
            assert rec[key] == pytest.approx(wl.n_steps * count * state_bytes / device["copy_bandwidth_bytes_per_s"])
        gn_out_of_memory = (rec["workload"], rec["stepper"], rec["dtype"], rec["library"]) == (
            "W3L", "resnet", "float64", "ocdl")
        for key in ("forward_s", "gradient_s") + ("gn_matvec_s",) * (not gn_out_of_memory):
            assert rec[key] > 0 and all(r[key] > 0 for r in rec["rounds_s"])
        if gn_out_of_memory:  # the forward and the gradient were timed all the same
            assert rec["gn_matvec_s"] is None and rec["gn_method"] is None
            assert rec["gn_errors"] == {"jvp+vjp on a stored trajectory": (
                "out of memory: Out of memory allocating 2,147,483,648 bytes "
                "(allocated so far: 16,106,127,360 bytes).")}
            name = "ocdl" if rec["kernels"] == "fused" else "ocdl plain"
            assert f"failed: W3L resnet float64 {name}, Gauss-Newton product: jvp+vjp" in printed
        else:
            assert "gn_errors" not in rec
        if rec["library"] == "ocdl":  # W1's small dense layer sweeps in one kernel with the fused kernels
            assert rec["swept"] is (rec["workload"] == "W1" and rec["kernels"] == "fused"), rec
        if rec["library"] in ("torch", "ocdl") and rec["gradient_rel_diff"] is not None:
            assert rec["gradient_rel_diff"] <= (1e-10 if rec["dtype"] == "float64" else 1e-4), rec
        if rec.get("kernels") == "plain":  # the gradient without the fused kernels, against the one with them
            if (rec["workload"], rec["stepper"], rec["dtype"]) == ("W1", "resnet", "float32"):
                assert "kernels_rel_diff" not in rec, rec  # the fused one failed: nothing to compare with
                continue
            assert rec["kernels_rel_diff"] <= (1e-12 if rec["dtype"] == "float64" else 1e-5), rec
        # the targets, in the fused records: W3L's forward over its limit (and the gradient over PyTorch's)
        if rec.get("kernels") == "fused" and rec["workload"] == "W3L":
            by_name = {entry["target"]: entry for entry in rec["targets"]}
            assert by_name["forward"]["value"] == pytest.approx(rec["forward_s"] / rec["roofline_s"])
            assert by_name["cpu"]["value"] is None and by_name["cpu"]["met"] is None  # no --cpu-json
        else:
            assert not any(entry["target"] in ("forward", "cpu") for entry in rec.get("targets", ()))
    assert "roof: the memory-bandwidth limit of fused sweeps" in printed
    assert "W3L resnet float32 plain" in printed and "forward / bandwidth limit" in printed
    # --merge keeps the failed cases (both kernel settings) where no run measured them, and the times of the cases
    # whose Gauss-Newton product failed
    _, merged = _run("run.py", "--merge", str(out), str(out), json_path=tmp_path / "merged.json", timeout=60)
    assert sum("error" in r for r in merged) == sum("error" in r for r in records) == 5
    no_gn = [(r["forward_s"], r["gradient_s"]) for r in merged if "error" not in r and r["gn_matvec_s"] is None]
    assert sorted(no_gn) == sorted((r["forward_s"], r["gradient_s"]) for r in records
                                   if "error" not in r and r["gn_matvec_s"] is None) and len(no_gn) == 2


@pytest.mark.parametrize("measured_first", [True, False])
def test_rounds_and_runs_keep_a_product_measured_in_either(tmp_path, measured_first):
    """A PyTorch case whose double-backward product ran out of GPU memory in one round (or run) and was measured in
    the other: ``--rounds`` and ``--merge`` keep the least of each time, the product's time with its method and
    errors (the other method's failure, not the memory's), whichever came first."""
    run = _load("run")
    with open(os.path.join(BENCH, "results", "cpu.json")) as f:
        template = next(r for r in json.load(f) if r["library"] == "torch")
    failed_linearize = {"linearize": "TypeError: not in this PyTorch"}
    measured = dict(template, forward_s=1.0, gradient_s=2.0, gn_matvec_s=3.0, gn_method="double-backward",
                    gn_methods_s={"double-backward": 3.0}, gn_errors=failed_linearize)
    out_of_memory = dict(template, forward_s=0.5, gradient_s=2.5, gn_matvec_s=None, gn_method=None, gn_methods_s={},
                         gn_errors={"double-backward": "out of memory: ...", **failed_linearize})
    first, second = (measured, out_of_memory) if measured_first else (out_of_memory, measured)
    expected = dict(forward_s=0.5, gradient_s=2.0, gn_matvec_s=3.0, gn_method="double-backward",
                    gn_methods_s={"double-backward": 3.0}, gn_errors=failed_linearize)
    rounds = run._best_of(dict(json.loads(json.dumps(first)), rounds_s=[run._times(first)]), second)
    paths = []
    for k, rec in enumerate((first, second)):
        paths.append(str(tmp_path / f"run{k}.json"))
        with open(paths[-1], "w") as f:
            json.dump([rec], f)
    (merged,) = run.merge(paths)
    for best in (rounds, merged):
        assert {k: best[k] for k in expected} == expected
    assert rounds["rounds_s"] == [run._times(first), run._times(second)]


@pytest.fixture
def mnist_files(tmp_path):
    from test_experiments import fake_mnist

    return fake_mnist(tmp_path / "mnist", n_train=120)


def test_time_to_accuracy_runs_in_ci_size(tmp_path, mnist_files):
    """``time_to_accuracy.py --quick``: each method's validation accuracy against training seconds, the
    thresholds' times derived from the curve, the learning rate the sweep's best, and the figure."""
    figure = tmp_path / "tta.png"
    printed, record = _run("time_to_accuracy.py", "--quick", "--data-dir", str(mnist_files), "--plot", str(figure),
                           json_path=tmp_path / "tta.json")
    assert figure.read_bytes()[:4] == b"\x89PNG"
    methods = {"bcd", "adam"} | ({"torch"} if _torch_importable() else set())
    assert set(record["methods"]) == methods
    settings = record["settings"]
    assert settings["bcd"]["classifier_newton_steps"] == 5 and settings["bcd"]["max_iter"] == 20  # the paper's
    assert settings["adam"]["first_layers"] == settings["adam"]["max_layers"] == 4
    sweep = settings["sweep"]["val_accuracy"]
    assert set(sweep) == {"0.001", "0.01"} and sweep[f"{settings['learning_rate']:g}"] == max(sweep.values())
    for name, rec in record["methods"].items():
        times = [p["time_s"] for p in rec["curve"]]
        accuracies = [p["val_accuracy"] for p in rec["curve"]]
        assert times and all(a < b for a, b in zip([0] + times, times)), (name, times)
        assert all(0 <= a <= 1 for a in accuracies) and {p["n_layers"] for p in rec["curve"]} == {4}
        assert times[-2:-1] == [] or times[-2] < settings["budget_s"]  # stopped at the first point past the budget
        assert rec["best_val_accuracy"] == max(a for t, a in zip(times, accuracies) if t <= settings["budget_s"]
                                               or t == times[0])
        for threshold, key in ((0.98, "98%"), (0.985, "98.5%")):
            assert rec["time_to_s"][key] == next((t for t, a in zip(times, accuracies) if a >= threshold), None)
    if not _torch_importable():
        assert "skipping the PyTorch side" in printed


def test_time_to_accuracy_gives_pytorch_ocdls_network(mnist_files):
    """The PyTorch side trains the same network from the same initial weights: its output features equal
    those of ocdl's learning problem (float64, 1e-12) on the widened images."""
    torch = pytest.importorskip("torch")
    tta = _load("time_to_accuracy")
    torch_reference = _load("torch_reference")
    for stepper in ("resnet", "verlet"):
        args = tta.parse_args(["--quick", "--data-dir", str(mnist_files), "--dtype", "float64", "--stepper", stepper])
        exp = tta.Experiment(args)
        problem, _, theta0 = exp.finest_problem()
        Y = exp.arrays()[0][:10]
        ours = problem.features(theta0, Y0=Y)
        workloads = _load("workloads")
        wl = workloads.Workload("MNIST", "", n_examples=10, channels=6, height=28, image_width=28, n_steps=4,
                                final_time=6.0)
        theirs = torch_reference.TorchNetwork(wl, stepper, theta0)(torch.from_numpy(Y)).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def _script(name: str, env: dict, timeout: int = 240) -> str:
    """Run ``bash benchmarks/<name>`` with ``env`` added, as the device tool may start it: from a shell without
    job control, SIGINT ignored. Its exit status must be 0; returns what it printed."""
    proc = subprocess.run(["bash", os.path.join(BENCH, name)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_scripts_quick_mode_stops_table1_at_its_limit_and_resumes_it(tmp_path, mnist_files):
    """``gpu_session.sh`` and ``gpu_table1.sh`` with ``GPU_SESSION_QUICK=1``, on the stand-in for CuPy: every stage
    runs; Table 1's run is stopped by its time limit with a checkpoint of its last iteration, comes back in
    ``table1.tar.gz``, and the second script, on a "fresh machine" that has only that archive, continues it
    (--resume) to the end, then runs time to accuracy."""
    from ocdl.solvers.checkpoint import load_checkpoint

    out, runs = tmp_path / "out", tmp_path / "runs" / "table1"
    env = {key: value for key, value in os.environ.items() if key != "OCDL_STANDIN_CUPY"}
    env.update(GPU_SESSION_QUICK="1", OUT=str(out), PYTHON=sys.executable, GPU_MNIST_SOURCE=str(mnist_files),
               GPU_MNIST_DIR=str(tmp_path / "mnist"), GPU_RUNS=str(runs), GPU_BENCH_WORKLOADS="W3L:float32",
               GPU_TESTS="tests/test_gpu.py::test_gpu_matches_cpu", GPU_TABLE1_LIMIT="4",
               GPU_TABLE1_ARCHIVE=str(tmp_path / "none.tar.gz"))
    printed = _script("gpu_session.sh", env)
    assert (out / "session.log").read_text() == printed
    for line in ("tests: 0 (", "benchmark: CPU reference: 0 (", "benchmark: GPU: 0 (",
                 "benchmark: GPU, W3L float64 ResNet: 0 (", "benchmark: table and targets of all measured: 0 (",
                 "table1 resnet: 124 ("):
        assert line in printed, line
    records = json.loads((out / "gpu.json").read_text())  # both benchmark stages, merged
    assert {(r["workload"], r["stepper"], r["dtype"], r.get("kernels")) for r in records if r["library"] == "ocdl"} \
        == {("W3L", st, "float32", k) for st in ("resnet", "verlet") for k in ("fused", "plain")} | {
            ("W3L", "resnet", "float64", "fused")}
    assert all(r["gn_matvec_s"] is None and not r.get("gn_errors") for r in records)  # --no-gn
    assert "not measured: no record of this case" in printed  # W1 and W2's targets, listed all the same
    for rec in records:  # the CPU reference (float32) gives the speed-up target its value
        if rec["workload"] == "W3L" and rec.get("kernels") == "fused" and rec["dtype"] == "float32":
            (speedup,) = [entry for entry in rec["targets"] if entry["target"] == "cpu"]
            assert speedup["value"] > 0 and "CPU: W3" in speedup["detail"]
    with tarfile.open(out / "table1.tar.gz") as packed:
        names = packed.getnames()
    assert "table1/resnet/checkpoint.h5" in names and "table1/resnet/results.json" not in names
    stopped = load_checkpoint(runs / "resnet" / "checkpoint.h5")
    assert not stopped.finished
    assert "resnet: unfinished (continue with --resume): level " in printed
    assert printed.rindex("targets (issue 24)") > printed.index("table1 resnet: exit status 124")  # repeated at the end

    # the next call on a fresh machine: the run folders from the archive that came back
    shutil.rmtree(runs)
    archive = shutil.copy(out / "table1.tar.gz", tmp_path / "table1.tar.gz")
    env.pop("GPU_TABLE1_LIMIT")
    printed = _script("gpu_table1.sh", dict(env, GPU_TABLE1_STEPPERS="resnet", GPU_TABLE1_ARCHIVE=str(archive)))
    assert (out / "table1.log").read_text() == printed
    assert f"table1: {runs} unpacked from {archive}" in printed
    assert "table1 resnet, resumed: 0 (" in printed and "time to accuracy: 0 (" in printed
    summary = json.loads((runs / "resnet" / "results.json").read_text())
    assert [level["iterations"] for level in summary["levels"]] == [25, 25]  # the whole run: 2 levels of 25
    assert stopped.iteration + 25 * stopped.level < 50  # of which the first call had done less
    assert "resnet: finished: validation error" in printed and "| ResNet | " in printed
    assert set(json.loads((out / "tta_gpu.json").read_text())["methods"]) >= {"bcd", "adam"}


# A stand-in for `python benchmarks/launch.py -m ocdl train ...`: fails at once with the fused kernels (as a kernel
# that does not compile on a device would), else writes the run's results.json; logs each call's setting.
FAKE_TRAIN = """
import json, os, sys
args = sys.argv[1:]
run = args[args.index("--out") + 1] if "--out" in args else args[args.index("--resume") + 1]
fused = os.environ.get("OCDL_FUSED_KERNELS", "1") != "0"
os.makedirs(run, exist_ok=True)
with open(os.path.join(os.path.dirname(run), "calls.log"), "a") as log:
    log.write(("fused " if fused else "plain ") + ("resume" if "--resume" in args else "start") + "\\n")
if fused:
    open(os.path.join(run, "checkpoint.h5"), "w").close()  # the run's first iterations, then the kernel fails
    sys.exit("CompileException: stand-in")
json.dump({"finished": True}, open(os.path.join(run, "results.json"), "w"))
"""


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_table1_run_that_fails_with_the_fused_kernels_continues_on_the_plain_path(tmp_path):
    """gpu_lib.sh's table1: a run that fails with the fused kernels (not at its time limit) is continued with
    OCDL_FUSED_KERNELS=0, and so are the script's later runs; one that fails on the plain path is not retried."""
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    runs = tmp_path / "runs"
    script = f"""
        BUDGET=300 GPU_RUNS={runs} OUT={tmp_path / "out"}
        source {os.path.join(BENCH, "gpu_lib.sh")}
        LAUNCH=({sys.executable} {fake})
        table1 resnet 100; echo "resnet: $?"
        table1 verlet 100; echo "verlet: $?"
        TRAIN_ENV=(env OCDL_FUSED_KERNELS=1)  # failing on the path named: no second try
        table1 antisymmetric 100; echo "antisymmetric: $?"
    """
    env = {key: value for key, value in os.environ.items() if key not in ("GPU_SESSION_QUICK", "GPU_RUNS")}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert "resnet: 0" in proc.stdout and "verlet: 0" in proc.stdout, proc.stdout + proc.stderr
    assert "antisymmetric: 1" in proc.stdout, proc.stdout
    assert "table1 resnet: failed with the fused kernels (exit status 1); continued on the plain path" in proc.stdout
    assert (runs / "calls.log").read_text().split("\n")[:-1] == [
        "fused start", "plain resume", "plain start", "fused start"]
    assert (runs / "resnet" / "results.json").exists() and (runs / "verlet" / "results.json").exists()
    assert not (runs / "antisymmetric" / "results.json").exists()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_cpu_table1_stops_at_its_limit_and_resumes_from_its_archive(tmp_path, mnist_files):
    """``cpu_table1.sh`` with ``GPU_SESSION_QUICK=1``: Table 1's run on the CPU is stopped by its time limit with a
    checkpoint of its last iteration packed into the archive; on a "fresh clone" that has only the archive the next
    call continues it (--resume, --device cpu) to the end and packs the finished run back."""
    from ocdl.solvers.checkpoint import load_checkpoint

    runs, archive = tmp_path / "runs" / "table1-cpu", tmp_path / "table1_cpu.tar.gz"
    env = dict(os.environ, GPU_SESSION_QUICK="1", OUT=str(tmp_path / "out"), PYTHON=sys.executable,
               GPU_MNIST_SOURCE=str(mnist_files), CPU_RUNS=str(runs), CPU_TABLE1_ARCHIVE=str(archive),
               GPU_TABLE1_STEPPERS="resnet", GPU_TABLE1_QUICK_ITERATIONS="200")  # on NumPy 25 end within 4 s

    printed = _script("cpu_table1.sh", dict(env, GPU_TABLE1_LIMIT="4"))
    assert "--device cpu" in printed and "table1 resnet: 124 (" in printed
    stopped = load_checkpoint(runs / "resnet" / "checkpoint.h5")
    assert not stopped.finished and stopped.settings["device"] == "cpu"
    with tarfile.open(archive) as packed:
        assert "table1-cpu/resnet/checkpoint.h5" in packed.getnames()

    shutil.rmtree(runs)
    printed = _script("cpu_table1.sh", env)
    assert f"table1: {runs} unpacked from {archive}" in printed and "table1 resnet, resumed: 0 (" in printed
    summary = json.loads((runs / "resnet" / "results.json").read_text())
    # both levels to their end: 200 iterations, or fewer where the line search stalls (float32 on 16 images)
    assert [level["n_layers"] for level in summary["levels"]] == [4, 8]
    assert load_checkpoint(runs / "resnet" / "checkpoint.h5").finished
    assert all(level["iterations"] <= 200 for level in summary["levels"])
    assert stopped.iteration + 200 * stopped.level < sum(level["iterations"] for level in summary["levels"])
    assert "| ResNet | " in printed
    with tarfile.open(archive) as packed:
        assert "table1-cpu/resnet/results.json" in packed.getnames()


def _table1_row(page: str, stepper: str) -> list[str]:
    """The cells of the Table 1 row of ``stepper`` on ``page`` (README.md, docs/experiments.md).

    Its name (``table1.STEPPERS``) first, the paper's error (``table1.PAPER_VAL_ERROR``) fourth; the first
    such row, as the table at the paper's settings comes before the older six-iteration one.
    """
    table1 = _load("table1")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
        if line.startswith(f"| {table1.STEPPERS[stepper]} |")
    ]
    paper = f"{table1.PAPER_VAL_ERROR[stepper]:.2f}%"
    rows = [cells for cells in rows if len(cells) == 6 and cells[3] == paper]
    assert rows, f"{page}: no Table 1 row for {stepper}"
    return rows[0]


@pytest.mark.parametrize("page", ["README.md", "docs/experiments.md"])
@pytest.mark.parametrize("stepper", ["antisymmetric", "resnet", "verlet"])
def test_table1_row_matches_its_results_json(page, stepper):
    """The README's and the documentation's Table 1 rows say what the committed runs measured: each row is
    recomputed from its ``results.json`` in ``benchmarks/results/table1_cpu/``, straight from the JSON fields
    (not through ``table1.py``'s formatting, which wrote the rows): the best validation error of each level, the
    training error at the finest level and the wall time must all appear in it, so a row edited by hand or left
    from an older run fails."""
    with open(os.path.join(BENCH, "results", "table1_cpu", f"{stepper}.json")) as f:
        record = json.load(f)
    levels = record["levels"]
    assert [level["n_layers"] for level in levels] == [4, 8, 16]
    cells = _table1_row(page, stepper)
    errors = re.findall(r"(\d+\.\d\d)%", cells[1])
    assert errors == [f"{100 * (1 - level['best_val_accuracy']):.2f}" for level in levels], cells[1]
    assert f"{100 * (1 - levels[-1]['train_accuracy']):.2f}%" in cells[2]
    assert f"{record['time_s']:.0f} s" in cells[4]


@pytest.mark.parametrize(("page", "labels"), [
    ("README.md", {"bcd": "| ocdl multilevel Gauss-Newton BCD", "adam": "| ocdl Adam", "torch": "| PyTorch Adam"}),
    ("docs/benchmarks.md", {"bcd": "| ocdl Gauss-Newton BCD (every", "adam": "| ocdl Adam", "torch": "| PyTorch Adam"}),
])
def test_time_to_accuracy_rows_match_the_committed_run(page, labels):
    """The full-size CPU time-to-accuracy rows say what ``time_to_accuracy_cpu_full.json`` measured: each method's
    seconds to 98% and 98.5% (rounded, or "not reached") and its best accuracy, recomputed from the JSON fields."""
    with open(os.path.join(BENCH, "results", "time_to_accuracy_cpu_full.json")) as f:
        methods = json.load(f)["methods"]
    lines = open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
    for method, label in labels.items():
        row = [line for line in lines if line.startswith(label) and "%" in line][-1]  # after the CPU subset's
        record = methods[method]
        for key in ("98%", "98.5%"):
            t = record["time_to_s"][key]
            assert ("not reached" if t is None else f"{t:.0f}") in row, (method, key, row)
        assert f"{100 * record['best_val_accuracy']:.2f}%" in row, (method, row)
