"""A small resumable training run for the crash tests of ``test_resume.py`` (run as a script).

Multilevel block coordinate descent on a small concentric-ellipses problem
(Verlet, 2 -> 4 -> 8 layers, 5 iterations per level, mini-batches, so that the
random draws matter), checkpointed to ``CHECKPOINT``; the final parameters go
to ``OUT`` (an ``ocdl-params`` file). On Ctrl-C it prints where the
checkpoint is, as the command line does, and exits with status 130.

Usage: ``python resume_worker.py CHECKPOINT OUT [--resume] [--every K] [--sleep S] [--die-in-write N]``

After every iteration it prints the number of iterations done (over all
levels) and waits ``--sleep S`` seconds (time for the test to interrupt);
``--die-in-write N`` kills the process with SIGKILL in the middle
of the ``N``-th checkpoint write, after half of the tree is in the temporary file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from ocdl.problems import concentric_ellipses
from ocdl.solvers import BlockCoordinateDescent, Checkpointing, multilevel
from ocdl.solvers.checkpoint import TrainingInterrupted

import ocdl
import ocdl.io
from ocdl.learning_problem import LearningProblem

OPTIONS = dict(max_layers=8, solver=BlockCoordinateDescent(max_iter=5, batch_size=60, hessian_batch_size=30), rng=3)


def build() -> tuple[LearningProblem, object, tuple]:
    """The problem, the initial parameters and the validation data."""
    data = concentric_ellipses(n_points=240, n_val=60, seed=1)
    net = ocdl.network("verlet", 2, 2, 5.0)
    problem = LearningProblem(net, ocdl.SoftmaxCrossEntropy(), data.Y_train, data.C_train)
    return problem, net.init_params(0, scale=0.5), (data.Y_val, data.C_val)


def die_in_write(n: int) -> None:
    """Make the ``n``-th checkpoint write kill the process halfway through the temporary file."""
    write_group = ocdl.io._write_group
    calls = [0]

    def dying(group, tree, compression):
        if group.name == "/":  # the top of a new file
            calls[0] += 1
            if calls[0] == n:
                items = list(tree.items())
                write_group(group, dict(items[: len(items) // 2]), compression)
                group.file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        write_group(group, tree, compression)

    ocdl.io._write_group = dying


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--die-in-write", type=int, default=0)
    args = parser.parse_args()
    if args.die_in_write:
        die_in_write(args.die_in_write)
    problem, theta0, validation = build()
    done = [0]

    def report(k, state):
        done[0] += 1
        print(done[0], flush=True)
        time.sleep(args.sleep)

    try:
        result = multilevel(
            problem, theta0, validation=validation, progress=False, callback=report,
            checkpoint=Checkpointing(args.checkpoint, every=args.every, resume=args.resume,
                                     settings={"worker": "resume_worker"}),
            **OPTIONS,
        )
    except TrainingInterrupted as interrupted:
        print(json.dumps({"level": interrupted.level, "iteration": interrupted.iteration}))
        print(f"interrupted; resume with --resume {interrupted.checkpoint}", file=sys.stderr)
        sys.exit(130)
    ocdl.io.save_params(args.out, *result.x)


if __name__ == "__main__":
    main()
