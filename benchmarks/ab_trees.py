"""Time two source trees of ocdl side by side (an A/B comparison on a busy machine).

Usage::

    git worktree add /tmp/ab_old <commit>
    python benchmarks/ab_trees.py /tmp/ab_old .                     # W2 and W3, gradient and GN product
    python benchmarks/ab_trees.py /tmp/ab_old . --workloads W1 --quantities gradient --rounds 9

Each tree runs in its own worker process (``PYTHONPATH`` set to the tree, so
its ``ocdl`` is imported), on the same data (:mod:`workloads`). For every case
(workload, stepper, quantity) the two workers take turns, one timed run each,
``--rounds`` times after one untimed run; the best wall-clock and the best
CPU time (all threads of the process, page faults included) of each are
printed with the ratios B / A, so both trees meet the same quiet and busy
moments of a shared machine (where the CPU times are the steadier figures),
and the fewest page faults of a run (first touches of fresh memory: a count
that the machine's load does not change).
One JSON line per case goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker() -> None:
    """Serve ``workload stepper quantity dtype`` lines: run once, answer the wall and CPU seconds and the page
    faults (first touches of fresh memory) it took."""
    import numpy as np

    sys.path.insert(0, HERE)
    from workloads import WORKLOADS, ocdl_callables

    import ocdl

    print(json.dumps({"ocdl": os.path.dirname(ocdl.__file__)}), flush=True)
    cases: dict = {}
    for line in sys.stdin:
        name, stepper, quantity, dtype = line.split()
        key = (name, stepper, dtype)
        if key not in cases:
            cases.clear()  # one case's data and trajectory at a time
            cases[key] = ocdl_callables(WORKLOADS[name], stepper, np.dtype(dtype))
        run = cases[key][quantity]
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start, cpu = time.perf_counter(), time.process_time()
        run()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(json.dumps({"seconds": seconds, "cpu_s": cpu, "page_faults": faults}), flush=True)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tree_a", help="source tree A (holds ocdl/)")
    p.add_argument("tree_b", help="source tree B")
    p.add_argument("--workloads", default="W2,W3")
    p.add_argument("--steppers", default="resnet,verlet")
    p.add_argument("--quantities", default="gradient,gn_matvec", help="of forward, gradient, gn_matvec")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--rounds", type=int, default=5, help="timed runs of each tree per case (best kept)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads")
    args = p.parse_args(argv)
    workers = []
    for tree in (args.tree_a, args.tree_b):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=HERE,
        )
        where = json.loads(proc.stdout.readline())["ocdl"]
        if not where.startswith(os.path.abspath(tree)):
            raise SystemExit(f"the worker for {tree} imported ocdl from {where}")
        workers.append(proc)

    def ask(proc, case: str) -> tuple[float, float, int]:
        proc.stdin.write(case + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        return answer["seconds"], answer["cpu_s"], answer["page_faults"]

    records = []
    try:
        for name in args.workloads.split(","):
            for stepper in args.steppers.split(","):
                for quantity in args.quantities.split(","):
                    case = f"{name} {stepper} {quantity} {args.dtype}"
                    for proc in workers:
                        ask(proc, case)  # warm-up
                    times = [[], []]
                    for _ in range(args.rounds):
                        for i, proc in enumerate(workers):
                            times[i].append(ask(proc, case))
                    (a, a_cpu, a_pf), (b, b_cpu, b_pf) = (tuple(map(min, zip(*t))) for t in times)
                    record = {"case": case, "a_s": a, "b_s": b, "b_over_a": b / a,
                              "a_cpu_s": a_cpu, "b_cpu_s": b_cpu, "cpu_b_over_a": b_cpu / a_cpu,
                              "a_page_faults": a_pf, "b_page_faults": b_pf}
                    records.append(record)
                    print(json.dumps(record), flush=True)
                    print(f"# {case:<32} wall A {a:7.3f} B {b:7.3f} s  B/A {b / a:5.3f}   "
                          f"cpu A {a_cpu:7.3f} B {b_cpu:7.3f} s  B/A {b_cpu / a_cpu:5.3f}   "
                          f"faults A {a_pf:6d} B {b_pf:6d}", file=sys.stderr, flush=True)
    finally:
        for proc in workers:
            proc.stdin.close()
            proc.wait()
    return records


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
