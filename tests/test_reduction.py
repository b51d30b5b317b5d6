"""The reduction's contract in one process, and ocdl.distributed where no MPI is needed (missing mpi4py,
the split of the rows, the GPU of a rank). The runs under mpiexec are in tests/test_distributed.py."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import ocdl
from ocdl import cli, distributed
from ocdl.distributed import launched_size, select_gpu, share, share_rows, world
from ocdl.reduction import Reduction


class Worker(Reduction):
    """Worker ``rank`` of ``size`` for the functions that only read ``rank`` and ``size`` and gather equal values."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = rank, size

    def gather(self, value):
        return [value] * self.size


def test_the_local_reduction_is_one_worker():
    red = Reduction()
    assert (red.rank, red.size) == (0, 1)
    x = np.arange(3.0)
    assert red.sum(x) is x and red.mean(x, 3) is x and red.gather(x) == [x]
    assert red.partition(7) == (0, 7)
    red.check_same("settings", {"seed": 0})
    with pytest.raises(FloatingPointError, match="as it is"), red.errors():
        raise FloatingPointError("as it is")
    with pytest.raises(ValueError, match="a mean over no examples"):  # as MPIReduction's when every count is 0
        red.mean(x, 0)
    with pytest.raises(ValueError, match="count must be an integer >= 0, got 2.0"):
        red.mean(x, 2.0)


def test_rows_are_shared_in_rank_order_sizes_differing_by_one():
    shares = [share_rows(10, Worker(rank, 3)) for rank in range(3)]
    assert shares == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert share_rows(10, Reduction()) == slice(0, 10)
    with pytest.raises(ValueError, match="cannot split 2 examples over 3 workers"):
        share_rows(2, Worker(0, 3))
    Y, C = np.arange(20.0).reshape(10, 2), np.arange(10)
    Y1, C1 = share(Worker(1, 3), Y, C)
    np.testing.assert_array_equal(C1, [3, 4, 5])
    np.testing.assert_array_equal(Y1, Y[3:6])
    with pytest.raises(ValueError, match="one number of rows"):
        share(Reduction(), Y, C[:5])


def test_workers_that_disagree_are_named():
    class Two(Worker):
        def gather(self, value):
            return [value, dict(value, alpha=2)]

    with pytest.raises(ValueError, match=r"the 2 workers hold different settings \(alpha: 2 on rank 1, 1 on rank 0\)"):
        Two(0, 2).check_same("settings", {"alpha": 1, "seed": 0})


def test_split_class_labels_need_n_classes():
    Y0, C = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="n_classes is required with class-index labels split over workers"):
        ocdl.LearningProblem(ocdl.network("resnet", 2, 2, 1.0), ocdl.SoftmaxCrossEntropy(), Y0, C,
                             reduction=Worker(0, 2))


def test_one_process_without_mpiexec_does_not_start_mpi(monkeypatch):
    for name in distributed.LAUNCHER_SIZES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # importing it would fail
    assert launched_size() == 1
    assert type(world()) is Reduction


def test_mpiexec_without_mpi4py_is_a_one_line_error_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    with pytest.raises(ImportError, match=r'pip install "ocdl\[mpi\]"'):
        world()
    assert cli.main(["train", "--problem", "peaks", "--stepper", "resnet"]) == 1
    assert capsys.readouterr().err == (
        'ocdl: error: training on several processes needs mpi4py and an MPI library: pip install "ocdl[mpi]"\n')


def test_rank_r_uses_gpu_r_mod_the_visible_gpus(monkeypatch):
    used = []
    cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 3),
        Device=lambda number: types.SimpleNamespace(use=lambda: used.append(number)),
    )
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda))
    assert [select_gpu(rank) for rank in range(5)] == [0, 1, 2, 0, 1]
    assert used == [0, 1, 2, 0, 1]


def test_on_rank0_reads_once_and_passes_errors_on():
    reduction, calls = Reduction(), []
    assert reduction.on_rank0(lambda: calls.append(1) or {"settings": 3}) == {"settings": 3}
    assert calls == [1]

    def broken():
        raise FileNotFoundError("no checkpoint")

    with pytest.raises(FileNotFoundError, match="no checkpoint"), reduction.errors():
        reduction.on_rank0(broken)
