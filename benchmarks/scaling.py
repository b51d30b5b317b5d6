r"""Data-parallel scaling: one block-coordinate-descent iteration of the MNIST network on P = 1, 2 ranks, measured,
and a model of strong and weak scaling to 64 ranks and to 8 GPUs.

::

    python benchmarks/scaling.py                       # P = 1 and 2, a subset that fits two cores; prints JSON
    python benchmarks/scaling.py --ranks 1,2 --train-size 128 --layers 8 --repeats 2 --json scaling.json
    python benchmarks/scaling.py --quick                # a smoke run of a few seconds

Measured (``mpiexec -n P``, one BLAS thread per rank, :mod:`ocdl.distributed`):
the wall time of one iteration of :class:`ocdl.solvers.BlockCoordinateDescent`
on the paper's MNIST network (antisymmetric ResNet, 6 channels, 3 x 3
convolutions; fewer layers and examples than the paper), full batch, split
into communication (the time inside the reduction's ``sum``, ``mean`` and
``gather``, waiting for the other ranks included) and computation (the rest),
best of ``--repeats``; and every reduction of that iteration, by kind
(parameter-sized vector ``theta``, classifier ``W``, ``mu``, a number, a gather).

Model (per iteration, ``L = ceil(log2 P)``): a number or a gather costs one
gather and one broadcast of a small object, ``2 L alpha + o``; an array of
``m`` bytes costs that plus ``MPI_Gather`` to rank 0 and ``MPI_Bcast``,
``L alpha + (P - 1) m beta + L (alpha + m beta)`` (what :class:`MPIReduction`
does: rank 0 adds the parts in rank order), plus two copies over PCIe with
host buffers on GPUs, ``2 m / B_pcie``. The computation is
``T_rep + (T_1 - T_rep) / P``: the data terms split over the ranks, the
parameter-sized work (``T_rep``) repeated on every rank: the time in the
regularizers (values, gradients, Hessian products and preconditioner solves of
the time smoothness of ``theta`` and the Laplacian of ``W``), measured on one
rank, in seconds (it does not grow with the examples; on the GPU scaled by the
GPU's speed-up; the CG vector updates, a few parameter-sized additions, are
left out). The two-point fit ``2 T_comp(2) - T_comp(1)`` is recorded beside it:
on a loaded machine it is too noisy to use (0 and 1.7 s in two runs). Strong
scaling keeps full-size MNIST (50,000 examples) and splits it; weak scaling
gives every rank that much. Efficiency is ``T_1 / (P T_P)`` (strong) and
``T_1 / T_P`` (weak).

On a shared, loaded machine the measured times carry the other jobs'
disturbance (MPICH's waiting ranks also poll a core): compare only runs
taken at low load (``machine.load_average`` in the output).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import limit_threads, machine_info, versions, write_records  # noqa: E402

FULL = {"n_train": 50000, "theta": 5200, "W": 4704 * 10, "mu": 10}
"""Full-size MNIST (paper): training examples and the sizes of the reduced vectors (16 layers of 325 numbers,
the classifier of 4,704 features and 10 classes)."""
CPU_ITERATION_S = 199.0
"""A full-size MNIST iteration at 16 layers on this project's 2-core CPU (float32, the six-iteration ResNet run of
examples/results/mnist_full_resnet.json), seconds."""
GPU_ITERATION_S = 3.4
"""The same on one H200 (float32), seconds."""
NETWORK = {"alpha_s": 5e-6, "bandwidth_Bps": 10e9, "overhead_s": 50e-6}
"""Ranks on nodes of an InfiniBand cluster: latency alpha, bandwidth 1 / beta, and the Python overhead o of one
collective call (mpi4py pickling a small object, the calls around it)."""
NODE = {"alpha_s": 1e-6, "bandwidth_Bps": 20e9, "overhead_s": 50e-6, "pcie_Bps": 25e9}
"""8 GPUs in one node: MPI over shared memory, and PCIe for the host buffers."""
RANKS = (1, 2, 4, 8, 16, 32, 64)


# -- the measurement (one rank of ``mpiexec -n P python scaling.py --worker ...``) ------------------


def worker(args: argparse.Namespace) -> None:
    limit_threads(1)  # before NumPy: one BLAS thread per rank
    import numpy as np
    from ocdl.solvers import BlockCoordinateDescent

    from ocdl.distributed import MPIReduction, share
    from ocdl.experiments import build_problem, load_data, paper_settings, widen
    from ocdl.experiments.model import initial_parameters

    class TimedReduction(MPIReduction):
        """Records the time and the kind of every reduction."""

        def __init__(self):
            super().__init__()
            self.reset()

        def reset(self):
            self.seconds, self.calls = 0.0, []

        def _timed(self, kind, f, *a):
            start = time.perf_counter()
            try:
                return f(*a)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls.append(kind)

        def sum(self, x):
            return self._timed(self._kind(x), super().sum, x)

        def mean(self, x, count):
            return self._timed(self._kind(x), super().mean, x, count)

        def gather(self, value):
            return self._timed("gather", super().gather, value)

        def _kind(self, x):
            return {n_params: "theta", n_W: "W", n_mu: "mu"}.get(getattr(x, "size", 0), "number") \
                if getattr(x, "ndim", 0) else "number"

    red = TimedReduction()
    settings = paper_settings("mnist", "antisymmetric", first_layers=args.layers, max_layers=args.layers,
                              train_size=args.train_size, val_size=args.val_size, max_iter=1,
                              hessian_batch_size=None, chunk_size=None)
    data = load_data(settings)
    (Y, C), (Y_val, C_val) = share(red, data.Y_train, data.C_train), share(red, data.Y_val, data.C_val)
    problem = build_problem(settings, widen(Y, settings), C, data.n_classes, red)
    n_params, n_mu = problem.network.n_params, problem.n_outputs
    n_W = problem.n_features * n_mu
    theta0 = initial_parameters(settings, problem.network)
    regularizers = [0.0]  # seconds in the regularizers: work every rank repeats whatever its share
    for regularizer in (problem.theta_regularizer, problem.W_regularizer):
        for name in ("value", "gradient", "hessian_matvec", "precondition"):
            setattr(regularizer, name, _timed(getattr(regularizer, name), regularizers))
    best = None
    for _ in range(args.repeats):
        red.comm.Barrier()
        red.reset()
        regularizers[0] = 0.0
        start = time.perf_counter()
        solver = BlockCoordinateDescent(max_iter=1, cg_maxiter=settings.cg_maxiter,
                                        classifier_newton_steps=settings.classifier_newton_steps,
                                        classifier_cg_maxiter=settings.classifier_cg_maxiter)
        result = solver.minimize(problem, theta0, validation=(widen(Y_val, settings), C_val), rng=settings.seed,
                                 progress=False)
        total, calls = time.perf_counter() - start, list(red.calls)
        total, comm = max(red.gather((total, red.seconds)))  # the slowest rank's iteration, its communication
        if best is None or total < best["iteration_s"]:
            best = {"iteration_s": total, "communication_s": comm, "computation_s": total - comm,
                    "reductions": {kind: calls.count(kind) for kind in sorted(set(calls))},
                    "regularizers_s": regularizers[0],
                    "cg_iters": int(result.history[0]["cg_iters"]),
                    "objective": float(result.history[0]["objective"])}
    if red.rank == 0:
        best.update(benchmark="scaling", ranks=red.size, blas_threads=1, n_train=int(data.Y_train.shape[0]),
                    n_layers=args.layers, n_params=n_params, n_W=n_W, dtype=str(np.dtype(settings.dtype)),
                    repeats=args.repeats)
        with open(args.out, "w") as f:
            json.dump(best, f)


def _timed(method, seconds: list):
    """``method``, adding the seconds of each call to ``seconds[0]``."""

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[0] += time.perf_counter() - start

    return timed


# -- the model -------------------------------------------------------------------------------------------


def communication_s(reductions: dict, P: int, itemsize: int, net: dict, pcie: float | None = None) -> float:
    """Seconds of the reductions of one iteration on ``P`` ranks (see the module docstring)."""
    if P == 1:
        return 0.0
    L, alpha, beta, o = math.ceil(math.log2(P)), net["alpha_s"], 1.0 / net["bandwidth_Bps"], net["overhead_s"]
    total = 0.0
    for kind, count in reductions.items():
        cost = 2 * L * alpha + o
        if kind in ("theta", "W", "mu"):
            m = FULL[kind] * itemsize
            cost += L * alpha + (P - 1) * m * beta + L * (alpha + m * beta)
            if pcie is not None:
                cost += 2 * m / pcie
        total += count * cost
    return total


def model(measured: list[dict]) -> dict:
    by_ranks = {rec["ranks"]: rec for rec in measured}
    one = by_ranks[1]
    reductions = one["reductions"]
    fit = None  # the work repeated on every rank, from the two measurements (Amdahl), for comparison
    if 2 in by_ranks:
        fit = 2 * by_ranks[2]["computation_s"] - one["computation_s"]
    replicated_s = one["regularizers_s"]
    replicated = {"cpu": replicated_s, "gpu": replicated_s * GPU_ITERATION_S / CPU_ITERATION_S,
                  "amdahl_fit_cpu": fit}

    def scaling(T1: float, P: int, comm: float, weak: bool) -> dict:
        rep = replicated["gpu" if T1 == GPU_ITERATION_S else "cpu"]
        TP = rep + (T1 - rep) / (1 if weak else P) + comm
        return {"ranks": P, "iteration_s": TP, "communication_s": comm,
                "efficiency": T1 / TP if weak else T1 / (P * TP)}

    cpu = {kind: [scaling(CPU_ITERATION_S, P, communication_s(reductions, P, 8, NETWORK), kind == "weak")
                  for P in RANKS] for kind in ("strong", "weak")}
    gpus = [scaling(GPU_ITERATION_S, P, communication_s(reductions, P, 4, NODE, NODE["pcie_Bps"]), False)
            for P in (1, 2, 4, 8)]
    return {
        "reductions_per_iteration": reductions,
        "replicated_s": replicated,
        "parameters": {"cpu_network": NETWORK, "gpu_node": NODE, "full_size": FULL,
                       "cpu_iteration_s": CPU_ITERATION_S, "gpu_iteration_s": GPU_ITERATION_S,
                       "replicated_s": "cpu: the regularizers' time, measured on one rank (it does not grow with "
                                       "the examples); gpu: cpu's times gpu_iteration_s / cpu_iteration_s"},
        "cpu_strong": cpu["strong"], "cpu_weak": cpu["weak"], "gpu_strong": gpus,
        "predicted_efficiency": {
            **{f"cpu_{P}_ranks": next(r["efficiency"] for r in cpu["strong"] if r["ranks"] == P) for P in (8, 16, 64)},
            "gpu_8": gpus[-1]["efficiency"],
        },
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2", help="numbers of ranks to measure (1,2)")
    parser.add_argument("--train-size", type=int, default=128, help="MNIST training examples (128)")
    parser.add_argument("--val-size", type=int, default=64, help="MNIST validation examples (64)")
    parser.add_argument("--layers", type=int, default=8, help="layers of the network (8)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many iterations (2)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.val_size, args.layers, args.repeats = 16, 8, 2, 1
    if args.worker:
        return worker(args)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else "mpiexec"
    machine, measured = machine_info(), []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        for P in (int(p) for p in args.ranks.split(",")):
            out = os.path.join(tmp, f"{P}.json")
            command = [mpiexec, "-n", str(P), sys.executable, os.path.abspath(__file__), "--worker", "--out", out,
                       "--train-size", str(args.train_size), "--val-size", str(args.val_size),
                       "--layers", str(args.layers), "--repeats", str(args.repeats)]
            subprocess.run(command, env=env, check=True)
            with open(out) as f:
                measured.append(json.load(f))
    for record in measured:
        record.update(machine=machine, versions=versions(("ocdl", "numpy", "mpi4py")))
    records = measured + [dict(benchmark="scaling", measure="model", **model(measured))]
    if args.json:
        write_records(records, args.json)
    print(json.dumps(records, indent=1, default=float))


if __name__ == "__main__":
    main()
