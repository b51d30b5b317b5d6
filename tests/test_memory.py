"""Memory policies: every derivative product under every policy agrees with StoreAll."""

from __future__ import annotations

import gc
import heapq
import json
import os
import tempfile
import tracemalloc
from functools import cache
from math import comb
from pathlib import Path

import h5py
import numpy as np
import pytest

import ocdl
from ocdl.memory import (
    HDF5,
    Recompute,
    Reversible,
    StoreAll,
    binomial_schedule,
    optimal_recomputations,
)

N_STEPS, WIDTH, SAMPLES, FINAL_TIME = 7, 3, 5, 1.5
REVERSIBLE_KINDS = tuple(name for name, kind in ocdl.KINDS.items() if kind.reversible)


def make(kind, memory=None, n_steps=N_STEPS, dtype=np.float64):
    """A small network, its parameters, data and directions (the same for every policy)."""
    net = ocdl.network(kind, WIDTH, n_steps, FINAL_TIME, memory=memory)
    rng = np.random.default_rng(7)
    theta = net.init_params(rng, dtype=dtype)
    Y0 = rng.standard_normal((SAMPLES, WIDTH)).astype(dtype)
    dtheta = rng.standard_normal(net.n_params).astype(dtype)
    dY0 = rng.standard_normal(Y0.shape).astype(dtype)
    W = rng.standard_normal(Y0.shape).astype(dtype)
    return net, theta, Y0, dtheta, dY0, W


def products(net, theta, Y0, dtheta, dY0, W):
    """jvp, vjp (theta and Y0), Gauss-Newton J^T J v, twice each, from one trajectory."""
    out = []
    with net.trajectory(theta, Y0) as traj:
        for _ in range(2):  # repeated sweeps of the same trajectory
            g, gY0 = net.vjp(theta, Y0, W, trajectory=traj, return_dY0=True)
            dY = net.jvp(theta, Y0, dtheta, dY0=dY0, trajectory=traj)
            J = net.jacobian(theta, Y0, trajectory=traj)
            gn = J.rmatvec(J.matvec(dtheta))
            out.append({"final": traj.final_state, "vjp": g, "vjp_Y0": gY0, "jvp": dY, "gn": gn})
    return out


def compare(kind, memory, rtol, dtype=np.float64):
    """All products under ``memory`` within ``rtol`` (relative to the largest entry) of StoreAll's."""
    ref = products(*make(kind, dtype=dtype))
    got = products(*make(kind, memory, dtype=dtype))
    for a, b in zip(got, ref):
        for key in ("vjp", "vjp_Y0", "jvp", "gn"):
            assert a[key].dtype == dtype
            err = np.max(np.abs(a[key] - b[key])) / np.max(np.abs(b[key]))
            assert err <= rtol, (key, err)
        for x, y in zip(a["final"], b["final"]):
            assert np.max(np.abs(x - y)) <= rtol * np.max(np.abs(y))


# -- agreement with StoreAll ---------------------------------------------------


@pytest.mark.parametrize("kind", ocdl.KINDS)
@pytest.mark.parametrize(
    "memory",
    [
        lambda d: Recompute(1),
        lambda d: Recompute(3),
        lambda d: Recompute(50),
        lambda d: HDF5(path=d),
        lambda d: HDF5(path=d, compression="gzip", chunk_steps=3),
        lambda d: HDF5(path=d, compression="lzf", chunk_steps=N_STEPS + 2),
    ],
    ids=["recompute1", "recompute3", "recompute50", "hdf5", "hdf5-gzip-3", "hdf5-lzf-big"],
)
def test_policies_agree_with_store_all(kind, memory, tmp_path):
    compare(kind, memory(tmp_path), 1e-12)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", REVERSIBLE_KINDS)
def test_reversible_agrees_with_store_all(kind):
    compare(kind, Reversible(), 1e-8)


@pytest.mark.parametrize("kind", [k for k in ocdl.KINDS if k not in REVERSIBLE_KINDS])
def test_reversible_rejects_irreversible_steppers(kind):
    net, theta, Y0, *_ = make(kind, Reversible())
    with pytest.raises(ValueError, match=r"not.*StoreAll\(\).*Recompute") as info:
        net.trajectory(theta, Y0)
    assert type(net.stepper).__name__ in str(info.value)


