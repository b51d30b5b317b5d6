"""Buffers with an owner (``ocdl._workspace``): an array is handed out again only after its owner gave it back."""

from __future__ import annotations

import pathlib
import threading

import numpy as np
import pytest

import ocdl
from ocdl._threads import in_parallel
from ocdl._workspace import BufferPool, Workspace, run_step, step_empty

SHAPE, F64 = (64, 8), np.dtype(np.float64)


def ids(arrays):
    return {id(a) for a in arrays}


def test_a_buffer_is_handed_out_again_only_after_its_owner_gave_it_back():
    pool = BufferPool()
    with Workspace(pool) as ws:
        first = ws.run(lambda: (step_empty(np.empty(0), SHAPE), step_empty(np.empty(0), SHAPE)))
        assert first[0] is not first[1] and ids(ws.arrays) == ids(first)  # the result's arrays stay owned
        assert pool.nbytes == 0
        # a step that keeps nothing of what it took gives it back at once ...
        dropped = []
        ws.run(lambda: dropped.append(step_empty(np.empty(0), SHAPE)))
        assert pool.nbytes == dropped[0].nbytes and ids(ws.arrays) == ids(first)
        # ... and the next step gets that array, not one the workspace still owns
        again = ws.run(lambda: step_empty(np.empty(0), SHAPE))
        assert again is dropped[0]
        assert ws.carry(lambda: first[1]) is first[1]  # first[0] and `again` are dead now
        assert ids(ws.arrays) == {id(first[1])}
        taken = [pool.take(SHAPE, F64) for _ in range(3)]
        assert ids(taken[:2]) == {id(first[0]), id(again)} and taken[2] is not first[1]
    assert pool.take(SHAPE, F64) is first[1]  # closing gave back the rest


def test_what_the_result_refers_to_through_views_and_containers_stays_owned():
    ws = Workspace(BufferPool())
    a, b, c = ws.run(lambda: tuple(step_empty(np.empty(0), SHAPE) for _ in range(3)))
    ws.carry(lambda: {"state": [a[:3].T], "other": (1.5, None, "x")})  # a view of a, inside a dict of a list
    assert ids(ws.arrays) == {id(a)}
    assert ws.pool.nbytes == b.nbytes + c.nbytes


def test_a_result_that_cannot_be_seen_into_keeps_every_buffer_of_its_step():
    class Opaque:
        def __init__(self, x):
            self.x = x

    ws = Workspace(BufferPool())
    result = ws.run(lambda: Opaque([step_empty(np.empty(0), SHAPE) for _ in range(2)]))
    assert ids(ws.arrays) == ids(result.x) and ws.pool.nbytes == 0
    ws.carry(lambda: result)
    assert ids(ws.arrays) == ids(result.x)
    assert ws.hand_over(result) is result and ws.arrays == []  # handed over: all of them


def test_hand_over_gives_the_caller_an_array_that_is_never_reused():
    pool = BufferPool()
    with Workspace(pool) as ws:
        kept, other = ws.run(lambda: (step_empty(np.empty(0), SHAPE), step_empty(np.empty(0), SHAPE)))
        assert ws.hand_over(kept) is kept
    assert pool.take(SHAPE, F64) is other
    assert pool.take(SHAPE, F64) is not kept and pool.nbytes == 0


def test_outside_a_step_step_empty_is_a_new_array_owned_by_the_caller():
    pool = BufferPool()
    ws = Workspace(pool)
    a = step_empty(np.empty(0), SHAPE)
    b = step_empty(np.empty((2, 3), np.float32))
    assert a.shape == SHAPE and b.shape == (2, 3) and b.dtype == np.float32
    assert ws.arrays == [] and pool.nbytes == 0
    assert run_step(lambda: step_empty(np.empty(0), (512, 512))).shape == (512, 512)  # the caller's


