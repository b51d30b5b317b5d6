r"""What a gradient and a Gauss-Newton product hold on W3L, in states: ocdl and PyTorch's autograd side by side.

::

    python benchmarks/gradient_memory.py                   # 2,000 images, float32; prints JSON
    python benchmarks/gradient_memory.py --json gradient_memory.json
    python benchmarks/gradient_memory.py --quick           # a smoke run on a few images

For W3L's ResNet and Verlet (``workloads.py``), each library (ocdl with its
default memory policy, :class:`~ocdl.memory.StoreAll`; PyTorch as in
``torch_reference.py``, when it imports) and each of the gradient of
:math:`\tfrac12\|Y_N\|^2` and one Gauss-Newton product (ocdl: ``jvp`` then
``vjp`` on a stored trajectory; PyTorch: double backward, its graph built,
then one product), a fresh process on the CPU builds the network and the data
on ``--images`` images, runs the forward once, resets its peak resident memory
(``VmHWM``, by writing 5 to ``/proc/self/clear_refs``) and reports the peak
above the memory then, ``peak_bytes``. Divided by the bytes of one state
(:math:`s \times 6 \times 28 \times 28` numbers) it is ``states``: the states
the computation keeps (stored trajectories, autograd's saved inputs and
outputs of every layer application) and its temporaries, a number that does
not depend on :math:`s` once the states outweigh the rest; times the state of
W3L's 50,000 images it is ``bytes_at_w3l``, what the same computation needs
on a GPU, up to cuDNN's workspaces and CuPy's fused kernels' own buffers.
``run.py --device gpu`` records a product that does not fit (``gn_errors``)
and keeps its case's other times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_reference  # noqa: E402
from common import machine_info, versions, write_records  # noqa: E402
from data_memory import MIB, peak_mib, resident_mib  # noqa: E402

QUANTITIES = ("gradient", "gn_matvec")
STEPPERS = ("resnet", "verlet")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="images of W3L's shape (default 2,000)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--json", metavar="FILE", help="write the records to FILE")
    p.add_argument("--quick", action="store_true", help="16 images: a smoke run")
    p.add_argument("--one", nargs=3, metavar=("LIBRARY", "STEPPER", "QUANTITY"), help=argparse.SUPPRESS)  # a child
    args = p.parse_args(argv)
    if args.quick:
        args.images = 16
    if args.images < 1:
        p.error(f"--images must be a positive integer, got {args.images}")
    return args


def measure(library: str, stepper: str, quantity: str, images: int, dtype: str) -> dict:
    """One computation's peak above the memory after a forward, in this process (the child's work)."""
    import numpy as np
    import workloads

    w3l = workloads.WORKLOADS["W3L"]
    wl = dataclasses.replace(w3l, n_examples=images)
    if library == "ocdl":
        fns = workloads.ocdl_callables(wl, stepper, np.dtype(dtype))
        gn_setup = fns["gn_setup"]
    else:
        import torch

        torch.set_num_threads(1)
        fns = torch_reference.torch_callables(wl, stepper, np.dtype(dtype), gn_methods="double-backward")
        gn_setup = fns["gn_setups"]["double-backward"]
    fns["forward"]()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    start = peak_mib()
    if start > resident_mib() + 1:
        raise SystemExit(f"the peak memory was not reset (VmHWM {start:.0f} MiB, VmRSS {resident_mib():.0f} MiB)")
    if quantity == "gradient":
        fns["gradient"]()
    else:
        gn_setup()()
    peak = (peak_mib() - start) * MIB
    itemsize = np.dtype(dtype).itemsize
    state = images * wl.n_features * itemsize
    return dict(workload="W3L", library=library, stepper=stepper, quantity=quantity, dtype=dtype, images=images,
                state_bytes=state, peak_bytes=peak, states=peak / state,
                bytes_at_w3l=peak / state * w3l.n_examples * wl.n_features * itemsize)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one, args.images, args.dtype)))
        return []
    libraries = ("ocdl", "torch") if torch_reference.available() else ("ocdl",)
    if len(libraries) == 1:
        print("PyTorch is not installed: ocdl alone (pip install torch to compare).")
    common = dict(machine=machine_info(), versions=versions(("ocdl", "numpy") + ("torch",) * (len(libraries) > 1)))
    records = []
    for stepper in STEPPERS:
        for quantity in QUANTITIES:
            for library in libraries:
                out = subprocess.run([sys.executable, __file__, "--one", library, stepper, quantity,
                                      "--images", str(args.images), "--dtype", args.dtype],
                                     capture_output=True, text=True, check=True)
                rec = dict(json.loads(out.stdout.splitlines()[-1]), **common)
                print(f"W3L {stepper:6s} {quantity:9s} {library:5s}: {rec['states']:6.1f} states, "
                      f"{rec['bytes_at_w3l'] / 1e9:6.1f} GB at 50,000 images", flush=True)
                records.append(rec)
    if args.json:
        write_records(records, args.json)
    else:
        print(json.dumps(records, indent=1))
    return records


if __name__ == "__main__":
    main()
