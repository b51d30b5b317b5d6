"""Benchmarks of ocdl side by side with PyTorch (project issue 6).

Usage::

    python benchmarks/run.py                      # all workloads, float64 and float32
    python benchmarks/run.py --json results.json  # also write the records
    python benchmarks/run.py --merge a.json b.json --plot fig.png  # the best of two runs, drawn
    python benchmarks/run.py --workloads W1,W3 --dtypes float32 --repeats 7
    python benchmarks/run.py --quick              # tiny sizes: a smoke run of a few seconds
    python benchmarks/run.py --device gpu --json gpu.json   # CuPy and PyTorch CUDA, W1-W3 and W3L
    python benchmarks/run.py --device gpu --workloads W3L:float32,W3 --time-limit 180 --json gpu.json

For every workload (see ``workloads.py``), stepper and dtype it times, best of
``--repeats`` runs after ``--warmup`` runs: the forward propagation, the
gradient of ``0.5 ||Y_N||^2`` (forward + adjoint) and one Gauss-Newton product
``J^T J v`` over stored states, in ocdl and (when it imports) in PyTorch, and
a roofline estimate measured on this machine (``roofline.py``). The BLAS and
OpenMP thread counts are set from ``--threads`` before NumPy is imported.

With ``--device gpu`` (``gpu.py``) ocdl runs on CuPy and PyTorch on CUDA, in
float32 twice (TF32 off: ``torch``; on: ``torch-tf32``); the limit of each
case is the memory bandwidth of a fused sweep instead of the CPU roofline,
and the records carry ``device`` (GPU, driver, CUDA, CuPy) and ``tf32``. A
case that runs out of GPU memory, or fails otherwise (a kernel that does not compile there), is
recorded with its ``error`` and skipped; the others run. A Gauss-Newton product alone out of GPU
memory keeps its case's other times (``gn_matvec_s`` is ``None``, ``gn_errors`` says why).
ocdl runs once per setting of its fused GPU kernels (``--kernels``; on the
GPU both, ``fused`` and ``plain``, by default), each record saying which
(``kernels``), and the issue's targets are printed below the table and
stored in the fused records (``targets.py``; the speed-up over the CPU
needs ``--cpu-json``). The JSON file is rewritten after every case, so a
run stopped early keeps what it measured; ``--time-limit`` ends a run in
time by starting no case after it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the benchmarks import each other by plain name

from common import library_name  # noqa: E402 - no NumPy import: the thread limits come first


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="FILE", help="write the list of records to FILE")
    p.add_argument("--plot", metavar="FILE", help="draw the times as multiples of the roofline into FILE (figure.py)")
    p.add_argument(
        "--workloads",
        help="comma-separated (default W1,W2,W3; with --device gpu W1,W2,W3,W3L); NAME:DTYPE measures NAME in "
        "that dtype only (W3L:float32)",
    )
    p.add_argument(
        "--device", default="cpu", choices=("cpu", "gpu"),
        help="cpu (default): NumPy and PyTorch on the CPU; gpu: ocdl on CuPy and PyTorch on CUDA, TF32 off and "
        "(float32) on, each case's limit the memory bandwidth of fused sweeps (gpu.py)",
    )
    p.add_argument("--torch-device", help="PyTorch's device (default: cuda with --device gpu, else cpu)")
    p.add_argument("--steppers", default="resnet,verlet", help="comma-separated (default resnet,verlet)")
    p.add_argument("--dtypes", default="float64,float32", help="comma-separated (default float64,float32)")
    p.add_argument("--libraries", default="ocdl,torch", help="comma-separated (default ocdl,torch)")
    p.add_argument(
        "--kernels",
        help="ocdl's kernels, comma-separated: fused (ocdl.kernels.fused(True)), plain (False); ocdl is measured "
        "once per setting (default fused,plain with --device gpu, else fused)",
    )
    p.add_argument(
        "--time-limit", type=float, metavar="S",
        help="start no case (workload, dtype, stepper) after S seconds; those left are listed as not measured",
    )
    p.add_argument(
        "--cpu-json", metavar="FILE",
        help="with --device gpu or --merge of GPU records: records of run.py --device cpu on the same machine "
        "(all cores), for the target GPU / CPU (targets.py)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed runs, best reported (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument(
        "--rounds", type=int, default=1,
        help="measure each case this many times, the libraries taking turns, and keep each library's best "
        "(default 1; on a shared machine 2 or more give both libraries the same quiet moments)",
    )
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP/torch threads (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny workloads: a smoke run")
    p.add_argument(
        "--omp-wait-policy", default="unset", choices=("unset", "passive", "active"),
        help="OMP_WAIT_POLICY for PyTorch's OpenMP threads (default: PyTorch's own). On a machine shared with "
        "other jobs use 'passive': spinning threads then make PyTorch up to 10x slower; on a quiet machine "
        "'passive' costs PyTorch up to 2x on W1 (a sleeping thread wakes for each of its many small products)",
    )
    p.add_argument("--no-roofline", action="store_true", help="skip the roofline measurements")
    p.add_argument(
        "--no-gn", action="store_true",
        help="skip the Gauss-Newton products (gn_matvec_s null): about half of a case's time, and no target needs "
        "them (the GPU session's choice)",
    )
    p.add_argument(
        "--merge", nargs="+", metavar="JSON",
        help="measure nothing: combine earlier --json files (best time of each entry; on a shared machine "
        "runs at different times catch different quiet moments) and print the table",
    )
    p.add_argument(
        "--torch-gn", default="auto", choices=("auto", "best", "double-backward", "func"),
        help="PyTorch Gauss-Newton method: the faster of both ('best'), one of them, or 'auto' (default): "
        "'best' for networks of at most 64 steps, else 'double-backward' (tracing torch.func.linearize "
        "through 1,024 steps takes over a minute and ~9 GB); 'double-backward' with --quick",
    )
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.torch_gn == "auto" and args.quick:
        args.torch_gn = "double-backward"
    if args.workloads is None:
        args.workloads = "W1,W2,W3,W3L" if args.device == "gpu" else "W1,W2,W3"
    if args.torch_device is None:
        args.torch_device = "cuda" if args.device == "gpu" else "cpu"
    if args.kernels is None:
        args.kernels = "fused,plain" if args.device == "gpu" else "fused"
    args.kernels = _split(args.kernels)
    if not args.kernels or len(set(args.kernels)) != len(args.kernels) or set(args.kernels) - set(KERNELS):
        p.error(f"--kernels must be a comma-separated list of distinct {', '.join(KERNELS)}; got {args.kernels}")
    return args


KERNELS = ("fused", "plain")
"""The settings of ocdl's one kernel switch (``ocdl.kernels.fused``) that ``--kernels`` chooses from."""


