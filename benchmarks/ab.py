r"""Two ocdl source trees side by side (A/B): the same workloads, runs alternating.

On a shared machine a figure taken now and one taken later compare two loads,
not two versions. This script runs the versions in turns instead: each round
starts one fresh process per tree (in alternating order), each times every
case (best of ``--repeats`` after a warm-up call), and a tree's figure for a
case is its best over the rounds. Both trees thus get the same quiet moments.

A tree is ``NAME=PATH`` (a checkout whose ``ocdl`` package is imported, e.g.
a ``git worktree`` or ``git archive`` of an older commit) with an optional
``:unthreaded`` suffix: then ocdl's NumPy kernels run on whole arrays, BLAS
threading the products, instead of sharing row blocks (and ``Conv2d``'s
image blocks) among threads: the A/B of ocdl's own threading (trees with
``ocdl/_threads.py``). A case is ``WORKLOAD:STEPPER:MEASURE`` with a workload
of ``workloads.py`` (``W1``, ``W2``, ``W3``), a stepper among ``resnet``,
``leapfrog``, ``verlet``, ``rk4`` (each on ``Layer(transform, "tanh")``) and
a measure among ``forward``, ``gradient`` (of :math:`\tfrac12\|Y_N\|^2`:
trajectory and adjoint), ``gn_matvec`` (:math:`J^T J v` on stored states),
``loss_gradient`` (:meth:`ocdl.LearningProblem.value_and_gradient` of the
softmax cross-entropy over 10 classes, random labels and classifier, with
the regularizers: a mini-batch step of a first-order method on the
workload's examples, the classifier's products included),
``classifier_newton`` (block coordinate descent's classifier step at the
paper's settings: :func:`ocdl.solvers.newton_pcg` on
:meth:`~ocdl.LearningProblem.classifier_problem`, 5 Newton steps of at most
10 CG iterations, the same problem, on the network's output features).

::

    git archive 0cf207c | tar -x -C /tmp/base
    python benchmarks/ab.py --tree before=/tmp/base --tree after=. \
        --case W2:leapfrog:gradient --case W2:rk4:gradient --rounds 3
    python benchmarks/ab.py --tree threaded=. --tree unthreaded=.:unthreaded \
        --case W2:resnet:gradient --case W3:resnet:gradient

Prints one line per case (each tree's best time in ms and each tree's ratio to
the first tree); ``--json FILE`` writes the records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STEPPERS = ("resnet", "leapfrog", "verlet", "rk4")
MEASURES = ("forward", "gradient", "gn_matvec", "loss_gradient", "classifier_newton")


def parse_tree(text: str) -> dict:
    """``NAME=PATH[:unthreaded]`` as ``{"name", "path", "unthreaded"}``."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"a tree is NAME=PATH[:unthreaded], got {text!r}")
    unthreaded = path.endswith(":unthreaded")
    path = os.path.abspath(path.removesuffix(":unthreaded"))
    if not os.path.isfile(os.path.join(path, "ocdl", "__init__.py")):
        raise argparse.ArgumentTypeError(f"{path} has no ocdl package")
    return {"name": name, "path": path, "unthreaded": unthreaded}


def parse_case(text: str) -> tuple[str, str, str]:
    """``WORKLOAD:STEPPER:MEASURE`` as a tuple."""
    parts = tuple(text.split(":"))
    if len(parts) != 3 or parts[1] not in STEPPERS or parts[2] not in MEASURES:
        raise argparse.ArgumentTypeError(
            f"a case is WORKLOAD:STEPPER:MEASURE with STEPPER in {STEPPERS} and MEASURE in {MEASURES}, got {text!r}"
        )
    return parts


