"""Threads and BLAS limits (ocdl._threads), the kernel interface, and the step kernels that run on them."""

import ast
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ocdl
from ocdl import _threads
from ocdl._threads import blas_threads_settable, row_blocks, single_threaded_blas

ROOT = Path(__file__).resolve().parents[1]
# rows of a 16-wide state big enough for threaded blocks, with a ragged last block
LARGE_ROWS = _threads._THREADED_ELEMENTS // 16 + 5


def chain(z, x, o):
    """A chain of passes like a step kernel's; returns a per-block reduction."""
    np.add(z, 0.1, out=o)
    np.tanh(o, out=o)
    np.multiply(o, 0.5, out=o)
    np.add(o, x, out=o)
    return o.sum()


@pytest.mark.parametrize("rows", [7, 2 * LARGE_ROWS])  # whole arrays; threaded blocks, ragged last one
def test_blocks_give_the_whole_array_result(rows, rng):
    Z, X = rng.standard_normal((rows, 8)), rng.standard_normal((rows, 8))
    out = np.empty_like(Z)
    sums = row_blocks(chain, Z, X, out)
    expected = X + 0.5 * np.tanh(Z + 0.1)  # independent: one NumPy expression
    np.testing.assert_allclose(out, expected, rtol=1e-15, atol=1e-15)
    threaded = Z.size >= _threads._THREADED_ELEMENTS and blas_threads_settable()
    assert (len(sums) > 1) == threaded
    assert sum(sums) == pytest.approx(expected.sum(), rel=1e-12)


def test_row_blocks_decide_on_the_largest_array(rng):
    """A small first array (a product's few columns) with a large second one still gets threaded blocks."""
    if not blas_threads_settable():
        pytest.skip("no BLAS whose thread count can be set in this process")
    G, K = rng.standard_normal((LARGE_ROWS, 3)), rng.standard_normal((3, 16))
    out = np.empty((LARGE_ROWS, 16))
    blocks = row_blocks(lambda g, o: np.matmul(g, K, out=o).shape[0], G, out)
    assert len(blocks) > 1 and sum(blocks) == LARGE_ROWS
    np.testing.assert_allclose(out, G @ K, rtol=1e-14)


def test_vdot_holds_the_blas_to_one_thread_on_long_vectors(rng, monkeypatch):
    """Long NumPy vectors: the product under a one-thread BLAS; short ones and other arrays: as is."""
    if not blas_threads_settable():
        pytest.skip("no BLAS whose thread count can be set in this process")
    seen = []
    monkeypatch.setattr(np, "vdot", lambda u, v: seen.append(_blas_threads()) or float(np.sum(u * v)))
    long = rng.standard_normal(_threads._VDOT_HELD_ENTRIES)
    short = long[: _threads._VDOT_HELD_ENTRIES - 1]
    with _threads._blas().limit(limits=2):  # two BLAS threads outside, whatever the test run's setting
        assert _threads.vdot(long, long) == pytest.approx(float(long @ long), rel=1e-12)
        assert _threads.vdot(short, short + 1) == pytest.approx(float(short @ (short + 1)), rel=1e-12)
    assert all(n == 1 for n in seen[0]) and all(n == 2 for n in seen[1]), seen


def test_map_blocks_threads_only_large_numpy_data(monkeypatch):
    for size in (3, _threads._THREADED_ELEMENTS):
        assert _threads.map_blocks(lambda i: i * i, 4, np.empty(size)) == [0, 1, 4, 9]
    seen = []
    monkeypatch.setattr(_threads, "in_parallel", lambda task, n, threaded: seen.append(threaded) or [])
    _threads.map_blocks(None, 3, np.empty(_threads._THREADED_ELEMENTS))
    _threads.map_blocks(None, 3, np.empty(_threads._THREADED_ELEMENTS - 1))
    assert seen == [True, False]


