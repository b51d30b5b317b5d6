import os

import numpy as np
import pytest

if os.environ.get("OCDL_STANDIN_CUPY"):  # the GPU tests on a CPU stand-in for CuPy (tests/standin_cupy.py)
    import standin_cupy

    standin_cupy.install()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)



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