def test_bounds_of_a_pool():
    small = BufferPool(min_bytes=1024)
    ws = Workspace(small)
    x = ws.run(lambda: step_empty(np.empty(0), (8,)))  # 64 bytes: not pooled, not owned
    assert ws.arrays == [] and isinstance(x, np.ndarray)
    per_shape = BufferPool(max_per_shape=2)
    per_shape.give([np.empty(SHAPE) for _ in range(5)])
    assert per_shape.nbytes == 2 * np.empty(SHAPE).nbytes
    by_bytes = BufferPool(max_bytes=3 * 4096)
    by_bytes.give([np.empty(512) for _ in range(5)])
    assert by_bytes.nbytes == 3 * 4096
    by_bytes.replace([np.empty(7)])
    assert by_bytes.nbytes == 56
    by_bytes.clear()
    assert by_bytes.nbytes == 0


def test_threads_of_a_step_take_from_its_workspace_and_never_share_a_buffer():
    pool = BufferPool()
    n = 64

    def step():
        # in_parallel: the caller and ocdl's worker threads take buffers at the same time
        return in_parallel(lambda i: step_empty(np.empty(0), SHAPE), n, True)

    with Workspace(pool) as ws:
        for _ in range(3):
            arrays = ws.run(step)
            assert len(ids(arrays)) == n  # no buffer handed out twice
            assert ids(ws.arrays) == ids(arrays)  # every thread's buffer owned by the step's workspace
            ws.carry(tuple)
    assert pool.nbytes == n * arrays[0].nbytes


def test_concurrent_sweeps_on_one_pool_never_share_a_buffer():
    pool = BufferPool()
    held, errors = [], []

    def sweep():
        try:
            with Workspace(pool) as ws:
                for _ in range(200):
                    a = ws.carry(lambda: step_empty(np.empty(0), SHAPE))  # the previous one goes back
                    a.fill(threading.get_ident())
                    held.append(a)
                    assert (a == threading.get_ident()).all()
        except AssertionError as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_nothing_counts_references():
    root = pathlib.Path(ocdl.__file__).parent.parent
    sources = [*(root / "ocdl").rglob("*.py"), *(root / "solvers").rglob("*.py"), *(root / "problems").rglob("*.py")]
    assert sources
    assert [str(p) for p in sources if "getrefcount" in p.read_text()] == []


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_store_all_pool_holds_one_trajectory_and_the_memory_module_holds_policies_only(kind):
    import ocdl.memory as memory

    net = ocdl.network(kind, 4, 5, 1.0)
    theta = net.init_params(0)
    Y0 = np.random.default_rng(0).standard_normal((50, 4))
    pool = net.memory._pool
    sizes = []
    for _ in range(3):
        with net.trajectory(theta, Y0) as traj:
            owned = sum(a.nbytes for a in traj._workspace.arrays)
            final = sum(x.nbytes for x in traj.final_state if id(x) in ids(traj._workspace.arrays))
        sizes.append(pool.nbytes)
        assert pool.nbytes == owned - final  # this trajectory's arrays, its final state excepted
    assert sizes[0] == sizes[1] == sizes[2] > 0
    assert not any(hasattr(memory, name) for name in ("step_empty", "temporary_empty", "trajectory_empty"))


def test_a_kernel_takes_its_temporaries_from_the_shared_pool_and_gives_them_back_when_it_returns():
    from ocdl._workspace import clear_temporaries, run_kernel
    from ocdl._workspace import temporaries as shared

    clear_temporaries()
    big = (512, 512)  # 2 MiB: pooled by the shared pool of temporaries
    temporaries = []

    def kernel(out):
        temporaries.append(step_empty(out))  # dies with the kernel
        temporaries[-1][...] = 1.0
        out[...] = temporaries[-1]
        return step_empty(out)  # returned: passes to the step

    def step():
        out = step_empty(np.empty(0), big)
        return out, run_kernel(kernel, out), run_kernel(kernel, out)

    ws = Workspace(BufferPool())
    out, first, second = ws.run(step)
    assert temporaries[1] is temporaries[0]  # the second kernel reused the first one's temporary
    assert len(ids([out, first, second, temporaries[0]])) == 4
    assert ids(ws.arrays) == {id(out), id(first), id(second)} and (out == 1.0).all()
    assert shared.nbytes == out.nbytes and ws.pool.nbytes == 0
    assert run_kernel(lambda: step_empty(np.empty(0), big)).shape == big  # outside a step: a plain call
    assert shared.nbytes == out.nbytes
    clear_temporaries()
