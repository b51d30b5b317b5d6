r"""Peak memory and time of one gradient under each memory policy.

The gradient is that of :math:`\tfrac12\|Y_N\|^2` with respect to
:math:`\theta`: the forward sweep under the policy (``Network.trajectory``)
and one adjoint sweep (``Network.vjp`` with :math:`W = Y_N`). For dense
``tanh`` networks (Verlet and ResNet; defaults :math:`N = 1024`,
:math:`s = 4000`, :math:`n = 8`, :math:`T = 10`) and the policies

* ``store-all``: :class:`~ocdl.memory.StoreAll`;
* ``recompute``: :class:`~ocdl.memory.Recompute` with
  :math:`\lceil\sqrt N\,\rceil` checkpoints;
* ``hdf5``: :class:`~ocdl.memory.HDF5`, a temporary file in ``--tmpdir``;
* ``reversible``: :class:`~ocdl.memory.Reversible` (Verlet only),

it records

* ``peak_bytes``: the ``tracemalloc`` peak of one gradient, traced alone
  (NumPy reports its buffers to ``tracemalloc``; inputs allocated before
  the window are not counted, HDF5's own C buffers are not seen);
* ``gradient_s``: the best wall time of ``--repeats`` untraced gradients,
  after one warm-up gradient per policy, the policies taken in turn within
  each repeat (``gradient_s_all`` lists every repeat; ``gradient_cpu_s``
  is the best process CPU time, less sensitive to other load on the machine);
* ``max_rel_diff_vs_store_all``: :math:`\max_i |g_i - g^{\text{ref}}_i| /
  \max_i |g^{\text{ref}}_i|` against the store-all gradient;

and, with ``"benchmark": "reversible_error"``, that difference for the
reversible policy on Verlet and Leapfrog for ``--error-steps`` (default
:math:`N = 64, 256, 1024` at the same :math:`T`).

Run ``python benchmarks/memory.py [--n-steps N] [--samples S] [--width N]
[--out FILE]``: JSON (a list of records) on stdout or in ``--out``, a
readable table on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

import ocdl
from ocdl.memory import HDF5, Recompute, Reversible, StoreAll


def gradient(net: ocdl.Network, theta: np.ndarray, Y0: np.ndarray) -> np.ndarray:
    r""":math:`\nabla_\theta \tfrac12\|Y_N\|^2`: one trajectory under the network's policy and one adjoint sweep."""
    with net.trajectory(theta, Y0) as traj:
        return net.vjp(theta, Y0, net.stepper.output(traj.final_state), trajectory=traj)


