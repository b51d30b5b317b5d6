r"""Time to accuracy on MNIST (issue 25): ocdl's Gauss-Newton training, ocdl's Adam and PyTorch's Adam.

Usage::

    python benchmarks/time_to_accuracy.py --json tta.json --plot tta.png      # the CPU subset, about 5 minutes
    python benchmarks/time_to_accuracy.py --full --device gpu --budget 600   # the paper's size on a GPU
    python benchmarks/time_to_accuracy.py --quick --data-dir DIR              # CI-sized: seconds

Three methods train the paper's MNIST network (section 6.4: a ResNet of 3 x 3
convolutions over 6 channels, the image copied into each, ``T = 6``,
``tanh``, a softmax classifier on the 4,704 output features) on the same
data and device, each for the same budget of training seconds
(``--budget``):

* ``bcd``: ocdl's multilevel block coordinate descent with Gauss-Newton-PCG
  at the paper's settings (:func:`ocdl.experiments.paper_settings`: levels
  of 4, 8 and 16 layers, at most 20 iterations each, the full gradient, the
  Gauss-Newton matrix on a random sub-sample, the classifier by at most 5
  Newton-PCG iterations of up to 10 CG iterations, time smoothness 0.005 and
  Laplacian smoothness 0.01), from the seeded initial weights of 4 layers;
* ``adam``: ocdl's Adam (:class:`ocdl.solvers.Adam`) on the same learning
  problem (its regularizers included) with all 16 layers, mini-batches of
  ``--batch-size``;
* ``torch``: ``torch.optim.Adam`` on the same 16-layer network
  (``torch_reference.TorchNetwork``) from the same initial weights as
  ``adam`` (zero classifier), minimising the softmax cross-entropy alone
  (as a PyTorch user would), mini-batches of ``--batch-size`` in a seeded
  random order. Skipped when PyTorch does not import.

The learning rate of both Adams is the best of a small sweep
(``--learning-rates``, ``--sweep-epochs`` epochs each, the highest validation
accuracy wins), run with PyTorch (with ocdl's Adam without PyTorch) before
the timed runs and not counted in any budget.

The clock counts training only: the accuracy evaluations (ocdl's after every
iteration or epoch, on the training and the validation set; PyTorch's on the
validation set after every epoch) are timed and subtracted. Each method
stops after the iteration or epoch that passes the budget, so each curve has
one point per block-coordinate-descent iteration or per epoch. Reported per
method: the training seconds until the validation accuracy first reaches
98% and 98.5% (``null``: not within the budget) and the best validation
accuracy within the budget. The records also hold the machine, the
versions, the settings and the sweep.

Sizes: ``--full`` is the paper's (50,000 training and 10,000 validation
images, Gauss-Newton on 5,000); the default is the CPU subset (2,000 and
1,000 images, Gauss-Newton on 200, a tenth of the training set as in the
paper, 60 s per method); ``--quick`` a smoke test (64 and 32 images, 4
layers). All in float32 by default (``--dtype``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THRESHOLDS = (0.98, 0.985)
METHODS = ("bcd", "adam", "torch")
LABELS = {"bcd": "ocdl Gauss-Newton BCD (multilevel)", "adam": "ocdl Adam", "torch": "PyTorch Adam"}

SIZES = {  # train, validation, Gauss-Newton sub-sample, budget (s), finest layers, learning rates, batch size
    "cpu": dict(train_size=2000, val_size=1000, hessian_batch_size=200, budget=60.0, max_layers=16,
                learning_rates="1e-3,3e-3,1e-2", batch_size=128),
    "full": dict(train_size=50000, val_size=10000, hessian_batch_size=5000, budget=600.0, max_layers=16,
                 learning_rates="1e-3,3e-3,1e-2", batch_size=128),
    "quick": dict(train_size=64, val_size=32, hessian_batch_size=16, budget=0.5, max_layers=4,
                  learning_rates="1e-3,1e-2", batch_size=16),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the paper's size (50,000 / 10,000 images)")
    size.add_argument("--quick", action="store_true", help="a smoke test of seconds (64 / 32 images, 4 layers)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})")
    p.add_argument("--stepper", default="resnet", choices=("resnet", "verlet"), help="the network (resnet)")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="cpu, or gpu: CuPy and PyTorch CUDA")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--train-size", type=int, help="training images (CPU subset 2000)")
    p.add_argument("--val-size", type=int, help="validation images (CPU subset 1000)")
    p.add_argument("--hessian-batch-size", type=int, help="Gauss-Newton sub-sample (CPU subset 200)")
    p.add_argument("--max-layers", type=int, help="finest level: the network of the Adams (16)")
    p.add_argument("--budget", type=float, help="training seconds per method (CPU subset 60)")
    p.add_argument("--batch-size", type=int, help="mini-batch of the Adams (128)")
    p.add_argument("--learning-rates", help="the sweep (1e-3,3e-3,1e-2)")
    p.add_argument("--sweep-epochs", type=int, default=1, help="epochs per learning rate of the sweep (1)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order (0)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP/torch threads (2)")
    p.add_argument(
        "--omp-wait-policy", default="unset", choices=("unset", "passive", "active"),
        help="OMP_WAIT_POLICY for PyTorch's OpenMP threads (default: PyTorch's own); on a machine shared with "
        "other jobs use 'passive': spinning threads made PyTorch's epochs 4.5x slower here",
    )
    p.add_argument("--data-dir", help="folder of the MNIST files (default: ocdl's, see ocdl.problems.mnist)")
    p.add_argument("--json", metavar="FILE", help="write the records to FILE")
    p.add_argument("--plot", metavar="FILE", help="draw validation accuracy against training seconds into FILE")
    args = p.parse_args(argv)
    for key, value in SIZES["full" if args.full else "quick" if args.quick else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        p.error(f"methods must be a comma-separated list of {', '.join(METHODS)}; got {unknown or 'none'}")
    args.learning_rates = [float(x) for x in args.learning_rates.split(",") if x.strip()]
    return args


class BudgetSpent(Exception):
    """Raised from the accuracy evaluation that finds the budget passed: ends an ocdl solver."""


class Clock:
    """Training seconds: the wall time since the start less the time spent evaluating accuracies."""

    def __init__(self) -> None:
        self.start, self.evaluating = time.perf_counter(), 0.0

    def training_s(self) -> float:
        return time.perf_counter() - self.start - self.evaluating


@contextlib.contextmanager
def ocdl_curve(curve: list, budget: float):
    """Time ``LearningProblem.accuracy`` out of the clock; each validation accuracy is a point of ``curve``.

    ``(training seconds, validation accuracy, layers)`` per point; after the
    point that passes ``budget`` the solver is ended by :class:`BudgetSpent`.
    """
    from ocdl import LearningProblem

    accuracy, clock = LearningProblem.accuracy, Clock()

    def timed_accuracy(self, theta, W, mu, Y0=None, C=None):
        start = time.perf_counter()
        value = accuracy(self, theta, W, mu, Y0, C)
        clock.evaluating += time.perf_counter() - start
        if Y0 is not None:  # the validation set, after an iteration or epoch
            curve.append((clock.training_s(), float(value), self.network.n_steps))
            if curve[-1][0] >= budget:
                raise BudgetSpent
        return value

    LearningProblem.accuracy = timed_accuracy
    try:
        yield
    except BudgetSpent:
        pass
    finally:
        LearningProblem.accuracy = accuracy


class Experiment:
    """The data, settings and initial weights shared by the methods."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ocdl.experiments import load_data, paper_settings

        self.args = args
        self.settings = paper_settings(
            "mnist", args.stepper, train_size=args.train_size, val_size=args.val_size,
            hessian_batch_size=args.hessian_batch_size, max_layers=args.max_layers, dtype=args.dtype,
            device=args.device, seed=args.seed, data_dir=args.data_dir,
        )
        self.data = load_data(self.settings)
        # the Adams: all layers from the start
        self.finest = self.settings.replace(first_layers=args.max_layers)

    def arrays(self):
        """Widened training and validation images and their labels, on the host."""
        from ocdl.experiments.data import widen

        d = self.data
        return widen(d.Y_train, self.finest), d.C_train, widen(d.Y_val, self.finest), d.C_val

    def finest_problem(self):
        """ocdl's learning problem with ``max_layers`` layers, the validation pair, initial weights: on the device."""
        from ocdl.backend import to_device
        from ocdl.experiments.model import build_problem, initial_parameters

        Y, C, Yv, Cv = (to_device(x, self.args.device) for x in self.arrays())
        problem = build_problem(self.finest, Y, C, self.data.n_classes)
        theta0 = to_device(initial_parameters(self.finest, problem.network), self.args.device)
        return problem, (Yv, Cv), theta0


