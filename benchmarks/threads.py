r"""What sharing a time step among threads costs: the hand-off and the GIL.

ocdl's step kernels run row blocks on Python threads (``ocdl._threads``):
NumPy's loops and BLAS release the GIL, so two blocks run at once, but every
NumPy call takes the GIL to start and to finish. Two figures bound what
threading can gain:

* ``handoff``: one ``ocdl._threads.in_parallel`` call with two items of
  GEMM work, W2's row blocks (``1024 x n`` times ``n x n``, ``n = 256``), as
  in a W2 step. Reported, as medians over the calls that ran one item on each
  thread (``timed_calls``): when each thread starts its item after the call
  (``main_start_us``, ``worker_start_us``), how long the call takes to return
  after the last item ends (``return_after_us``), and the whole overhead, the
  call's time less the longer item (``overhead_us``). ``noop_us``: a call
  whose items do nothing. ``max_rel_diff`` compares the two blocks with one
  product.
* ``gil``: the same loop of ``np.multiply(x, x, out=y)`` on ``size``-entry
  float64 arrays, ``calls`` times, on one thread, then on two threads at
  once (each with its own arrays; ``exact``: both results equal ``x * x``).
  ``us_per_call`` is the wall time over ``calls``; ``speedup = 2 t_1 / t_2``
  is 2 for perfect sharing and 1 for none. Below a few thousand entries the
  calls queue for the GIL and two threads do less than one.

``python benchmarks/threads.py [--json FILE] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import limit_threads, machine_info, versions, write_records  # noqa: E402

SIZES = (256, 2048, 16384, 131072)


def handoff(n: int, rows: int, calls: int) -> dict:
    """Medians over ``calls`` calls of ``in_parallel`` with two GEMM items (see the module docstring)."""
    import threading

    import numpy as np

    from ocdl._threads import in_parallel

    rng = np.random.default_rng(0)
    Y = rng.standard_normal((2 * rows, n))
    K = rng.standard_normal((n, n))
    out = np.empty_like(Y)
    phases = {"main_start_us": [], "worker_start_us": [], "return_after_us": [], "overhead_us": []}
    for call in range(calls + 1):  # call 0 starts the worker thread: not timed
        marks = {}

        def item(i, marks=marks):
            start = time.perf_counter()
            np.matmul(Y[i * rows : (i + 1) * rows], K, out=out[i * rows : (i + 1) * rows])
            marks[threading.current_thread() is threading.main_thread()] = (start, time.perf_counter())

        t0 = time.perf_counter()
        in_parallel(item, 2, True)
        t1 = time.perf_counter()
        if call == 0 or len(marks) < 2:  # (or one thread ran both items: no hand-off to time)
            continue
        phases["main_start_us"].append(marks[True][0] - t0)
        phases["worker_start_us"].append(marks[False][0] - t0)
        phases["return_after_us"].append(t1 - max(end for _, end in marks.values()))
        phases["overhead_us"].append(t1 - t0 - max(end - start for start, end in marks.values()))
    reference = Y @ K  # both row blocks written: checks the items ran, each on its rows
    record = {k: 1e6 * statistics.median(v) for k, v in phases.items() if v}
    record["max_rel_diff"] = float(np.abs(out - reference).max() / np.abs(reference).max())
    t0 = time.perf_counter()
    for _ in range(calls):
        in_parallel(lambda i: None, 2, True)
    record["noop_us"] = 1e6 * (time.perf_counter() - t0) / calls
    record.update(benchmark="threads", measure="handoff", n=n, rows=rows, calls=calls,
                  timed_calls=len(phases["overhead_us"]))
    return record


def gil(size: int, calls: int, repeats: int) -> dict:
    """``np.multiply`` on ``size`` entries, ``calls`` times, on one thread and on two at once."""
    import numpy as np

    from ocdl._threads import in_parallel

    x = [np.random.default_rng(i).random(size) for i in range(2)]
    y = [np.empty(size) for _ in range(2)]

    def loop(i):
        for _ in range(calls):
            np.multiply(x[i], x[i], out=y[i])

    def best(threads):
        t = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            in_parallel(loop, threads, threads > 1)
            t = min(t, time.perf_counter() - t0)
        return t

    t1, t2 = best(1), best(2)
    exact = all(np.array_equal(y[i], x[i] * x[i]) for i in range(2))
    return {"exact": exact, "benchmark": "threads", "measure": "gil", "size": size, "calls": calls,
            "us_per_call_1": 1e6 * t1 / calls, "us_per_call_2": 1e6 * t2 / calls, "speedup": 2 * t1 / t2}


def table(recs: list[dict]) -> str:
    lines = []
    for r in recs:
        if r["measure"] == "handoff" and not r["timed_calls"]:
            lines.append("hand-off: no call shared its items between the threads")
        elif r["measure"] == "handoff":
            lines.append(
                f"hand-off (2 items of {r['rows']} x {r['n']} GEMM): main starts after {r['main_start_us']:.0f} us, "
                f"worker after {r['worker_start_us']:.0f} us, returns {r['return_after_us']:.0f} us after the "
                f"last item; overhead {r['overhead_us']:.0f} us per call (no-op call: {r['noop_us']:.0f} us)"
            )
    lines.append(f"{'entries':>8} {'1 thread us/call':>17} {'2 threads us/call':>18} {'speedup':>8}")
    for r in recs:
        if r["measure"] == "gil":
            lines.append(f"{r['size']:8d} {r['us_per_call_1']:17.2f} {r['us_per_call_2']:18.2f} {r['speedup']:8.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="FILE", help="write the records to FILE")
    p.add_argument("--quick", action="store_true", help="few calls, small arrays: a smoke run")
    args = p.parse_args(argv)
    thread_setup = limit_threads(2)
    calls = 20 if args.quick else 200
    recs = [handoff(n=256, rows=1024, calls=calls)]  # items too small to outlast the hand-off run on one thread
    for size in SIZES[:2] if args.quick else SIZES:
        recs.append(gil(size, calls=200 if args.quick else max(200, 2**24 // size), repeats=1 if args.quick else 5))
    machine = dict(machine_info(), thread_setup=thread_setup)
    for r in recs:
        r.update(threads=2, versions=versions(("ocdl", "numpy")), machine=machine)
    print(f"# {machine['cpu']}, 2 threads, Python {machine['python']}")
    print(table(recs))
    if args.json:
        write_records(recs, args.json)


if __name__ == "__main__":
    main()