def traced_peak(net: ocdl.Network, theta: np.ndarray, Y0: np.ndarray) -> tuple[int, np.ndarray]:
    """The ``tracemalloc`` peak (bytes) of one gradient in a fresh tracing window, and the gradient."""
    tracemalloc.start()
    try:
        g = gradient(net, theta, Y0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, g


def rel_diff(g: np.ndarray, ref: np.ndarray) -> float:
    r""":math:`\max_i |g_i - r_i| / \max_i |r_i|`."""
    return float(np.max(np.abs(g - ref)) / np.max(np.abs(ref)))


def machine_info(tmpdir: str) -> dict:
    """The machine and software the figures were taken on."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "ocdl": ocdl.__version__,
        "tmpdir": tmpdir,
        "load_average_1min": os.getloadavg()[0],
    }


def policies(kind: str, n_steps: int, tmpdir: str) -> dict:
    """The policies benchmarked for ``kind``, by short name."""
    chosen = {
        "store-all": StoreAll(),
        "recompute": Recompute(math.ceil(math.sqrt(n_steps))),
        "hdf5": HDF5(path=tmpdir),
    }
    if ocdl.KINDS[kind].reversible:
        chosen["reversible"] = Reversible()
    return chosen


def problem(kind: str, n_steps: int, args: argparse.Namespace, memory=None):
    """``(net, theta, Y0)``: the same parameters and data for every policy."""
    net = ocdl.network(kind, args.width, n_steps, args.final_time, memory=memory)
    theta = net.init_params(np.random.default_rng(0))
    Y0 = np.random.default_rng(1).standard_normal((args.samples, args.width))
    return net, theta, Y0


def gradient_records(kind: str, args: argparse.Namespace, machine: dict) -> list[dict]:
    """Peak memory, time and accuracy of one gradient under each policy for ``kind``."""
    N = args.n_steps
    nets = {name: problem(kind, N, args, memory)[0] for name, memory in policies(kind, N, args.tmpdir).items()}
    _, theta, Y0 = problem(kind, N, args)
    records = {}
    for name, net in nets.items():
        peak, g = traced_peak(net, theta, Y0)  # also the warm-up
        records[name] = {"g": g, "peak": peak, "times": [], "cpu": []}
    for _ in range(args.repeats):
        for name, net in nets.items():
            start, cpu = time.perf_counter(), time.process_time()
            gradient(net, theta, Y0)
            records[name]["times"].append(time.perf_counter() - start)
            records[name]["cpu"].append(time.process_time() - cpu)
    ref = records["store-all"]
    state_bytes = sum(x.nbytes for x in nets["store-all"].stepper.init(Y0))
    out = []
    for name, r in records.items():
        best = min(r["times"])
        out.append(
            {
                "benchmark": "gradient",
                "policy": name,
                "policy_repr": repr(nets[name].memory),
                "stepper": kind,
                "n_steps": N,
                "samples": args.samples,
                "width": args.width,
                "final_time": args.final_time,
                "dtype": str(theta.dtype),
                "state_bytes": state_bytes,
                "peak_bytes": r["peak"],
                "peak_vs_store_all": r["peak"] / ref["peak"],
                "gradient_s": best,
                "gradient_s_all": r["times"],
                "time_vs_store_all": best / min(ref["times"]),
                "gradient_cpu_s": min(r["cpu"]),
                "cpu_vs_store_all": min(r["cpu"]) / min(ref["cpu"]),
                "max_rel_diff_vs_store_all": rel_diff(r["g"], ref["g"]),
                "machine": machine,
            }
        )
    return out


def reversible_error_records(args: argparse.Namespace, machine: dict) -> list[dict]:
    """Gradient difference reversible vs store-all for growing ``N`` at fixed ``T``."""
    out = []
    for kind in (name for name, spec in ocdl.KINDS.items() if spec.reversible):
        for N in args.error_steps:
            net, theta, Y0 = problem(kind, N, args)
            ref = gradient(net, theta, Y0)
            g = gradient(problem(kind, N, args, Reversible())[0], theta, Y0)
            out.append(
                {
                    "benchmark": "reversible_error",
                    "policy": "reversible",
                    "stepper": kind,
                    "n_steps": N,
                    "samples": args.samples,
                    "width": args.width,
                    "final_time": args.final_time,
                    "max_rel_diff_vs_store_all": rel_diff(g, ref),
                    "machine": machine,
                }
            )
    return out


def table(records: list[dict]) -> str:
    """The records as a readable table."""
    head = (
        f"{'stepper':<9} {'policy':<11} {'N':>5} {'peak MB':>9} {'x store':>8} "
        f"{'states':>7} {'time s':>7} {'x store':>8} {'cpu x':>6} {'rel diff':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        if r["benchmark"] == "gradient":
            lines.append(
                f"{r['stepper']:<9} {r['policy']:<11} {r['n_steps']:>5} {r['peak_bytes'] / 2**20:>9.1f} "
                f"{r['peak_vs_store_all']:>8.3f} {r['peak_bytes'] / r['state_bytes']:>7.1f} "
                f"{r['gradient_s']:>7.3f} {r['time_vs_store_all']:>8.2f} {r['cpu_vs_store_all']:>6.2f} "
                f"{r['max_rel_diff_vs_store_all']:>9.1e}"
            )
    lines += ["", "reversible vs store-all (same T, growing N):"]
    lines += [
        f"  {r['stepper']:<9} N = {r['n_steps']:>5}   max rel diff {r['max_rel_diff_vs_store_all']:.2e}"
        for r in records
        if r["benchmark"] == "reversible_error"
    ]
    lines.append("'states': peak in units of one state x_j; 'x store', 'cpu x': wall, CPU time ratio to store-all")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; print JSON (stdout or ``--out``) and a table (stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-steps", type=int, default=1024, help="time steps N")
    parser.add_argument("--samples", type=int, default=4000, help="examples s")
    parser.add_argument("--width", type=int, default=8, help="features n")
    parser.add_argument("--final-time", type=float, default=10.0, help="final time T")
    parser.add_argument("--repeats", type=int, default=5, help="timed gradients per policy (best is kept)")
    parser.add_argument("--error-steps", type=int, nargs="*", default=[64, 256, 1024], help="N for reversible error")
    parser.add_argument("--steppers", nargs="+", default=["verlet", "resnet"], choices=ocdl.KINDS)
    parser.add_argument("--tmpdir", default=tempfile.gettempdir(), help="directory of the HDF5 temporary files")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)

    machine = machine_info(args.tmpdir)
    records = []
    for kind in args.steppers:
        records += gradient_records(kind, args, machine)
    records += reversible_error_records(args, machine)
    machine["load_average_1min_end"] = os.getloadavg()[0]
    text = json.dumps(records, indent=1)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n")
    print(table(records), file=sys.stderr)
    return records


if __name__ == "__main__":
    main()
