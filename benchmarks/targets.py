"""The targets of issue 24 from ``run.py``'s GPU records: each measured ratio beside its bound.

All are about ocdl with its fused kernels (records with ``kernels`` ``"fused"``):

* ``gradient``: ocdl's gradient time over PyTorch's with TF32 off (the
  like-for-like figure), on W1, W2 and W3L (W3 at 50,000 images), for each
  stepper and dtype measured: at most 1; on W3L the aim is 0.5.
* ``forward``: ocdl's W3L forward time over its memory-bandwidth limit
  (``gpu.py``): at most 3.
* ``cpu``: ocdl's W3L gradient time on the CPU of the same machine, all
  cores, over the GPU's: at least 20. The CPU's time comes from the records
  of ``run.py --device cpu`` (``--cpu-json``) of W3L or, scaled by the ratio
  of the examples, of W3 (on the CPU the time grows linearly with the
  examples: the sweeps run over blocks of images); without them the target
  is listed as not measured.

Every target of the issue's grid (:data:`REQUIRED`) has an entry: one
that was not measured (not run, stopped by a time limit, out of memory) is
listed with ``value`` ``None`` and why, so that a run's list is complete.

:func:`attach` stores each record's entries in it (``targets``, a list) and
returns all of them; :func:`format_targets` writes them as lines, and
``python benchmarks/targets.py gpu.json`` prints those stored in a file.
"""

from __future__ import annotations

import json
import sys

GRADIENT_WORKLOADS = ("W1", "W2", "W3L")
"""The workloads of the gradient target (W3 at 512 images is a small case, not a target)."""

LARGE = "W3L"
"""The workload of the forward and CPU targets, and of the gradient's aim."""

STEPPERS, DTYPES = ("resnet", "verlet"), ("float32", "float64")
REQUIRED = (
    [("gradient", w, st, dt) for w in GRADIENT_WORKLOADS for st in STEPPERS for dt in DTYPES]
    + [(name, LARGE, st, "float32") for name in ("forward", "cpu") for st in STEPPERS]
)
"""The issue's targets, ``(target, workload, stepper, dtype)``: the gradient on W1, W2 and W3L in both dtypes,
W3L's forward and GPU / CPU in float32 (the session's dtype there)."""

TARGETS = {  # name: (what is divided by what, relation, bound, aim on LARGE)
    "gradient": ("gradient / PyTorch (TF32 off)", "<=", 1.0, 0.5),
    "forward": ("forward / bandwidth limit", "<=", 3.0, None),
    "cpu": ("CPU (all cores) / GPU gradient", ">=", 20.0, None),
}


def _fused(rec: dict) -> bool:
    return rec["library"] == "ocdl" and rec.get("kernels") in (None, "fused") and "error" not in rec


def _entry(name: str, rec: dict, value: float | None, detail: str | None = None) -> dict:
    what, relation, bound, aim = TARGETS[name]
    met = None if value is None else value <= bound if relation == "<=" else value >= bound
    entry = {"target": name, "what": what, "workload": rec["workload"], "stepper": rec["stepper"],
             "dtype": rec["dtype"], "value": value, "relation": relation, "bound": bound, "met": met}
    if aim is not None and rec["workload"] == LARGE:
        entry["aim"] = aim
    if detail:
        entry["detail"] = detail
    return entry


def _cpu_gradient(rec: dict, cpu_records: list[dict]) -> tuple[float, str] | None:
    """The CPU's gradient time of ``rec``'s case scaled to its examples, and where it came from."""
    found = {r["workload"]: r for r in cpu_records
             if _fused(r) and r["stepper"] == rec["stepper"] and r["dtype"] == rec["dtype"] and r.get("n_examples")}
    cpu = found.get(LARGE) or found.get("W3")
    if cpu is None or not rec.get("n_examples"):
        return None
    scale = rec["n_examples"] / cpu["n_examples"]
    return cpu["gradient_s"] * scale, (f"CPU: {cpu['workload']}, {cpu['n_examples']:,} examples x {scale:.4g}, "
                                       f"{cpu['threads']} threads, {cpu['gradient_s']:.4g} s")