class DampedVerlet(ocdl.LayerStepper):
    r"""Y'' = sigma(Y K + b) - gamma Y' as velocity Verlet between exact damping half-steps, state (Y, V):
    V1 = e V, V2 = V1 + h/2 F(Y), Y+ = Y + h V2, V+ = e (V2 + h/2 F(Y+)), e = exp(-gamma h / 2). Exactly
    invertible, but the reversal multiplies round-off by about exp(gamma T) (the forward contracts V)."""

    reversible = True

    def __init__(self, layer, gamma):
        super().__init__(layer)
        self.gamma = gamma

    def init(self, Y0):
        return (Y0, np.zeros_like(Y0))

    def init_vjp(self, lam):
        return lam[0]

    def step(self, state, theta, h):
        Y, V = state
        e = np.exp(-0.5 * self.gamma * h)
        V2, Da = self.layer.step(theta, Y, e * V, 0.5 * h)
        Y_next = Y + h * V2
        V3, Db = self.layer.step(theta, Y_next, V2, 0.5 * h)
        return (Y_next, e * V3), (Y_next, Da, Db)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y, _), (dY, dV), (Y_next, Da, Db) = state, dstate, cache
        e = np.exp(-0.5 * self.gamma * h)
        dV2 = self.layer.step_jvp(theta, Y, Da, dY, dtheta, e * dV)
        dY_next = dY + h * dV2
        return (dY_next, e * self.layer.step_jvp(theta, Y_next, Db, dY_next, dtheta, dV2))

    def step_vjp(self, state, theta, h, lam, cache):
        (Y, _), (LY, LV), (Y_next, Da, Db) = state, lam, cache
        e = np.exp(-0.5 * self.gamma * h)
        lam_Y_next, g2 = self.layer.step_vjp(theta, Y_next, Db, e * LV, LY)
        lam_V2 = e * LV + h * lam_Y_next
        lam_Y, g1 = self.layer.step_vjp(theta, Y, Da, lam_V2, lam_Y_next)
        return (lam_Y, e * lam_V2), g1 + g2

    def reverse_step(self, state_next, theta, h):
        Y_next, V_next = state_next
        e = np.exp(-0.5 * self.gamma * h)
        V2, Db = self.layer.step(theta, Y_next, V_next / e, -0.5 * h)
        Y = Y_next - h * V2
        V1, Da = self.layer.step(theta, Y, V2, -0.5 * h)
        return (Y, V1 / e), (Y_next, -Da, -Db)


def test_reversible_refuses_a_reversal_that_amplifies_round_off():
    """gamma T = 80: the rebuilt x_0 is off by orders of magnitude, and the gradient was wrong by about 100%
    in silence; gamma T = 8: the reversal stays at round-off and the gradient agrees with StoreAll."""
    Y0 = np.random.default_rng(0).standard_normal((20, 3))
    layer = ocdl.Layer(ocdl.Dense(3))
    assert ocdl.check_stepper(DampedVerlet(layer, 0.5), Y0[:4]).passed  # the stepper and its reversal are right
    for gamma, final_time in ((0.5, 16.0), (5.0, 16.0)):
        stored = ocdl.Network(DampedVerlet(layer, gamma), 64, final_time)
        theta = stored.init_params(rng=0)
        lam = stored.forward(theta, Y0)
        gradient = stored.vjp(theta, Y0, lam)
        reversed_net = ocdl.Network(DampedVerlet(layer, gamma), 64, final_time, memory=Reversible())
        with reversed_net.trajectory(theta, Y0) as trajectory:
            if gamma * final_time < 10:
                assert trajectory.drift is None  # before a reversal
                np.testing.assert_allclose(reversed_net.vjp(theta, Y0, lam, trajectory=trajectory), gradient,
                                           rtol=1e-10, atol=1e-12)
                assert trajectory.drift < 1e-10
                continue
            with pytest.raises(ocdl.PropagationError, match=r"DampedVerlet.reverse_step drifted .* StoreAll\(\)"):
                reversed_net.vjp(theta, Y0, lam, trajectory=trajectory)
            assert trajectory.drift > 1.0
    report = ocdl.check_stepper(DampedVerlet(layer, 5.0), Y0[:4], h=0.25, n_steps=64)  # at the network's h and N
    assert [name for name, result in report.results.items() if not result.passed] == ["network: Reversible = stored"]
    assert "drifted" in str(report)


@pytest.mark.parametrize("kind", REVERSIBLE_KINDS)
def test_reversible_drift_of_the_built_in_steppers_is_round_off(kind):
    net, theta, Y0, *_ = make(kind, Reversible(), n_steps=256)
    with net.trajectory(theta, Y0) as trajectory:
        net.vjp(theta, Y0, Y0, trajectory=trajectory)
        assert trajectory.drift < 1e-11