def kernel_setting(kernels: str | None):
    """A context manager that runs ocdl with its fused GPU kernels on (``"fused"``) or off (``"plain"``);
    ``None`` (PyTorch's cases) changes nothing."""
    if kernels is None:
        return contextlib.nullcontext()
    from ocdl import kernels as switch

    return switch.fused(kernels == "fused")


def _parse_workloads(text: str, table: dict, dtypes: list) -> list[tuple]:
    """``(workload, dtypes)`` for each entry of ``--workloads``: ``NAME`` in every dtype, ``NAME:DTYPE`` in one."""
    import numpy as np

    found = []
    for entry in _split(text):
        name, _, dtype = entry.partition(":")
        if name not in table:
            raise SystemExit(f"unknown workload {name!r} in --workloads; choose from {sorted(table)}")
        try:
            found.append((table[name], [np.dtype(dtype)] if dtype else dtypes))
        except TypeError:
            raise SystemExit(f"--workloads {entry}: {dtype!r} is not a dtype (float64, float32)") from None
    return found


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json, args.plot, args.cpu_json)
    start = time.perf_counter()
    from common import limit_threads  # no NumPy import yet

    thread_setup = limit_threads(args.threads)
    if args.omp_wait_policy != "unset":
        os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy.upper())
    thread_setup["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY")

    import numpy as np  # noqa: E402 - after the thread limits
    import roofline
    import torch_reference
    import workloads
    from common import machine_info, versions

    on_gpu = args.device == "gpu"
    if on_gpu:
        import gpu

        from ocdl.backend import cupy_available

        if not cupy_available():
            raise SystemExit("--device gpu needs CuPy and a CUDA device")
    table = workloads.QUICK if args.quick else workloads.WORKLOADS
    cases = _parse_workloads(args.workloads, table, [np.dtype(d) for d in _split(args.dtypes)])
    steppers = _split(args.steppers)
    libraries = _split(args.libraries)
    if set(libraries) - {"ocdl", "torch"}:
        raise SystemExit(f"--libraries must be a comma-separated list of ocdl, torch; got {args.libraries!r}")

    have_torch = "torch" in libraries and torch_reference.available(args.torch_device)
    if "torch" in libraries and not have_torch:
        print(f"PyTorch is not installed or has no device {args.torch_device!r}: skipping the PyTorch side "
              "(pip install torch to compare).")
    if have_torch:
        import torch

        torch.set_num_threads(args.threads)
    # what is measured per case: (library, kernels), ocdl once per kernel setting; PyTorch's added per dtype
    variants = [("ocdl", kernels) for kernels in args.kernels] if "ocdl" in libraries else []

    machine = machine_info()
    machine["thread_setup"] = thread_setup
    vers = versions(("ocdl", "numpy", "scipy") + (("cupy",) if on_gpu else ()) + (("torch",) if have_torch else ()))
    print(f"# {machine['cpu']}, {machine['logical_cpus']} logical CPUs, {args.threads} threads, "
          f"load {machine['load_average']}; " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    device = None
    if on_gpu:
        device = gpu.device_info(args.torch_device if have_torch else None)
        device["copy_bandwidth_bytes_per_s"] = gpu.copy_bandwidth(1 << 20 if args.quick else 1 << 30)
        print("# " + ", ".join(f"{k} {v}" for k, v in device.items()), flush=True)

    records, left_out = [], []
    for wl, dtypes in cases:
        print(f"# {wl.describe()}", flush=True)
        for dtype in dtypes:
            rates = None
            if not on_gpu and not args.no_roofline:
                rates = roofline.measure_rates(wl, dtype, max(3, args.repeats), args.threads)
                if have_torch:
                    time.sleep(0.5)  # OpenBLAS's threads spin for a while after NumPy's calls: let them sleep first
                    rates["torch_gemm_flops_per_s"] = torch_reference.gemm_rates(wl, dtype, max(3, args.repeats))
                print(_gemm_line(dtype.name, rates), flush=True)
            case_variants = list(variants)
            if have_torch and on_gpu:  # TF32 off, and on where it applies (float32)
                case_variants += [(lib, None) for lib, tf32 in gpu.TORCH_TF32.items()
                                  if not tf32 or dtype == np.float32]
            elif have_torch:
                case_variants.append(("torch", None))
            for stepper in steppers:
                if args.time_limit is not None and time.perf_counter() - start > args.time_limit:
                    left_out.append(f"{wl.name} {stepper} {dtype.name}")
                    continue
                if on_gpu:
                    roof = gpu.bandwidth_limit(wl, stepper, dtype, device["copy_bandwidth_bytes_per_s"])
                else:
                    roof = roofline.estimate(wl, stepper, dtype, rates) if rates else None
                best, gradients, errors = {}, {}, {}
                for _ in range(max(1, args.rounds)):  # the libraries take turns
                    for variant in case_variants:
                        if variant in errors:
                            continue
                        lib, kernels = variant
                        try:
                            with kernel_setting(kernels):
                                rec = _measure(lib, wl, stepper, dtype, args)
                        except Exception as err:
                            if not on_gpu:
                                raise
                            errors[variant] = _failure(err)
                            print(f"{wl.name} {stepper} {dtype.name} {library_name(lib, kernels)}: {errors[variant]}",
                                  flush=True)
                            continue
                        finally:
                            if on_gpu:
                                gpu.release()
                        gradients.setdefault(variant, rec.pop("gradient"))
                        best[variant] = (_best_of(best[variant], rec) if variant in best
                                         else dict(rec, rounds_s=[_times(rec)]))
                agreement = _agreement(gradients, dtype)
                for variant in case_variants:
                    lib, kernels = variant
                    common = dict(threads=args.threads, repeats=args.repeats, rounds=max(1, args.rounds),
                                  n_examples=wl.n_examples, versions=vers, machine=machine)
                    if kernels is not None:
                        common["kernels"] = kernels
                    if on_gpu:
                        common.update(device=device, tf32=gpu.TORCH_TF32.get(lib, gpu.cupy_tf32()))
                    if variant in errors:
                        records.append(dict(workload=wl.name, stepper=stepper, dtype=dtype.name, library=lib,
                                            error=errors[variant], **common))
                        continue
                    rec = best[variant]
                    rec.update(
                        roofline_s=roof["forward"]["total_s"] if roof else None,
                        roofline_gradient_s=roof["gradient"]["total_s"] if roof else None,
                        roofline_gn_matvec_s=roof["gn_matvec"]["total_s"] if roof else None,
                        roofline=roof,
                        rates=rates,
                        **agreement.get(variant, {"gradient_rel_diff": None}),
                        **common,
                    )
                    records.append(rec)
                    print(_row(rec), flush=True)
                gc.collect()
                if args.json:  # what was measured so far survives a run stopped early
                    from ocdl.io import write_text

                    write_text(args.json, json.dumps(records, indent=1, default=float))
    print()
    print(format_table(records))
    if left_out:
        print(f"not measured (--time-limit {args.time_limit:g} s): " + "; ".join(left_out))
    _finish(records, args.json, args.plot, args.cpu_json)
    return records


def _finish(records: list[dict], json_path: str | None, plot_path: str | None, cpu_json: str | None) -> None:
    """The targets of GPU records (printed, and stored in the fused records), then the records written and drawn."""
    if any("device" in r for r in records):
        import targets

        cpu_records = None
        if cpu_json:
            with open(cpu_json) as f:
                cpu_records = json.load(f)
        print()
        print(targets.format_targets(targets.attach(records, cpu_records)))
    _write(records, json_path, plot_path)


def _write(records: list[dict], json_path: str | None, plot_path: str | None) -> None:
    """The records to ``json_path`` and their figure to ``plot_path``, where given."""
    if json_path:
        from common import write_records

        print()
        write_records(records, json_path)
    if plot_path:
        from figure import plot_records

        plot_records(records, plot_path)
        print(f"drew {plot_path}")


TIMES = ("forward_s", "gradient_s", "gn_matvec_s")
ROOFLINES = ("roofline_s", "roofline_gradient_s", "roofline_gn_matvec_s")


def _failure(err: Exception) -> str:
    """A GPU case's failure as one line for its record: out of memory, or (a kernel that does not compile or
    launch on this device, a peer's API that differs) the exception, its traceback on stderr. The run goes on
    with the other cases: a GPU session's few minutes measure what they can."""
    import gpu

    if gpu.is_out_of_memory(err):
        return f"out of memory: {' '.join(str(err).split())}"
    traceback.print_exception(type(err), err, err.__traceback__)
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


def _times(rec: dict) -> dict:
    return {k: rec[k] for k in TIMES}


def _least(a: float | None, b: float | None) -> float | None:
    """The smaller of two times, ``None`` (not measured: out of GPU memory) where neither was measured."""
    return min((t for t in (a, b) if t is not None), default=None)


def _combine(best: dict, rec: dict) -> None:
    """Take into ``best`` the least of each of its times and ``rec``'s (another round or run of the same case), and
    each method's least Gauss-Newton time (``gn_methods_s``). ``gn_method`` and ``gn_errors`` come with the product
    time kept: a product out of memory in one round and measured in another is recorded as measured."""
    if rec["gn_matvec_s"] is not None and (best["gn_matvec_s"] is None or rec["gn_matvec_s"] < best["gn_matvec_s"]):
        best.pop("gn_errors", None)
        best.update((k, rec[k]) for k in ("gn_method", "gn_errors") if k in rec)
    for k in TIMES:
        best[k] = _least(best[k], rec[k])
    for name, t in rec.get("gn_methods_s", {}).items():
        best["gn_methods_s"][name] = min(best["gn_methods_s"].get(name, t), t)


def _best_of(best: dict, rec: dict) -> dict:
    """``best`` combined with ``rec``, another round of the same case (:func:`_combine`)."""
    best["rounds_s"].append(_times(rec))
    _combine(best, rec)
    return best


def merge(paths: list[str], out: str | None = None, plot: str | None = None, cpu_json: str | None = None) -> list[dict]:
    """Records of several runs combined: per case, library and kernel setting the best of each time.

    The roofline entries are the smallest estimates (the best measured
    rates); ``merged_from`` lists each run's file, load average and times.
    GPU records get their targets anew (``cpu_json`` as in ``--cpu-json``).
    """
    combined: dict = {}
    failed: dict = {}  # cases that failed (out of GPU memory), kept where no run measured them
    for path in paths:
        with open(path) as f:
            for rec in json.load(f):
                key = (rec["workload"], rec["stepper"], rec["dtype"], rec["library"], rec.get("kernels"))
                if "error" in rec:
                    failed.setdefault(key, rec)
                    continue
                run = {"file": path, "load_average": rec["machine"].get("load_average")}
                run.update({k: rec.get(k) for k in TIMES})
                if key not in combined:
                    combined[key] = dict(rec, merged_from=[run])
                    continue
                best = combined[key]
                best["merged_from"].append(run)
                _combine(best, rec)
                if rec.get("roofline_s") is not None and (
                    best.get("roofline_s") is None or rec["roofline_s"] < best["roofline_s"]
                ):
                    for k in ROOFLINES + ("roofline", "rates"):
                        best[k] = rec.get(k)
    records = list(combined.values()) + [rec for key, rec in failed.items() if key not in combined]
    print(f"# best of {len(paths)} runs: " + ", ".join(paths))
    print(format_table(records))
    _finish(records, out, plot, cpu_json)
    return records


def _agreement(gradients: dict, dtype) -> dict:
    """Relative differences of the gradients of one case, by variant ``(library, kernels)``: the fields of its record.

    ``gradient_rel_diff``: ``||g_ocdl - g_torch|| / ||g_torch||``, for each
    ocdl variant against PyTorch (TF32 off), for each PyTorch variant against
    the first ocdl variant. ``kernels_rel_diff`` (the ocdl variants after the
    first, e.g. ``plain``): against the first (``fused``). The timings compare
    like with like only if all compute the same gradient: a difference above
    :func:`ocdl.checks.default_tol` of the dtype (``1e-10`` in float64) is
    printed as a warning, except for ``torch-tf32``, whose float32 products
    round to TF32 on purpose.
    """
    from ocdl.checks import agreement, default_tol

    ours = [variant for variant in gradients if variant[0] == "ocdl"]
    if not ours:
        return {}

    def rel_diff(a, b, what: str, warn: bool = True) -> float:
        result = agreement(gradients[a], gradients[b], default_tol(dtype))
        if warn and not result.passed:
            print(f"WARNING: {what} differ by {result.rel_error:.2e} (relative)", flush=True)
        return result.rel_error

    reference, torch = ours[0], ("torch", None)
    found = {}
    for variant in gradients:
        lib, kernels = variant
        if lib != "ocdl":
            found[variant] = {"gradient_rel_diff": rel_diff(reference, variant, f"ocdl's and {lib}'s gradients",
                                                            warn=lib != "torch-tf32")}
            continue
        found[variant] = {"gradient_rel_diff": rel_diff(variant, torch, f"ocdl ({kernels})'s and torch's gradients",
                                                        warn=variant != reference)
                          if torch in gradients else None}
        if variant != reference:
            found[variant]["kernels_rel_diff"] = rel_diff(
                variant, reference, f"ocdl's gradients with {kernels} and {reference[1]} kernels")
    return found


def _measure(lib, wl, stepper, dtype, args) -> dict:
    """One case of one library: its times, its Gauss-Newton method and its gradient (on the host)."""
    import numpy as np
    import torch_reference
    import workloads
    from common import best_time

    rec = {"workload": wl.name, "stepper": stepper, "dtype": dtype.name, "library": lib}
    synchronize = None
    if args.device == "gpu":
        import gpu

        def synchronize():
            gpu.synchronize(args.torch_device)

    def timed(fn):
        return best_time(fn, args.repeats, args.warmup, synchronize)

    if lib == "ocdl":
        fns = workloads.ocdl_callables(wl, stepper, dtype, device=args.device)
        setups = {} if args.no_gn else {"jvp+vjp on a stored trajectory": fns["gn_setup"]}
        rec["swept"] = fns["swept"]  # each sweep one kernel (ocdl.kernels.sweeps) or step by step
    else:
        if args.device == "gpu":
            gpu.set_tf32(gpu.TORCH_TF32[lib])
            if set(gpu.torch_tf32().values()) != {gpu.TORCH_TF32[lib]}:  # the record's tf32 is what PyTorch reports
                raise RuntimeError(f"PyTorch's TF32 for {lib}: {gpu.torch_tf32()}, not all {gpu.TORCH_TF32[lib]}")
        gn_methods = args.torch_gn
        if gn_methods == "auto":
            gn_methods = "best" if wl.n_steps <= 64 else "double-backward"
        fns = torch_reference.torch_callables(wl, stepper, dtype, threads=args.threads, gn_methods=gn_methods,
                                              device=args.torch_device)
        setups = {} if args.no_gn else fns["gn_setups"]
    t = {"forward_s": timed(fns["forward"]), "gradient_s": timed(fns["gradient"])}
    rec["gradient"] = np.asarray(fns["gradient_value"](), dtype=np.float64)  # compared, not stored
    methods, errors = {}, {}
    for name, setup in setups.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.fx warnings from torch.func.linearize
                methods[name] = timed(setup())
        except Exception as exc:
            # torch.func differs between versions: keep the other method. A product whose graphs do not fit the
            # GPU keeps the case's other times (PyTorch's double backward of W3L's Verlet holds about 140 states,
            # 130 GB, more than an H100 has): gn_matvec_s is None and gn_errors says why.
            out_of_memory = args.device == "gpu" and gpu.is_out_of_memory(exc)
            if not out_of_memory and (lib == "ocdl" or len(errors) + 1 == len(setups)):
                raise
            errors[name] = _failure(exc) if out_of_memory else f"{type(exc).__name__}: {exc}"
        finally:
            gc.collect()  # the graphs of one method go before the next is built
    if "close" in fns:
        fns["close"]()
    gn_method = min(methods, key=methods.get) if methods else None
    t["gn_matvec_s"] = methods.get(gn_method)
    if lib != "ocdl":
        rec["gn_methods_s"] = methods
    if errors:
        rec["gn_errors"] = errors
    rec.update(t)
    rec["gn_method"] = gn_method
    del fns
    gc.collect()
    return rec


def _gemm_line(dtype: str, rates: dict) -> str:
    """The GEMM rates of the workload's products: NumPy's BLAS and, if measured, PyTorch's."""

    def gflops(r):
        return "/".join(f"{r[k] / 1e9:.3g}" for k in ("apply", "transpose", "grad"))

    line = f"# {dtype} GEMM GFLOP/s (Y K / G K^T / grad): NumPy {gflops(rates['gemm_flops_per_s'])}"
    if rates.get("torch_gemm_flops_per_s"):
        line += f", PyTorch {gflops(rates['torch_gemm_flops_per_s'])}"
    return line


def _row(r: dict) -> str:
    roof = f"  roofline {1e3 * r['roofline_s']:.2f} ms" if r.get("roofline_s") else ""
    if r["gn_matvec_s"] is None:
        gn = "gn not measured" + (f" ({'; '.join(r['gn_errors'].values())})" if r.get("gn_errors") else "")
    else:
        gn = f"gn {1e3 * r['gn_matvec_s']:.2f} ms" + (f" ({r['gn_method']})" if r["library"] != "ocdl" else "")
    return (
        f"{r['workload']} {r['stepper']:6s} {r['dtype']:7s} {library_name(r['library'], r.get('kernels')):10s}  "
        f"fwd {1e3 * r['forward_s']:.2f} ms  grad {1e3 * r['gradient_s']:.2f} ms  {gn}{roof}"
    )


def format_table(records: list[dict]) -> str:
    """One line per workload, stepper, dtype, ocdl kernel setting and PyTorch setting: times in ms and the ratios.

    ocdl with its fused kernels (the default) and, where measured, without
    (``plain``) each against PyTorch; on the GPU float32 has one more line,
    fused ocdl against PyTorch with TF32 on (``tf32``); "roof" is then the
    memory-bandwidth limit of fused sweeps (``gpu.py``). Cases that failed
    (out of GPU memory), and Gauss-Newton products that did, are listed below the table.
    """
    by_key, failed = {}, []
    for r in records:
        name = library_name(r["library"], r.get("kernels"))
        if "error" in r:
            failed.append(f"{r['workload']} {r['stepper']} {r['dtype']} {name}: {r['error']}")
            continue
        if r["gn_matvec_s"] is None and r.get("gn_errors"):  # without errors: not measured (--no-gn)
            failed.append(f"{r['workload']} {r['stepper']} {r['dtype']} {name}, Gauss-Newton product: "
                          + "; ".join(f"{method}: {err}" for method, err in r["gn_errors"].items()))
        by_key.setdefault((r["workload"], r["stepper"], r["dtype"]), {})[name] = r
    head = (
        f"{'case (times in ms)':24s} {'ocdl fwd':>9s} {'grad':>9s} {'gn':>9s} | {'torch fwd':>9s} {'grad':>9s} "
        f"{'gn':>9s} | {'grad o/t':>8s} {'roof/t':>6s} {'grad/fwd':>8s} {'gn/fwd':>7s} | {'roof fwd':>9s} "
        f"{'fwd/roof':>8s} {'grad/roof':>9s} {'gn/roof':>7s} | {'roof g/f':>8s} {'roof n/f':>8s}"
    )
    lines = [head, "-" * len(head)]

    def ms(x):
        return f"{1e3 * x:9.2f}" if x is not None else " " * 9

    def ratio(a, b, width):
        return f"{a / b:{width}.2f}" if a is not None and b else " " * width

    for (w, st, dt), libs in by_key.items():
        ours = [name for name in libs if name.split()[0] == "ocdl"] or ["ocdl"]
        pairs = [(name, "torch") for name in ours]
        if "torch-tf32" in libs:
            pairs.append((ours[0], "torch-tf32"))
        for name, lib in pairs:
            o, t = libs.get(name), libs.get(lib)
            ofw, ogr, ogn = (o["forward_s"], o["gradient_s"], o["gn_matvec_s"]) if o else (None,) * 3
            tfw, tgr, tgn = (t["forward_s"], t["gradient_s"], t["gn_matvec_s"]) if t else (None,) * 3
            roof = (o or {}).get("roofline") or {}
            rf, rg, rn = (roof.get(q, {}).get("total_s") for q in ("forward", "gradient", "gn_matvec"))
            label = " ".join([w, st, dt, *name.split()[1:]] + (["tf32"] if lib == "torch-tf32" else []))
            lines.append(
                f"{label:24s} {ms(ofw)} {ms(ogr)} {ms(ogn)} | {ms(tfw)} {ms(tgr)} {ms(tgn)} | "
                f"{ratio(ogr, tgr, 8)} {ratio(rg, tgr, 6)} {ratio(ogr, ofw, 8)} {ratio(ogn, ofw, 7)} | {ms(rf)} "
                f"{ratio(ofw, rf, 8)} {ratio(ogr, rg, 9)} {ratio(ogn, rn, 7)} | {ratio(rg, rf, 8)} {ratio(rn, rf, 8)}"
            )
    if any("device" in r for r in records):
        lines.append("roof: the memory-bandwidth limit of fused sweeps (bytes over the device's copy bandwidth, "
                     "gpu.py); plain: ocdl with its fused kernels off; tf32: PyTorch with TF32 on")
    else:
        lines.append("targets: grad o/t <= 1 (aim 0.7), grad/fwd <= 2.5, gn/fwd <= 3.5, fwd/roof <= 2")
        lines.append("roof g/f, roof n/f: gradient/forward and Gauss-Newton/forward at the roofline (their least)")
        lines.append(
            "roof/t: ocdl's gradient roofline (NumPy's BLAS) over PyTorch's measured gradient; at 1 or more"
            " no kernel on NumPy's BLAS can match PyTorch there"
        )
    lines.extend(f"failed: {line}" for line in failed)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