def run_bcd(exp: Experiment) -> dict:
    from ocdl.experiments import train

    curve = []
    with ocdl_curve(curve, exp.args.budget):
        train(exp.settings, exp.data, progress=False)
    return {"curve": curve}


def run_ocdl_adam(exp: Experiment, learning_rate: float, epochs: int, budget: float) -> dict:
    from ocdl.solvers import Adam

    problem, validation, theta0 = exp.finest_problem()
    curve = []
    solver = Adam(max_epochs=epochs, batch_size=exp.args.batch_size, learning_rate=learning_rate)
    with ocdl_curve(curve, budget):
        solver.minimize(problem, theta0, validation=validation, rng=exp.args.seed, progress=False)
    return {"curve": curve}


def run_torch_adam(exp: Experiment, learning_rate: float, epochs: int, budget: float) -> dict:
    """``torch.optim.Adam`` on the cross-entropy of the same network, one point per epoch."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_reference import TorchNetwork
    from workloads import Workload

    from ocdl.experiments.model import build_network, initial_parameters

    args, settings = exp.args, exp.finest
    device = "cuda" if args.device == "gpu" else "cpu"
    Y, C, Yv, Cv = exp.arrays()
    workload = Workload("MNIST", "the paper's MNIST network", n_examples=Y.shape[0], channels=settings.width,
                        height=28, image_width=28, n_steps=args.max_layers, final_time=settings.final_time)
    theta0 = initial_parameters(settings, build_network(settings, args.max_layers))
    net = TorchNetwork(workload, args.stepper, theta0, device).requires_grad_()
    dtype = net.Ks[0].dtype
    W = torch.zeros((Y.shape[1], exp.data.n_classes), dtype=dtype, device=device, requires_grad=True)
    mu = torch.zeros(exp.data.n_classes, dtype=dtype, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([*net.params, W, mu], lr=learning_rate)
    Y, Yv = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (Y, Yv))
    C, Cv = (torch.from_numpy(np.asarray(c, dtype=np.int64)).to(device) for c in (C, Cv))
    order_generator = torch.Generator().manual_seed(args.seed)

    def synchronize():
        if device == "cuda":
            torch.cuda.synchronize()

    def validation_accuracy() -> float:
        with torch.no_grad():
            correct = sum(int(((net(Yv[i:i + 1000]) @ W + mu).argmax(1) == Cv[i:i + 1000]).sum())
                          for i in range(0, Yv.shape[0], 1000))
        return correct / Yv.shape[0]

    curve, clock = [], Clock()
    for _ in range(epochs):
        order = torch.randperm(Y.shape[0], generator=order_generator).to(device)
        for start in range(0, Y.shape[0], args.batch_size):
            batch = order[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(Y[batch]) @ W + mu, C[batch])
            loss.backward()
            optimizer.step()
        synchronize()
        start = time.perf_counter()
        accuracy = validation_accuracy()
        clock.evaluating += time.perf_counter() - start
        curve.append((clock.training_s(), accuracy, args.max_layers))
        if curve[-1][0] >= budget or not math.isfinite(float(loss.detach())):
            break
    return {"curve": curve}


def summarise(curve: list, budget: float) -> dict:
    """Time to each threshold and the best validation accuracy within ``budget`` (JSON-ready)."""
    within = [point for point in curve if point[0] <= budget] or curve[:1]
    best = max(within, key=lambda point: point[1]) if within else None
    return {
        "curve": [{"time_s": t, "val_accuracy": a, "n_layers": n} for t, a, n in curve],
        "time_to_s": {f"{100 * q:g}%": next((t for t, a, _ in curve if a >= q), None) for q in THRESHOLDS},
        "best_val_accuracy": best[1] if best else None,
        "best_time_s": best[0] if best else None,
    }


def sweep(exp: Experiment, use_torch: bool) -> tuple[float, dict]:
    """The learning rate of the best validation accuracy after ``--sweep-epochs`` epochs, and every rate's."""
    found = {}
    for rate in exp.args.learning_rates:
        run = run_torch_adam if use_torch else run_ocdl_adam
        curve = run(exp, rate, exp.args.sweep_epochs, math.inf)["curve"]
        found[f"{rate:g}"] = max((a for _, a, _ in curve), default=float("nan"))
        print(f"# sweep ({'PyTorch' if use_torch else 'ocdl'} Adam, {exp.args.sweep_epochs} epochs): "
              f"learning rate {rate:g}: validation accuracy {found[f'{rate:g}']:.4f}", flush=True)
    best = max(exp.args.learning_rates, key=lambda rate: (found[f"{rate:g}"], -rate))
    return best, found