@pytest.mark.parametrize("n_steps", [1, 2, 13])
def test_single_and_long_chains(n_steps, tmp_path):
    policies = [("rk4", Recompute(2)), ("resnet", HDF5(path=tmp_path, chunk_steps=4)), ("verlet", Reversible())]
    for kind, memory in policies:
        ref_net, theta, Y0, dtheta, dY0, W = make(kind, n_steps=n_steps)
        net = make(kind, memory, n_steps=n_steps)[0]
        np.testing.assert_allclose(net.vjp(theta, Y0, W), ref_net.vjp(theta, Y0, W), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(net.jvp(theta, Y0, dtheta), ref_net.jvp(theta, Y0, dtheta), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind,memory", [("rk4", "recompute"), ("leapfrog", "hdf5"), ("verlet", "reversible")])
def test_float32(kind, memory, tmp_path):
    policy = {"recompute": Recompute(2), "hdf5": HDF5(path=tmp_path), "reversible": Reversible()}[memory]
    compare(kind, policy, 1e-4 if memory == "reversible" else 1e-12, dtype=np.float32)
    if memory == "hdf5":
        net, theta, Y0, *_ = make(kind, HDF5(path=tmp_path / "f32.h5"), dtype=np.float32)
        net.trajectory(theta, Y0).close()
        with h5py.File(tmp_path / "f32.h5", "r") as f:
            assert f.attrs["dtype"] == "float32" and f["state_0"].dtype == np.float32


@pytest.mark.parametrize("memory", [Recompute(2), HDF5(chunk_steps=2), Reversible()], ids=repr)
def test_sweeps_interleaved_and_abandoned(memory):
    net, theta, Y0, dtheta, _, W = make("verlet", memory)
    ref = make("verlet")[0]
    want = ref.vjp(theta, Y0, W)
    with net.trajectory(theta, Y0) as traj:
        next(iter(traj.steps()))
        partial = traj.reversed_steps()
        assert next(partial)[0] == N_STEPS - 1  # abandoned after one step
        del partial
        np.testing.assert_allclose(net.vjp(theta, Y0, W, trajectory=traj), want, rtol=1e-8, atol=1e-12)
        assert [j for j, *_ in traj.reversed_steps()] == list(reversed(range(N_STEPS)))
        assert [j for j, *_ in traj.steps()] == list(range(N_STEPS))
        np.testing.assert_allclose(net.vjp(theta, Y0, W, trajectory=traj), want, rtol=1e-8, atol=1e-12)


def traced_gradient_peak(kind, memory, n_steps):
    """tracemalloc peak of one gradient, in units of one state (s = 2000 examples of width 4)."""
    net = ocdl.network(kind, 4, n_steps, 1.0, memory=memory)
    theta = net.init_params(0)
    Y0 = np.random.default_rng(0).standard_normal((2000, 4))
    tracemalloc.start()
    try:
        with net.trajectory(theta, Y0) as traj:
            net.vjp(theta, Y0, net.stepper.output(traj.final_state), trajectory=traj)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / sum(x.nbytes for x in net.stepper.init(Y0))


@pytest.mark.parametrize(
    "kind,memory",
    [("verlet", lambda d: Reversible()), ("resnet", lambda d: HDF5(path=d)), ("rk4", lambda d: Recompute(4))],
    ids=["reversible", "hdf5", "recompute4"],
)
def test_memory_independent_of_n_steps(kind, memory, tmp_path):
    # O(1) states (4 checkpoints for Recompute); the O(N) parameters, gradient, schedule are < 3 states
    short, long = (traced_gradient_peak(kind, memory(tmp_path), n) for n in (32, 128))
    assert long < short + 3, (short, long)
    assert traced_gradient_peak(kind, StoreAll(), 128) > 128  # store-all: one state per step at least


# -- the binomial schedule -----------------------------------------------------


@cache
def dp_optimum(length, checkpoints):
    """Brute-force dynamic programme: fewest forward steps to reverse ``length`` steps."""
    if length == 1:
        return 0
    if checkpoints == 1:
        return length * (length - 1) // 2
    return min(m + dp_optimum(length - m, checkpoints - 1) + dp_optimum(m, checkpoints) for m in range(1, length))


def search_optimum(length, checkpoints):
    """Fewest forward steps over *all* schedules (Dijkstra on held checkpoints, working state, next step)."""
    start = (frozenset([0]), 0, length)  # checkpoints, working position, steps not yet served
    dist, queue = {start: 0}, [(0, start)]
    while queue:
        cost, node = heapq.heappop(queue)
        if cost > dist[node]:
            continue
        held, work, end = node
        if end == 0:
            return cost
        moves = [((held, p, end), 0) for p in held]  # restore
        if work < end - 1:
            moves.append(((held, work + 1, end), 1))  # advance
        if work == end - 1:  # serve, drop checkpoints that are no longer needed
            moves.append(((frozenset(p for p in held if p < work or p == 0), work, end - 1), 0))
        if work not in held and len(held) < checkpoints:
            moves.append(((held | {work}, work, end), 0))  # store
        moves += [((held - {p}, work, end), 0) for p in held if p != 0]  # free
        for nxt, step in moves:
            if cost + step < dist.get(nxt, float("inf")):
                dist[nxt] = cost + step
                heapq.heappush(queue, (cost + step, nxt))
    raise AssertionError("unreachable")


def simulate(actions, n_steps):
    """Execute a schedule on positions; return (advanced steps, served order, most checkpoints held)."""
    held, work, served, advanced, most = set(), 0, [], 0, 0
    for action in actions:
        kind, j = action[0], action[1]
        if kind == "store":
            assert j == work and j not in held
            held.add(j)
        elif kind == "advance":
            assert j == work and j < action[2] < n_steps
            advanced += action[2] - j
            work = action[2]
        elif kind == "restore":
            assert j in held
            work = j
        elif kind == "free":
            assert j in held and j != 0 and served[-1] == j
            held.remove(j)
        else:
            assert kind == "reverse" and j == work
            served.append(j)
        most = max(most, len(held))
    return advanced, served, most


@pytest.mark.parametrize("checkpoints", [1, 2, 3, 4, 6])
def test_binomial_schedule(checkpoints):
    for n_steps in range(1, 61):
        advanced, served, most = simulate(binomial_schedule(n_steps, checkpoints), n_steps)
        assert served == list(reversed(range(n_steps)))
        assert most <= checkpoints
        assert advanced == dp_optimum(n_steps, checkpoints) == optimal_recomputations(n_steps, checkpoints)


def test_binomial_optimum_against_exhaustive_search():
    for checkpoints in (1, 2, 3):
        for n_steps in range(1, 9):
            assert search_optimum(n_steps, checkpoints) == dp_optimum(n_steps, checkpoints), (n_steps, checkpoints)


def test_binomial_closed_form():
    # t(l, c) = r l - beta(c + 1, r - 1) for beta(c, r - 1) < l <= beta(c, r), beta(c, r) = binom(c + r, c)
    for c in (2, 3, 5):
        for r in (1, 2, 3):
            for length in (comb(c + r - 1, c) + 1, comb(c + r, c)):
                assert optimal_recomputations(length, c) == r * length - comb(c + r, c + 1) == dp_optimum(length, c)
    assert optimal_recomputations(1024, 32) == 3 * 1024 - comb(35, 33)


def test_binomial_schedule_validates():
    with pytest.raises(ValueError, match="n_checkpoints"):
        binomial_schedule(5, 0)
    with pytest.raises(ValueError, match="n_steps"):
        binomial_schedule(0, 2)
    with pytest.raises(ValueError, match="n_checkpoints"):
        Recompute(0)


def count_steps(stepper, fail_after=None) -> list:
    """Patch ``stepper.step`` and ``stepper.advance`` to log each step (and raise Boom after ``fail_after``)."""
    calls = []

    def counted(method):
        def wrapper(*args):
            calls.append(method.__name__)
            if fail_after is not None and len(calls) > fail_after:
                raise Boom
            return method(*args)

        return wrapper

    cls = type(stepper)
    stepper.step = counted(cls.step.__get__(stepper))
    if cls.advance is not ocdl.Stepper.advance:  # the default advance calls the (patched) step
        stepper.advance = counted(cls.advance.__get__(stepper))
    return calls


def test_recompute_step_counts():
    n_steps, checkpoints = 20, 3
    net, theta, Y0, dtheta, _, W = make("resnet", Recompute(checkpoints), n_steps=n_steps)
    calls = count_steps(net.stepper)
    t = optimal_recomputations(n_steps, checkpoints)
    traj = net.trajectory(theta, Y0)
    assert len(calls) == n_steps  # the forward propagation is the schedule's first sweep
    for expected in (t - (n_steps - 1) + n_steps, t + n_steps):  # first reversal resumes it, later ones replay
        calls.clear()
        net.vjp(theta, Y0, W, trajectory=traj)
        assert len(calls) == expected
    calls.clear()
    net.jvp(theta, Y0, dtheta, trajectory=traj)
    assert len(calls) == n_steps


# -- HDF5 ----------------------------------------------------------------------


def test_hdf5_file_layout(tmp_path):
    path = tmp_path / "trajectory.h5"
    net, theta, Y0, *_ = make("verlet", HDF5(path=path, compression="gzip", chunk_steps=2))
    ref = make("verlet", StoreAll())[0].trajectory(theta, Y0)
    with net.trajectory(theta, Y0) as traj:
        assert traj.path == str(path) and not traj.temporary
        assert traj.file.attrs["format"] == "ocdl-trajectory"
    assert path.exists()  # a named file is kept for inspection
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["format"] == "ocdl-trajectory" and a["format_version"] == 1
        assert a["ocdl_version"] == ocdl.__version__
        assert a["stepper"] == "Verlet" and a["stepper_repr"] == repr(net.stepper)
        assert a["n_steps"] == N_STEPS and a["h"] == pytest.approx(FINAL_TIME / N_STEPS)
        assert a["dtype"] == "float64" and a["n_members"] == 2
        assert json.loads(a["shapes"]) == [[SAMPLES, WIDTH], [SAMPLES, WIDTH]]
        for k in range(2):
            ds = f[f"state_{k}"]
            assert ds.shape == (N_STEPS, SAMPLES, WIDTH) and ds.chunks == (2, SAMPLES, WIDTH)
            assert ds.compression == "gzip"
            for j, state, _ in ref.steps():
                np.testing.assert_array_equal(ds[j], state[k])
            np.testing.assert_array_equal(f[f"final_state_{k}"][()], ref.final_state[k])


def test_hdf5_uncompressed_file_readable(tmp_path):
    path = tmp_path / "raw.h5"
    net, theta, Y0, *_ = make("leapfrog", HDF5(path=path, chunk_steps=3))
    ref = make("leapfrog")[0].trajectory(theta, Y0)
    net.trajectory(theta, Y0).close()
    with h5py.File(path, "r") as f:
        for j, state, _ in ref.steps():
            for k in range(2):
                np.testing.assert_array_equal(f[f"state_{k}"][j], state[k])


def test_hdf5_temporary_file_removed_on_close(tmp_path):
    net, theta, Y0, *_ = make("resnet", HDF5(path=tmp_path))
    traj = net.trajectory(theta, Y0)
    assert traj.temporary and os.path.exists(traj.path)
    assert os.path.dirname(os.path.dirname(traj.path)) == str(tmp_path)
    traj.close()
    traj.close()  # idempotent
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="closed"):
        next(traj.reversed_steps())


def test_hdf5_default_directory_is_tempdir():
    traj = make("resnet", HDF5())[0].trajectory(*make("resnet")[1:3])
    assert traj.path.startswith(tempfile.gettempdir())
    traj.close()
    assert not os.path.exists(os.path.dirname(traj.path))


class Boom(RuntimeError):
    pass


def test_hdf5_removed_after_exception_in_sweep(tmp_path):
    net, theta, Y0, _, _, W = make("verlet", HDF5(path=tmp_path))
    with pytest.raises(Boom), net.trajectory(theta, Y0) as traj:
        for j, _, _ in traj.reversed_steps():
            if j == N_STEPS // 2:
                raise Boom
    assert os.listdir(tmp_path) == []

    # a trajectory the Network creates itself: the step fails in the middle of the adjoint sweep
    count_steps(net.stepper, fail_after=N_STEPS + 2)
    try:
        net.vjp(theta, Y0, W)
    except Boom:
        pass
    gc.collect()
    assert os.listdir(tmp_path) == []

    # and in the middle of the forward sweep
    count_steps(net.stepper, fail_after=3)
    with pytest.raises(Boom):
        net.trajectory(theta, Y0)
    assert os.listdir(tmp_path) == []


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_hdf5_removed_after_blow_up(tmp_path):
    net = ocdl.network("resnet", WIDTH, N_STEPS, FINAL_TIME, activation="identity", memory=HDF5(path=tmp_path))
    theta = np.full(net.n_params, 1e200)
    with pytest.raises(ocdl.PropagationError):
        net.trajectory(theta, np.ones((SAMPLES, WIDTH)))
    assert os.listdir(tmp_path) == []


def test_hdf5_validates():
    with pytest.raises(ValueError, match="compression"):
        HDF5(compression="zstd")
    with pytest.raises(ValueError, match="chunk_steps"):
        HDF5(chunk_steps=0)
    net, theta, Y0, *_ = make("resnet", HDF5())
    with pytest.raises(ValueError, match=r"HDF5 memory needs states with entries, got a state member of shape "
                                         r"\(0, 3\) \(no example\?\)"):  # was h5py's "chunk dimensions"
        net.trajectory(theta, Y0[:0])


def test_hdf5_chunks_stay_within_the_chunk_limit(tmp_path, monkeypatch):
    """HDF5 refuses chunks of 4 GiB or more (60,000 MNIST images of 6 channels in float32 are 1.1 GB a state,
    4.5 GB for chunk_steps = 4): a chunk holds fewer steps, and a state beyond the limit is named."""
    import ocdl.memory.hdf5 as hdf5

    net, theta, Y0, dtheta, dY0, W = make("verlet", HDF5(path=tmp_path / "t.h5", chunk_steps=4))
    state_bytes = Y0.nbytes  # both of Verlet's members are s x n
    monkeypatch.setattr(hdf5, "MAX_CHUNK_BYTES", 2 * state_bytes + 1)  # two steps a chunk
    with net.trajectory(theta, Y0) as traj:
        assert [ds.chunks[0] for ds in traj._datasets] == [2, 2]
        reference = make("verlet")[0]
        np.testing.assert_allclose(net.vjp(theta, Y0, W, trajectory=traj), reference.vjp(theta, Y0, W),
                                   rtol=1e-14)
    monkeypatch.setattr(hdf5, "MAX_CHUNK_BYTES", state_bytes - 1)
    with pytest.raises(ValueError, match=rf"one chunk of at most 4 GiB, got one of {state_bytes:,} bytes"):
        net.trajectory(theta, Y0)


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_a_closed_or_foreign_trajectory_is_refused(kind):
    """The sweeps over a closed StoreAll trajectory returned zeros (jvp) or failed with an IndexError (vjp);
    over another network's trajectory, the steps it lacks were never written (np.empty) or left out."""
    net, theta, Y0, dtheta, dY0, W = make(kind)
    with net.trajectory(theta, Y0) as traj:
        pass
    message = rf"trajectory serves 0 steps, this network has {N_STEPS}: pass the open trajectory"
    with pytest.raises(ValueError, match=message):
        net.jvp(theta, Y0, dtheta, trajectory=traj)
    with pytest.raises(ValueError, match=message):
        net.vjp(theta, Y0, W, trajectory=traj)
    short = net.with_steps(N_STEPS - 3)
    with short.trajectory(theta[: short.n_params], Y0) as traj, pytest.raises(
            ValueError, match=rf"trajectory serves {N_STEPS - 3} steps, this network has {N_STEPS}"):
        net.vjp(theta, Y0, W, trajectory=traj)
    with pytest.raises(TypeError, match="trajectory must be an ocdl Trajectory"):
        net.jvp(theta, Y0, dtheta, trajectory="states")
    with net.trajectory(theta, Y0) as traj, pytest.raises(
            ValueError, match=rf"trajectory is of {SAMPLES} examples, Y0 has 2"):  # a broadcasting error before
        net.jvp(theta, Y0[:2], dtheta, trajectory=traj)


def test_another_steppers_trajectory_is_refused_naming_the_states():
    """A Verlet network's trajectory (states Y, Z) given to a ResNet network of the same width failed with
    "too many values to unpack", and the other way round with an IndexError."""
    Y0 = np.random.default_rng(0).standard_normal((5, 3))
    verlet, resnet = ocdl.network("verlet", 3, 4, 1.0), ocdl.network("resnet", 3, 4, 1.0)
    theta_v, theta_r = verlet.init_params(0), resnet.init_params(0)
    with verlet.trajectory(theta_v, Y0) as traj:
        with pytest.raises(ValueError, match=r"widths \[\(3,\), \(3,\)\], this network's ResNet has \[\(3,\)\]"):
            resnet.vjp(theta_r, Y0, Y0, trajectory=traj)
        with pytest.raises(ValueError, match="pass the trajectory of this network's forward sweep"):
            resnet.jvp(theta_r, Y0, theta_r, trajectory=traj)
    with resnet.trajectory(theta_r, Y0) as traj, pytest.raises(ValueError, match="this network's Verlet has"):
        verlet.vjp(theta_v, Y0, Y0, trajectory=traj)


def test_reprs():
    assert repr(Recompute(4)) == "Recompute(n_checkpoints=4)"
    assert repr(Reversible()) == "Reversible()"
    assert repr(HDF5()) == "HDF5(path=None, compression=None, chunk_steps=1)"


# -- reused buffers: every one has an owner (ocdl._workspace) ---------------------------
# Sizes of at least 1 MiB per array, so that the derivative sweeps' temporaries are pooled too.
WIDE, ROWS = 128, 1024


def wide(kind, memory=None, n_steps=4):
    net = ocdl.network(kind, WIDE, n_steps, 1.0, memory=memory)
    rng = np.random.default_rng(11)
    thetas = [net.init_params(rng, scale=2.0) for _ in range(3)]
    Y0 = rng.standard_normal((ROWS, WIDE))
    return net, thetas, Y0


def arrays_of(traj):
    """Every array of a trajectory's states, caches and final state."""
    out = list(traj.final_state)
    for _, state, kept in traj.steps():
        out += list(state) + [c for c in (kept if isinstance(kept, tuple) else (kept,)) if c is not None]
    return out


def snapshot(traj):
    return [a.copy() for a in arrays_of(traj)]


@pytest.mark.parametrize("kind", ["resnet", "verlet", "rk4"])
def test_trajectories_open_at_once_share_no_buffer(kind):
    net, (t1, t2, t3), Y0 = wide(kind)
    ref = ocdl.Network(net.stepper, net.n_steps, net.final_time, StoreAll(reuse=False))
    net.trajectory(t3, Y0).close()  # the policy's pool now holds a trajectory's arrays
    first = net.trajectory(t1, Y0)
    second = net.trajectory(t2, Y0)
    for a in arrays_of(first):
        for b in arrays_of(second):
            assert a is Y0 or not np.shares_memory(a, b)
    with ref.trajectory(t1, Y0) as expected:  # the first is intact after the second's sweep
        for a, b in zip(arrays_of(first), arrays_of(expected)):
            np.testing.assert_array_equal(a, b)
    first.close(), second.close()


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_close_gives_the_buffers_back_to_the_next_sweep(kind):
    net, (t1, t2, _), Y0 = wide(kind)
    first = net.trajectory(t1, Y0)
    initial = {id(x) for x in next(first.steps())[1]}  # Y0 (and Verlet's zeros): not the trajectory's
    final = {id(x) for x in first.final_state}
    held = {id(a): a for a in arrays_of(first) if id(a) not in initial | final}  # references held here do not matter
    with net.trajectory(t2, Y0) as other:  # first still open: nothing of it is reused
        assert not {id(a) for a in arrays_of(other)} & held.keys()
    first.close()
    with net.trajectory(t2, Y0) as second:
        assert held.keys() <= {id(a) for a in arrays_of(second)}  # every array given back is used again
        assert not {id(a) for a in arrays_of(second)} & final  # the final state was the caller's


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_results_handed_to_the_caller_are_never_overwritten(kind):
    """Final states, features, products and gradients stay what they were, whatever runs later."""
    net, (t1, t2, t3), Y0 = wide(kind)
    rng = np.random.default_rng(0)
    dtheta, W = rng.standard_normal(net.n_params), rng.standard_normal(Y0.shape)
    with net.trajectory(t1, Y0) as traj:
        final = traj.final_state
        YN = net.stepper.output(final)
        dY = net.jvp(t1, Y0, dtheta, trajectory=traj)
        g, gY0 = net.vjp(t1, Y0, W, trajectory=traj, return_dY0=True)
    forward = net.forward(t1, Y0)
    kept = [x.copy() for x in (*final, YN, dY, g, gY0, forward)]
    for theta in (t2, t3, t2):  # sweeps of the same shapes take every buffer given back
        with net.trajectory(theta, Y0) as traj:
            net.jvp(theta, Y0, dtheta, trajectory=traj)
            net.vjp(theta, Y0, W, trajectory=traj, return_dY0=True)
        net.forward(theta, Y0)
    for before, now in zip(kept, (*final, YN, dY, g, gY0, forward)):
        np.testing.assert_array_equal(now, before)


class KeepsProducts(ocdl.Stepper):
    """A user's stepper whose states and caches are the transform's own results (buffers of the step).

    ``Y_{j+1} = Y_j K`` (a linear network); the cache is ``{"KY": Y K}`` or an
    object holding it, a form the workspace cannot see into.
    """

    def __init__(self, n, opaque):
        self.K, self.n_params, self.n_features, self.opaque = ocdl.Dense(n), n * n, n, opaque

    def _cache(self, KY):
        if self.opaque:
            cache = type("Cache", (), {})()
            cache.KY = KY
            return cache
        return {"KY": [KY]}

    def _KY(self, cache):
        return cache.KY if self.opaque else cache["KY"][0]

    def step(self, state, theta, h):
        KY = self.K.apply(theta, state[0])  # a step buffer, kept as the next state and in the cache
        return (KY,), self._cache(KY)

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        return (self.K.apply(theta, dstate[0]) + self.K.apply(dtheta, state[0]),)

    def step_vjp(self, state, theta, h, lam, cache):
        assert np.array_equal(self._KY(cache), state[0] @ theta.reshape(self.n_features, -1))  # intact
        return (self.K.apply_transpose(theta, lam[0]),), self.K.vjp(theta, state[0], lam[0])

    def init_params(self, rng, scale=1.0, dtype=None):
        return np.eye(self.n_features).ravel() + 0.1 * rng.standard_normal(self.n_params)


@pytest.mark.parametrize("opaque", [False, True], ids=["dict-cache", "opaque-cache"])
@pytest.mark.parametrize("memory", [StoreAll, lambda: Recompute(2)], ids=["store-all", "recompute"])
def test_buffers_a_users_stepper_keeps_are_never_reused(opaque, memory):
    stepper = KeepsProducts(WIDE, opaque)
    net = ocdl.Network(stepper, 5, 1.0, memory=memory())
    rng = np.random.default_rng(5)
    theta, dtheta = net.init_params(rng), 0.1 * rng.standard_normal(net.n_params)
    Y0, W = rng.standard_normal((ROWS, WIDE)), rng.standard_normal((ROWS, WIDE))
    Ks = theta.reshape(5, WIDE, WIDE)
    YN = Y0 @ Ks[0] @ Ks[1] @ Ks[2] @ Ks[3] @ Ks[4]
    for _ in range(2):
        with net.trajectory(theta, Y0) as traj:
            np.testing.assert_allclose(net.stepper.output(traj.final_state), YN, rtol=1e-12)
            g = net.vjp(theta, Y0, W, trajectory=traj)
            dY = net.jvp(theta, Y0, dtheta, trajectory=traj)
        np.testing.assert_allclose(net.forward(theta, Y0), YN, rtol=1e-12)
    # the adjoint by hand: lam_5 = W, g_j = Y_j^T lam_{j+1}, lam_j = lam_{j+1} K_j^T
    Ys = [Y0]
    for K in Ks:
        Ys.append(Ys[-1] @ K)
    lam, expected = W, []
    for j in reversed(range(5)):
        expected.append((Ys[j].T @ lam).ravel())
        lam = lam @ Ks[j].T
    np.testing.assert_allclose(g, np.concatenate(expected[::-1]), rtol=1e-10)
    dYs = np.zeros_like(Y0)
    for j, K in enumerate(Ks):
        dYs = dYs @ K + Ys[j] @ dtheta.reshape(5, WIDE, WIDE)[j]
    np.testing.assert_allclose(dY, dYs, rtol=1e-10)


def test_store_all_memory_stays_one_trajectory_between_sweeps():
    """A training loop touches no fresh memory for its states after the first iteration, and the
    policy's pool never holds more than one trajectory's arrays."""
    from ocdl._workspace import temporaries

    def gradient_peak(net, theta, Y0):
        tracemalloc.start()
        try:
            with net.trajectory(theta, Y0) as traj:
                net.vjp(theta, Y0, net.stepper.output(traj.final_state), trajectory=traj)
            return tracemalloc.get_traced_memory()[1] / Y0.nbytes
        finally:
            tracemalloc.stop()

    net = ocdl.network("resnet", 4, 64, 1.0)
    theta = net.init_params(0)
    Y0 = np.random.default_rng(0).standard_normal((2000, 4))
    first = gradient_peak(net, theta, Y0)
    later = [gradient_peak(net, theta, Y0) for _ in range(3)]
    assert first > 128  # 64 states and 64 caches
    assert max(later) < 8, later  # the final state, the adjoint, a few temporaries
    one = net.memory._pool.nbytes
    with net.trajectory(theta, Y0) as a, net.trajectory(theta, Y0) as b:  # two open at once, both closed
        assert a.final_state[0] is not b.final_state[0]
    assert net.memory._pool.nbytes == one  # one trajectory's arrays, not two
    assert temporaries.nbytes <= temporaries.max_bytes
    net.memory.release()
    assert net.memory._pool.nbytes == 0 and temporaries.nbytes == 0


def test_a_product_kept_by_the_caller_is_never_overwritten():
    rng = np.random.default_rng(0)
    K = ocdl.Dense(256)
    Y = rng.standard_normal((2048, 256))
    theta1, theta2 = rng.standard_normal((2, K.n_params))
    first = K.apply(theta1, Y)
    expected = Y @ theta1.reshape(256, 256)
    for _ in range(3):  # later products of the same shape take other buffers
        K.apply(theta2, Y)
        K.apply_transpose(theta2, Y)
    np.testing.assert_array_equal(first, expected)


# -- the forward sweep alone keeps no state ------------------------------------------


@pytest.mark.parametrize("kind", ocdl.KINDS)
@pytest.mark.parametrize("memory", [None, lambda: Recompute(3)], ids=["store-all", "recompute"])
def test_forward_equals_the_trajectory_output_and_never_overwrites_what_the_caller_holds(kind, memory):
    net = ocdl.network(kind, WIDTH, N_STEPS, FINAL_TIME, memory=None if memory is None else memory())
    rng = np.random.default_rng(3)
    theta, other = net.init_params(rng), net.init_params(rng)
    Y0 = rng.standard_normal((SAMPLES, WIDTH))
    Y0_before = Y0.copy()
    with net.trajectory(theta, Y0) as traj:
        expected = net.stepper.output(traj.final_state).copy()
    YN = net.forward(theta, Y0)
    np.testing.assert_array_equal(YN, expected)  # the same steps, bit for bit
    first = YN.copy()
    net.forward(other, Y0)
    net.forward(other, Y0)
    np.testing.assert_array_equal(YN, first)  # a later sweep reuses none of the caller's arrays
    np.testing.assert_array_equal(Y0, Y0_before)


@pytest.mark.parametrize("kind", ["resnet", "verlet"])
def test_forward_memory_is_independent_of_n_steps(kind):
    """A forward sweep holds a few states (store-all would hold N), however deep the network."""
    def peak(n_steps):
        net = ocdl.network(kind, 4, n_steps, 1.0)
        theta = net.init_params(0)
        Y0 = np.random.default_rng(0).standard_normal((2000, 4))
        net.forward(theta, Y0)  # warm the step temporaries
        tracemalloc.start()
        try:
            net.forward(theta, Y0)
            return tracemalloc.get_traced_memory()[1] / Y0.nbytes
        finally:
            tracemalloc.stop()

    short, long = peak(16), peak(128)
    assert long < 12, long
    assert long < short + 1, (short, long)


def test_hdf5_removes_the_temporaries_of_killed_processes_of_this_host(tmp_path):
    """A SIGKILLed run leaves ocdl-trajectory-HOST-PID-*/trajectory.h5 (its states: gigabytes for a large run);
    the next temporary file made in that directory removes them, not those of live processes or other hosts."""
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    folders = {name: tmp_path / name for name in (f"ocdl-trajectory-{host}-{dead}-a1b2", f"ocdl-trajectory-{host}-"
                                                  f"{os.getpid()}-c3d4", f"ocdl-trajectory-elsewhere-{dead}-e5f6")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "trajectory.h5").write_bytes(b"\0" * 1000)
    net, theta, Y0, *_ = make("verlet", HDF5(tmp_path))
    with net.trajectory(theta, Y0) as trajectory:
        assert trajectory.temporary and Path(trajectory.path).parent.name.startswith(f"ocdl-trajectory-{host}-"
                                                                                      f"{os.getpid()}-")
        left = {path.name for path in tmp_path.iterdir()}
    assert set(folders) - left == {f"ocdl-trajectory-{host}-{dead}-a1b2"}


def test_hdf5_file_held_by_another_process_is_named(tmp_path):
    """Two ranks given one HDF5(path) failed with HDF5's 'unable to lock file'; the error now says what to do."""
    import subprocess
    import sys

    path = tmp_path / "states.h5"
    holder = subprocess.Popen([sys.executable, "-c", f"import h5py, time; f = h5py.File({str(path)!r}, 'w'); "
                               "print('open', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        net, theta, Y0, *_ = make("resnet", HDF5(path))
        with pytest.raises(OSError, match=r"HDF5\(path=.*states.h5'\): the file is open in another process; "
                                          r"under mpiexec give each rank its own file, or a directory"):
            net.trajectory(theta, Y0)
    finally:
        holder.kill()
        holder.wait()
