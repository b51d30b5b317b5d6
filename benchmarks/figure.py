"""The benchmark records as a figure: each time as a multiple of this machine's roofline.

One panel per quantity (forward, gradient, Gauss-Newton product), one row
per workload, stepper and dtype, a bar for ocdl and one for PyTorch: the
measured time over the roofline estimate of the same quantity
(``roofline_s``, ``roofline_gradient_s``, ``roofline_gn_matvec_s``), on a
log scale, each bar drawn from 1: what the machine can do by the roofline's
count (NumPy's GEMM and elementwise rates, so PyTorch's MKL can beat it).
The forward panel also marks the issue's 2x target. Records without a roofline
(``--no-roofline``) are drawn in milliseconds instead. GPU records
(``--device gpu``) are drawn over their memory-bandwidth limit (``gpu.py``), with
ocdl without its fused kernels (``plain``) and PyTorch's TF32 row as more bars.
"""

from __future__ import annotations

QUANTITIES = (
    ("forward_s", "roofline_s", "forward"),
    ("gradient_s", "roofline_gradient_s", "gradient"),
    ("gn_matvec_s", "roofline_gn_matvec_s", "Gauss-Newton product"),
)
COLOURS = {"ocdl": "tab:blue", "ocdl plain": "tab:cyan", "torch": "tab:orange", "torch-tf32": "tab:red"}
TICKS = (0.01, 0.1, 0.25, 0.5, 1, 2, 4, 8, 10, 100, 1000, 10000)


def plot_records(records: list[dict], path: str) -> None:
    """Write the figure of ``records`` (``run.py``'s) to ``path`` (any format matplotlib writes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from common import library_name
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    records = [r for r in records if "error" not in r]  # cases that ran out of GPU memory have no times
    cases = list(dict.fromkeys((r["workload"], r["stepper"], r["dtype"]) for r in records))
    by_case = {(r["workload"], r["stepper"], r["dtype"], library_name(r["library"], r.get("kernels"))): r
               for r in records}
    libraries = [lib for lib in COLOURS if any(key[3] == lib for key in by_case)]
    roofline = all(r.get("roofline_s") is not None for r in records if r["library"] == "ocdl")
    device = records[0].get("device")  # --device gpu: the roofline is the bandwidth limit (gpu.py)
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(cases) + 1.6), sharey=True)
    height = 0.8 / len(libraries)
    for ax, (key, roof_key, title) in zip(axes, QUANTITIES):
        for k, lib in enumerate(libraries):
            values, rows = [], []
            for i, case in enumerate(cases):
                rec, ours = by_case.get(case + (lib,)), by_case.get(case + ("ocdl",))
                if rec is None or ours is None or rec[key] is None:  # None: a product out of GPU memory
                    continue
                values.append(rec[key] / ours[roof_key] if roofline else 1e3 * rec[key])
                rows.append(i + (k - (len(libraries) - 1) / 2) * height)
            if roofline:  # bars from the roofline: to the left, faster than its estimate
                ax.barh(rows, [v - 1 for v in values], left=1, height=height, color=COLOURS[lib], label=lib)
            else:
                ax.barh(rows, values, height=height, color=COLOURS[lib], label=lib)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(TICKS))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
        ax.grid(axis="x", which="major", alpha=0.3)
        if roofline:
            ax.axvline(1.0, color="black", linewidth=1)
            ax.set_xlabel("time / bandwidth limit of fused sweeps" if device else "time / roofline (NumPy's rates)")
        else:
            ax.set_xlabel("time (ms)")
    if roofline:
        axes[0].axvline(2.0, color="tab:red", linestyle="--", linewidth=1, label="target 2x")
    axes[0].set_yticks(range(len(cases)))
    axes[0].set_yticklabels([f"{w} {s} {d}" for w, s, d in cases])
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right", fontsize="small")
    machine = records[0].get("machine", {})
    if device:
        fig.suptitle(f"ocdl (CuPy) and PyTorch (CUDA) on {device.get('gpu')}")
    else:
        fig.suptitle(f"ocdl and PyTorch on {machine.get('cpu', 'this machine')}, {records[0].get('threads')} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