def plot(results: dict, title: str, path: str) -> None:
    """Validation accuracy against training seconds, one curve per method, the thresholds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method, rec in results.items():
        times = [p["time_s"] for p in rec["curve"]]
        ax.plot(times, [100 * p["val_accuracy"] for p in rec["curve"]], marker="o", markersize=3,
                label=LABELS[method])
    for q in THRESHOLDS:
        ax.axhline(100 * q, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("training time (s), evaluations excluded")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(bottom=max(0, min((100 * p["val_accuracy"] for r in results.values() for p in r["curve"]),
                                  default=0) - 5))
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    sys.path.insert(0, HERE)
    from common import limit_threads

    thread_setup = limit_threads(args.threads)
    if args.omp_wait_policy != "unset":  # before PyTorch starts its OpenMP threads
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    thread_setup["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY")
    import torch_reference
    from common import machine_info, versions

    torch_device = "cuda" if args.device == "gpu" else "cpu"
    have_torch = torch_reference.available(torch_device)
    if "torch" in args.methods and not have_torch:
        print(f"PyTorch is not installed or has no device {torch_device!r}: skipping the PyTorch side")
    if have_torch:
        import torch

        torch.set_num_threads(args.threads)
    methods = [m for m in args.methods if m != "torch" or have_torch]
    exp = Experiment(args)
    size = f"{args.train_size} training, {args.val_size} validation images"
    print(f"# MNIST, {args.stepper}, {size}, {args.dtype} on {args.device}, {args.budget:g} s per method", flush=True)

    rate, rates = sweep(exp, use_torch=have_torch) if {"adam", "torch"} & set(methods) else (None, {})
    results = {}
    for method in methods:
        if method == "bcd":
            run = run_bcd(exp)
        elif method == "adam":
            run = run_ocdl_adam(exp, rate, 10**6, args.budget)
        else:
            run = run_torch_adam(exp, rate, 10**6, args.budget)
        results[method] = summarise(run["curve"], args.budget)
        rec = results[method]
        reached = ", ".join(f"{q}: {'-' if t is None else f'{t:.1f} s'}" for q, t in rec["time_to_s"].items())
        print(f"{LABELS[method]:36s} best {100 * (rec['best_val_accuracy'] or 0):.2f}% at "
              f"{rec['best_time_s'] or 0:.1f} s; time to {reached}; {len(rec['curve'])} points", flush=True)

    machine = dict(machine_info(), thread_setup=thread_setup)
    record = {
        "benchmark": "time_to_accuracy",
        "size": "full" if args.full else "quick" if args.quick else "cpu subset",
        "settings": {"bcd": exp.settings.to_dict(), "adam": exp.finest.to_dict(), "batch_size": args.batch_size,
                     "budget_s": args.budget, "learning_rate": rate, "sweep": {"epochs": args.sweep_epochs,
                     "by": "PyTorch" if have_torch else "ocdl", "val_accuracy": rates}},
        "methods": results,
        "machine": machine,
        "versions": versions(("ocdl", "numpy", "scipy") + (("torch",) if have_torch else ())
                             + (("cupy",) if args.device == "gpu" else ())),
    }
    if have_torch and torch_device == "cuda":  # PyTorch's own setting: TF32 off in products, on in convolutions
        import gpu

        record["settings"]["torch_tf32"] = gpu.torch_tf32()
    if args.json:
        from ocdl.io import write_text

        write_text(args.json, json.dumps(record, indent=1, default=float) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, f"MNIST {args.stepper}, {size}, {args.dtype}, {args.device}: {machine['cpu']}", args.plot)
        print(f"drew {args.plot}")
    return record


if __name__ == "__main__":
    main()
