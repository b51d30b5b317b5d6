"""Shared helpers of the benchmarks: thread limits, timing, machine description.

Nothing here imports NumPy at module level: :func:`limit_threads` must run
before NumPy (and its BLAS) is first imported, or the BLAS thread pool is
already sized.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_threads(n: int) -> dict:
    """Set every BLAS/OpenMP thread variable to ``n`` (call before importing NumPy).

    Also applies ``threadpoolctl`` (a dependency of ocdl), which catches a
    BLAS that was already loaded. Returns what was done, for the record.
    """
    from threadpoolctl import threadpool_limits

    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    global _THREADPOOL_LIMITS  # keep the context alive for the whole run
    _THREADPOOL_LIMITS = threadpool_limits(limits=n)
    return {"env": {v: os.environ[v] for v in THREAD_ENV_VARS}, "threadpoolctl": n}


_THREADPOOL_LIMITS = None


def best_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
              synchronize: Callable[[], None] | None = None) -> float:
    """Best wall-clock time of ``repeats`` calls of ``fn`` after ``warmup`` calls.

    The minimum is the least disturbed run: on a shared machine every
    disturbance only adds time. ``synchronize`` (a GPU's) is called before the
    clock starts and inside the timed span after each call, which on a GPU
    returns before the work is done.
    """
    wait = synchronize or (lambda: None)
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        wait()
        t0 = time.perf_counter()
        fn()
        wait()
        best = min(best, time.perf_counter() - t0)
    return best


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _blas() -> str | None:
    try:
        import numpy as np

        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:  # older NumPy without mode="dicts"
        return None


def machine_info() -> dict:
    """CPU, cores, memory, OS, Python, BLAS and the load average at the time of the call."""
    from ocdl.backend import cpu_model  # here: this module imports no NumPy before limit_threads

    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "blas": _blas(),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


def versions(names=("ocdl", "numpy", "scipy", "torch")) -> dict:
    """Versions of the named packages (``None`` for those that do not import)."""
    out = {}
    for name in names:
        try:
            module = __import__(name)
        except ImportError:
            out[name] = None
            continue
        out[name] = getattr(module, "__version__", "unknown")
    return out


def write_records(records: list, path: str) -> None:
    """Write ``records`` to ``path`` as a JSON list, atomically (:func:`ocdl.io.write_text`), and say so."""
    from ocdl.io import write_text

    write_text(path, json.dumps(records, indent=1, default=float))
    print(f"wrote {len(records)} records to {path}")


def library_name(library: str, kernels: str | None) -> str:
    """A library of ``run.py``'s records as its table and figure name it: ``ocdl`` (with its fused kernels, the
    default), ``ocdl plain`` (without), ``torch``, ``torch-tf32``."""
    return library if kernels in (None, "fused") else f"{library} {kernels}"
