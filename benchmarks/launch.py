"""Start a script or module for the GPU session's shell scripts (``gpu_session.sh``, ``gpu_table1.sh``).

Usage::

    python benchmarks/launch.py -m ocdl train --problem mnist ...   # a module, as python -m would
    python benchmarks/launch.py benchmarks/run.py --device gpu ...   # a script

Two things the scripts need from every Python they start:

* **Ctrl-C from a time limit.** Each stage runs under ``timeout -s INT``:
  ``ocdl train`` then writes its last completed iteration and exits, to be
  continued with ``--resume``. A shell without job control starts background
  commands with SIGINT ignored, and Python keeps it ignored; here SIGINT
  raises ``KeyboardInterrupt`` whatever the parent did.
* **The stand-in for CuPy.** With ``OCDL_STANDIN_CUPY=1`` (the scripts'
  quick mode), ``tests/standin_cupy.py`` is installed as CuPy first, so that
  the GPU code paths (``--device gpu``) run on a machine without a GPU.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> None:
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        raise SystemExit("usage: python benchmarks/launch.py (-m MODULE | SCRIPT) [ARGS...]")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("OCDL_STANDIN_CUPY", "0") not in ("", "0"):
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        import standin_cupy

        standin_cupy.install()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
