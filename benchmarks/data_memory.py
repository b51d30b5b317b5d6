r"""Memory of the MNIST data on each of P ranks: all of it read by every rank and shared, or each rank's share read.

::

    python benchmarks/data_memory.py                     # P = 1, 2, 3; the paper's split; prints JSON
    python benchmarks/data_memory.py --ranks 2 --width 1 --json data_memory.json
    python benchmarks/data_memory.py --quick             # a smoke run on a few images

For each P and each way of reading (``mpiexec -n P``, one rank of it per
process), every rank reports its peak resident memory (``VmHWM``) after
reading the data, ``load_peak_mib``, and after setting up its learning problem
(the training examples widened to ``--width`` channels and the validation
examples, as :func:`ocdl.experiments.train` does), ``setup_peak_mib``; and its
resident memory then, ``held_mib``, with the data set kept as
:class:`~ocdl.experiments.Run` keeps it; ``start_mib`` is the resident memory
after the imports. The ways of reading:

* ``whole``: :func:`ocdl.experiments.load_data` without the ranks, then
  :func:`ocdl.distributed.share` of the training and validation sets (how
  ``ocdl train`` read MNIST before the ranks read their shares);
* ``shares``: :func:`~ocdl.experiments.load_data` with the ranks' reduction:
  each rank reads its rows of the files (:func:`ocdl.problems.idx.read_idx_rows`).

Memory, not time, is measured: the figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import limit_threads, machine_info, versions, write_records  # noqa: E402

WAYS = ("whole", "shares")
MIB = 1 << 20


def _status_mib(field: str) -> float:
    """A field of ``/proc/self/status`` given in kB (``VmRSS``, ``VmHWM``), MiB."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    return kib * 1024 / MIB


def resident_mib() -> float:
    """This process's resident memory now (``VmRSS``), MiB."""
    return _status_mib("VmRSS")


def peak_mib() -> float:
    """This process's peak resident memory so far (``VmHWM``), MiB. From the same file as :func:`resident_mib`:
    ``getrusage``'s ``ru_maxrss`` reads the kernel's counters otherwise and came out up to 0.3 MiB below ``VmRSS``
    read before it (Linux 6.18), so a peak below the memory at the start."""
    return _status_mib("VmHWM")


# -- the measurement (one rank of ``mpiexec -n P python data_memory.py --worker ...``) -----------------


def worker(args: argparse.Namespace) -> None:
    limit_threads(1)
    from ocdl.distributed import MPIReduction, share
    from ocdl.experiments import build_problem, load_data, paper_settings, widen

    red = MPIReduction()
    sizes = {"train_size": args.train_size, "val_size": args.val_size}
    settings = paper_settings("mnist", "antisymmetric", width=args.width, data_dir=args.data_dir,
                              **{k: v for k, v in sizes.items() if v is not None})
    record = {"start_mib": resident_mib()}
    if args.way == "whole":
        data = load_data(settings)
        (Y, C), (Y_val, C_val) = share(red, data.Y_train, data.C_train), share(red, data.Y_val, data.C_val)
    else:
        data = load_data(settings, red)
        (Y, C), (Y_val, C_val) = (data.Y_train, data.C_train), (data.Y_val, data.C_val)
    record["load_peak_mib"] = peak_mib()
    problem = build_problem(settings, widen(Y, settings), C, data.n_classes, red)
    validation = (widen(Y_val, settings), C_val)
    record.update(setup_peak_mib=peak_mib(), held_mib=resident_mib())
    records = red.gather(dict(record, rank=red.rank, n_train=int(Y.shape[0]), n_val=int(validation[0].shape[0]),
                              examples=int(problem.n_examples)))
    if red.rank == 0:
        with open(args.out, "w") as f:
            json.dump(records, f)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2,3", help="numbers of ranks to measure (1,2,3)")
    parser.add_argument("--train-size", type=int, help="MNIST training examples (the paper's 50,000)")
    parser.add_argument("--val-size", type=int, help="MNIST validation examples (the paper's 10,000)")
    parser.add_argument("--width", type=int, default=6, help="channels of the network (the paper's 6)")
    parser.add_argument("--data-dir", help="folder of the MNIST files (default: as ocdl train finds them)")
    parser.add_argument("--quick", action="store_true", help="a few images and one channel: a smoke run")
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.val_size, args.width = 24, 12, 1
    if args.worker:
        return worker(args)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else "mpiexec"
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    options = [f"--{name.replace('_', '-')}={value}" for name, value in
               (("train_size", args.train_size), ("val_size", args.val_size), ("width", args.width),
                ("data_dir", args.data_dir)) if value is not None]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for P in (int(p) for p in args.ranks.split(",")):
            for way in WAYS:
                out = os.path.join(tmp, f"{P}-{way}.json")
                subprocess.run([mpiexec, "-n", str(P), sys.executable, os.path.abspath(__file__), "--worker",
                                "--way", way, "--out", out, *options], env=env, check=True)
                with open(out) as f:
                    ranks = json.load(f)
                records.append({"benchmark": "data_memory", "ranks": P, "way": way, "width": args.width,
                                "per_rank": ranks,
                                "load_peak_mib_max": max(r["load_peak_mib"] for r in ranks),
                                "setup_peak_mib_max": max(r["setup_peak_mib"] for r in ranks)})
    for record in records:
        record.update(machine=machine_info(), versions=versions(("ocdl", "numpy", "mpi4py")))
    if args.json:
        write_records(records, args.json)
    print(json.dumps(records, indent=1, default=float))


if __name__ == "__main__":
    main()