def evaluate(records: list[dict], cpu_records: list[dict] | None = None) -> list[dict]:
    """The target entries of ``records`` (see the module docstring), in the order of the records."""
    torch = {(r["workload"], r["stepper"], r["dtype"]): r for r in records
             if r["library"] == "torch" and "error" not in r}
    entries = []
    for rec in filter(_fused, records):
        case = (rec["workload"], rec["stepper"], rec["dtype"])
        if rec["workload"] in GRADIENT_WORKLOADS and case in torch:
            entries.append(_entry("gradient", rec, rec["gradient_s"] / torch[case]["gradient_s"]))
        if rec["workload"] != LARGE:
            continue
        if rec.get("roofline_s"):
            entries.append(_entry("forward", rec, rec["forward_s"] / rec["roofline_s"]))
        cpu = _cpu_gradient(rec, cpu_records) if cpu_records else None
        if cpu is None:
            entries.append(_entry("cpu", rec, None, "not measured: no CPU record of this case (run.py --cpu-json)"))
        else:
            entries.append(_entry("cpu", rec, cpu[0] / rec["gradient_s"], cpu[1]))
    return entries + _not_measured(entries, records)


def _not_measured(entries: list[dict], records: list[dict]) -> list[dict]:
    """An entry for each target of :data:`REQUIRED` without one: ``value`` ``None``, and why (a failed record's
    error, or no record)."""
    have = {(e["target"], e["workload"], e["stepper"], e["dtype"]) for e in entries}
    errors = {(r["workload"], r["stepper"], r["dtype"], r["library"]): r["error"] for r in records if "error" in r}
    missing = []
    for name, workload, stepper, dtype in REQUIRED:
        if (name, workload, stepper, dtype) in have:
            continue
        why = [f"{lib}: {errors[workload, stepper, dtype, lib]}" for lib in ("ocdl", "torch")
               if (workload, stepper, dtype, lib) in errors]
        case = {"workload": workload, "stepper": stepper, "dtype": dtype}
        missing.append(_entry(name, case, None, "not measured: " + ("; ".join(why) or "no record of this case")))
    return missing


def attach(records: list[dict], cpu_records: list[dict] | None = None) -> list[dict]:
    """Store each record's target entries in it as ``targets`` (replacing earlier ones); return all entries."""
    entries = evaluate(records, cpu_records)
    for rec in records:
        rec.pop("targets", None)
    by_case = {}
    for entry in entries:
        by_case.setdefault((entry["workload"], entry["stepper"], entry["dtype"]), []).append(entry)
    for rec in filter(_fused, records):
        found = by_case.get((rec["workload"], rec["stepper"], rec["dtype"]))
        if found:
            rec["targets"] = found
    return entries


def format_targets(entries: list[dict]) -> str:
    """One line per entry: the ratio, its bound and whether it is met; then how many are met."""
    if not entries:
        return "targets (issue 24): none measured (they need ocdl's fused records, and PyTorch's for the gradient)"
    lines = ["targets (issue 24), ocdl with its fused kernels:"]
    for e in entries:
        bound = f"{e['relation']} {e['bound']:g}" + (f" (aim {e['aim']:g})" if "aim" in e else "")
        value = "" if e["value"] is None else f"{e['value']:.3g}"
        verdict = {True: "met", False: "MISSED", None: "-"}[e["met"]]
        case = f"{e['workload']} {e['stepper']} {e['dtype']}"
        line = f"  {e['what']:32s} {case:20s} {value:>7s}  {bound:16s} {verdict}"
        lines.append(line + (f"  ({e['detail']})" if "detail" in e else ""))
    judged = [e for e in entries if e["met"] is not None]
    lines.append(f"  met: {sum(e['met'] for e in judged)} of {len(judged)} measured; not measured: "
                 f"{len(entries) - len(judged)}")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    """Print the target entries stored in the records of the JSON file named by the one argument, and those of
    :data:`REQUIRED` not measured."""
    (path,) = sys.argv[1:] if argv is None else argv
    with open(path) as f:
        records = json.load(f)
    entries = [entry for rec in records for entry in rec.get("targets", ())]
    entries += _not_measured(entries, records)
    print(format_targets(entries))
    return entries


if __name__ == "__main__":
    main()