# -- the worker: one process, one tree -----------------------------------------------
def _callables(workload_name: str, stepper: str, dtype: str, quick: bool) -> dict:
    import numpy as np
    from workloads import QUICK, WORKLOADS

    import ocdl

    workload = (QUICK if quick else WORKLOADS)[workload_name]
    classes = {"resnet": ocdl.ResNet, "leapfrog": ocdl.Leapfrog, "verlet": ocdl.Verlet, "rk4": ocdl.RK4}
    net = ocdl.Network(classes[stepper](ocdl.Layer(workload.transform(), "tanh")), workload.n_steps,
                       workload.final_time)
    # the data as workloads.py draws them, with nothing newer than both trees' ocdl (the seed 0)
    rng = np.random.default_rng(0)
    theta = net.init_params(rng, dtype=np.float64)
    theta.reshape(workload.n_steps, -1)[:, -1] = 0.1 * rng.standard_normal(workload.n_steps)  # biases
    Y0 = rng.standard_normal((workload.n_examples, workload.n_features))
    v = rng.standard_normal(theta.shape)
    theta, Y0, v = (np.ascontiguousarray(a, dtype=dtype) for a in (theta, Y0, v))

    def forward():
        return net.forward(theta, Y0)

    def gradient():
        with net.trajectory(theta, Y0) as traj:
            return net.vjp(theta, Y0, net.stepper.output(traj.final_state), trajectory=traj)

    stored = {}

    def gn_matvec():
        if "traj" not in stored:
            stored["traj"] = net.trajectory(theta, Y0)
        traj = stored["traj"]
        return net.vjp(theta, Y0, net.jvp(theta, Y0, v, trajectory=traj), trajectory=traj)

    def learning_problem():
        if "problem" not in stored:  # built by the untimed warm-up call, and only for the measures that use it
            labels = rng.integers(0, 10, workload.n_examples)
            W = np.ascontiguousarray(0.01 * rng.standard_normal((workload.n_features, 10)), dtype=dtype)
            problem = ocdl.LearningProblem(net, ocdl.SoftmaxCrossEntropy(), Y0, labels, n_classes=10)
            stored["problem"] = problem, W, np.zeros(10, dtype=dtype)
        return stored["problem"]

    def loss_gradient():
        problem, W, mu = learning_problem()
        return problem.value_and_gradient(theta, W, mu)

    def classifier_newton():
        from ocdl.solvers import newton_pcg

        problem, W, mu = learning_problem()
        if "YN" not in stored:
            stored["YN"] = net.forward(theta, Y0)
        return newton_pcg(problem.classifier_problem(stored["YN"]), problem.pack_classifier(W, mu), max_iter=5,
                          cg_maxiter=10)

    return {"forward": forward, "gradient": gradient, "gn_matvec": gn_matvec, "loss_gradient": loss_gradient,
            "classifier_newton": classifier_newton}


def worker(path: str, unthreaded: bool, cases: list, dtype: str, repeats: int, quick: bool) -> dict:
    sys.path[:0] = [path, HERE]
    import ocdl

    if not os.path.abspath(ocdl.__file__).startswith(path + os.sep):
        raise RuntimeError(f"imported ocdl from {ocdl.__file__}, not from {path}")
    if unthreaded:
        from ocdl import _threads

        _threads._THREADED_ELEMENTS = float("inf")  # every kernel on whole arrays
    times = {}
    for case in cases:
        fn = _callables(case[0], case[1], dtype, quick)[case[2]]
        fn()  # warm-up: caches, pools, page faults
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        times[":".join(case)] = best
    return times


# -- the driver ----------------------------------------------------------------------
def run_tree(tree: dict, cases: list, dtype: str, repeats: int, quick: bool) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", tree["path"], "--dtype", dtype,
               "--repeats", str(repeats)] + [arg for case in cases for arg in ("--case", ":".join(case))]
    command += ["--unthreaded"] if tree["unthreaded"] else []
    command += ["--quick"] if quick else []
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tree {tree['name']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", type=parse_tree, action="append", help="NAME=PATH[:unthreaded] (two or more)")
    p.add_argument("--case", type=parse_case, action="append", required=True, help="WORKLOAD:STEPPER:MEASURE")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--rounds", type=int, default=3, help="processes per tree, taking turns (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per process (default 3)")
    p.add_argument("--json", metavar="FILE", help="write the records to FILE")
    p.add_argument("--quick", action="store_true", help="the tiny workloads (workloads.QUICK): a smoke run")
    p.add_argument("--worker", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--unthreaded", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.unthreaded, args.case, args.dtype, args.repeats, args.quick)))
        return
    trees = args.tree or []
    if len(trees) < 2:
        p.error("give two or more --tree NAME=PATH[:unthreaded]")
    best: dict = {t["name"]: {} for t in trees}
    for k in range(args.rounds):
        for tree in trees if k % 2 == 0 else trees[::-1]:  # alternate which goes first
            for case, t in run_tree(tree, args.case, args.dtype, args.repeats, args.quick).items():
                best[tree["name"]][case] = min(t, best[tree["name"]].get(case, float("inf")))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    first = trees[0]["name"]
    print(f"# {args.dtype}, best of {args.rounds} rounds x {args.repeats} calls; load average {load}")
    ratios = [f"{t['name']}/{first}" for t in trees[1:]]
    widths = [max(18, len(r) + 2) for r in ratios]
    print(f"{'case':<24}" + "".join(f"{t['name']:>14}" for t in trees)
          + "".join(f"{r:>{w}}" for r, w in zip(ratios, widths)))
    records = []
    for case in (":".join(c) for c in args.case):
        times = [best[t["name"]][case] for t in trees]
        print(f"{case:<24}" + "".join(f"{1e3 * x:12.1f}ms" for x in times)
              + "".join(f"{x / times[0]:{w}.3f}" for x, w in zip(times[1:], widths)))
        records.append({"benchmark": "ab", "case": case, "dtype": args.dtype, "quick": args.quick,
                        "rounds": args.rounds, "repeats": args.repeats, "load_average": load,
                        "seconds": {t["name"]: best[t["name"]][case] for t in trees},
                        "trees": {t["name"]: t["path"] + (":unthreaded" if t["unthreaded"] else "") for t in trees}})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