def test_an_error_in_a_block_reaches_the_caller(rng):
    Z = rng.standard_normal((4 * LARGE_ROWS, 8))

    def failing(z):
        if z[0, 0] == Z[-1, 0]:  # only the blocks of the second half fail
            raise FloatingPointError("block failed")

    Z[-1, 0] = 123.0
    Z[Z.shape[0] // 2 :, 0] = Z[-1, 0]
    with pytest.raises(FloatingPointError, match="block failed"):
        row_blocks(failing, Z)


def _blas_threads() -> list:
    """Thread counts of the loaded BLAS libraries (threadpoolctl's view)."""
    return [lib["num_threads"] for lib in _threads._blas().info()]


def test_single_threaded_blas_holds_one_thread_and_restores():
    if not blas_threads_settable():
        pytest.skip("no BLAS whose thread count can be set in this process")
    before = _blas_threads()
    with single_threaded_blas():
        assert all(n == 1 for n in _blas_threads())
        with single_threaded_blas():  # nested: the outer level restores
            pass
        assert all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before


def test_threaded_calls_from_two_threads_see_one_blas_thread_and_restore_it():
    """Two Python threads with threaded calls at once: every item sees one BLAS thread, and afterwards
    the BLAS has its threads back (the BLAS's count is the process's: the calls take turns)."""
    if not blas_threads_settable():
        pytest.skip("no BLAS whose thread count can be set in this process")
    before = _blas_threads()
    start, seen = threading.Barrier(2), []

    def item(i):
        time.sleep(0.02)  # long enough for the other thread's call to overlap
        return _blas_threads()

    def caller():
        start.wait()
        seen.extend(_threads.in_parallel(item, 4, True))

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(n == 1 for counts in seen for n in counts), seen
    assert _blas_threads() == before


def test_every_loaded_blas_is_held_once_in_a_fresh_process():
    """NumPy's and SciPy's BLAS (two libraries in the wheels), each held to one thread and restored."""
    code = textwrap.dedent("""
        import json
        import numpy, scipy.linalg.blas  # noqa: F401 - loads both BLAS libraries
        from threadpoolctl import threadpool_info
        from ocdl._threads import _blas, single_threaded_blas

        def counts():
            blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
            return sorted((lib["filepath"], lib["num_threads"]) for lib in blas)

        before = counts()
        with single_threaded_blas():
            inside = counts()
        print(json.dumps({"before": before, "inside": inside, "after": counts(),
                          "controlled": len(_blas().info())}))
    """)
    env = {"OPENBLAS_NUM_THREADS": "2", "PATH": ""}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    import json

    record = json.loads(run.stdout)
    if not record["before"]:
        pytest.skip("no BLAS found by threadpoolctl")
    assert record["controlled"] == len(record["before"])  # each library once
    assert all(n == 1 for _, n in record["inside"])
    assert record["after"] == record["before"] and all(n == 2 for _, n in record["before"])


def test_threaded_blocks_see_one_blas_thread():
    if not blas_threads_settable():
        pytest.skip("no BLAS whose thread count can be set in this process")
    seen = _threads.in_parallel(lambda i: _blas_threads(), 4, True)
    assert all(n == 1 for counts in seen for n in counts)


def test_only_the_kernel_interface_is_imported_from_the_threads_module():
    """The numerical modules use row_blocks, map_blocks and vdot alone; no other module controls threads or BLAS."""
    users, others = {}, []
    for path in sorted((ROOT / "ocdl").rglob("*.py")) + sorted((ROOT / "solvers").rglob("*.py")):
        if path.name == "_threads.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_threads"):
                users[path.relative_to(ROOT).as_posix()] = {alias.name for alias in node.names}
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            module = getattr(node, "module", None) or ""
            if any(n.split(".")[0] in ("ctypes", "threadpoolctl") for n in names + [module]):
                others.append(path.relative_to(ROOT).as_posix())
    assert set(users) == {"ocdl/checks/core.py", "ocdl/layer.py", "ocdl/objectives/base.py",
                          "ocdl/transforms/conv2d.py", "solvers/pcg.py"}, users
    assert set().union(*users.values()) <= set(_threads.__all__) == {"row_blocks", "map_blocks", "vdot"}
    assert not others, f"thread or BLAS control outside ocdl/_threads.py: {others}"


def _large_layer(rng, dtype, transform=None):
    n = 16
    layer = ocdl.Layer(transform or ocdl.Dense(n), "tanh")
    theta = (rng.standard_normal(layer.n_params) / 4).astype(dtype)
    V, X = (rng.standard_normal((LARGE_ROWS, n)).astype(dtype) for _ in range(2))
    return layer, theta, V, X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_tanh_step_equals_the_formula(dtype, rng):
    # Layer.step on a state big enough for the threaded blocks, against sigma's formula
    layer, theta, V, X = _large_layer(rng, dtype)
    out, D = layer.step(theta, V, X, 0.3)
    K, b = theta[:-1].reshape(16, 16).astype(np.float64), float(theta[-1])
    t = np.tanh(V.astype(np.float64) @ K + b)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out, X + 0.3 * t, rtol=tol, atol=tol)
    np.testing.assert_allclose(D, 0.3 * (1 - t**2), rtol=tol, atol=tol)
    value_only, none = layer.step(theta, V, X, 0.3, derivative=False)
    assert none is None
    np.testing.assert_array_equal(value_only, out)
    zero_X, D_again = layer.step(theta, V, None, 0.3)  # X = None: the scaled layer value alone
    np.testing.assert_allclose(zero_X, 0.3 * t, rtol=tol, atol=tol)
    np.testing.assert_array_equal(D_again, D)


@pytest.mark.parametrize("transpose", [False, True])
def test_large_step_derivatives_equal_the_formulas(transpose, rng):
    # the tangent and the transpose kernels, block by block, against whole-array NumPy formulas
    layer, theta, V, X = _large_layer(rng, np.float64)
    D, lam, dV = (rng.standard_normal(V.shape) for _ in range(3))
    dtheta = rng.standard_normal(theta.shape)
    K, dK, db = theta[:-1].reshape(16, 16), dtheta[:-1].reshape(16, 16), dtheta[-1]
    if transpose:
        K, dK = K.T, dK.T
    expected = D * (dV @ K + V @ dK + db)
    tangent = layer.step_jvp(theta, V, D, dV, dtheta, X, transpose=transpose)
    np.testing.assert_allclose(tangent, X + expected, rtol=1e-12, atol=1e-12)
    tangent = layer.step_jvp(theta, V, D, dV, dtheta, None, transpose=transpose)
    np.testing.assert_allclose(tangent, expected, rtol=1e-12, atol=1e-12)
    G = D * lam
    g_K = (G.T @ V) if transpose else (V.T @ G)
    for lam_V in (X, None):
        back, gtheta = layer.step_vjp(theta, V, D, lam, lam_V, transpose=transpose)
        np.testing.assert_allclose(back, (0 if lam_V is None else lam_V) + G @ K.T, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gtheta[:-1], g_K.ravel(), rtol=1e-11)
        assert gtheta[-1] == pytest.approx(G.sum(), rel=1e-11)
