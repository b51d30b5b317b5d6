import os

import numpy as np
import pytest

if os.environ.get("OCDL_STANDIN_CUPY", "0") not in ("", "0"):  # the GPU tests on a CPU stand-in for CuPy
    # (tests/standin_cupy.py); OCDL_STANDIN_CUPY=0, as gpu_lib.sh sets for a real GPU, means the real CuPy
    import standin_cupy

    standin_cupy.install()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _can_run_kernels() -> bool:
    import standin_cupy

    return standin_cupy.can_run_kernels()


def _cupy_available() -> bool:
    from ocdl.backend import cupy_available

    return cupy_available()


@pytest.fixture(params=[
    pytest.param("standin", marks=pytest.mark.skipif(not _can_run_kernels(), reason="needs g++")),
    pytest.param("cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not _cupy_available(), reason="needs a GPU")]),
])
def device(request, monkeypatch):
    """The module the fused kernels run on (``test_kernels.py``, ``test_sweeps.py``): the stand-in, its kernels
    emulated on the CPU, or CuPy on a GPU."""
    if request.param == "standin":
        from standin_cupy import install

        return install(monkeypatch)
    import cupy

    return cupy


@pytest.fixture
def launches(monkeypatch):
    """The names of the fused kernels launched (per step and whole sweeps), in order."""
    from ocdl.kernels import compile as kernel_compile
    from ocdl.kernels import layer_steps, sweeps

    names: list[str] = []
    compiled = kernel_compile.function

    def counting(xp, name, kernel, *args, **kwargs):
        inner = compiled(xp, name, kernel, *args, **kwargs)

        def run(*a, **k):
            names.append(kernel)
            return inner(*a, **k)

        return run

    monkeypatch.setattr(layer_steps, "function", counting)
    monkeypatch.setattr(sweeps, "function", counting)
    return names



_MPI_TESTS: set[str] = set()
"""Node ids of the collected tests marked ``mpi`` (they run processes under ``mpiexec``)."""


def pytest_collection_modifyitems(items):
    _MPI_TESTS.update(item.nodeid for item in items if item.get_closest_marker("mpi"))


def pytest_terminal_summary(terminalreporter):
    """How many tests ran processes under ``mpiexec`` (marked ``mpi``; they skip without mpi4py)."""
    counts = {outcome: len({report.nodeid for report in terminalreporter.stats.get(outcome, [])
                            if report.nodeid in _MPI_TESTS})
              for outcome in ("passed", "failed", "skipped")}
    if any(counts.values()):
        terminalreporter.write_line(
            f"MPI tests (under mpiexec): {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped")
