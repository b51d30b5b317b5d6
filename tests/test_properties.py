"""Property-based tests: malformed arrays, labels and files at the public entry points.

Every malformed input must give a documented exception (ValueError, TypeError,
or their subclasses IDXFormatError, OcdlFileError) whose message names the
argument, never a crash deep in NumPy or a silently wrong result. The entry
points: the network, label conversion, the IDX and HDF5 readers, the
learning problem, the training solvers (parameters and options) and
checkpoint files (garbage, truncated, or with an entry dropped or garbled).
"""

import tempfile
from pathlib import Path

import numpy as np
import ocdl.solvers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ocdl.problems.idx import IDXFormatError, read_idx, write_idx
from ocdl.solvers.checkpoint import TrainingInterrupted, load_checkpoint

import ocdl
from ocdl.io import OcdlFileError, read_tree, write_tree

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

NET = ocdl.network("verlet", 3, 2, 1.0)
THETA = NET.init_params(0)

def _cast(array, dtype):
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(array).astype(dtype) if np.dtype(dtype).kind in "iub" else array.astype(dtype)


float_arrays = st.builds(
    _cast,
    hnp.arrays(
        dtype=np.float64,
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        elements=st.one_of(st.floats(-1e3, 1e3, width=32), st.sampled_from([np.nan, np.inf, -np.inf])),
    ),
    st.sampled_from([np.float64, np.float64, np.float32, np.int64, np.complex128, np.bool_]),
)


def well_formed_Y0(Y):
    return (
        Y.dtype in (np.float64,) and Y.ndim == 2 and Y.shape[1] == 3 and np.isfinite(Y).all()
    )


@SETTINGS
@given(Y=float_arrays)
def test_forward_rejects_malformed_features(Y):
    if well_formed_Y0(Y):
        out = NET.forward(THETA, Y)
        assert out.shape == Y.shape and np.isfinite(out).all()
        return
    with pytest.raises((ValueError, TypeError)) as err:
        NET.forward(THETA, Y)
    assert "Y0" in str(err.value) or "dtype" in str(err.value)


@SETTINGS
@given(theta=float_arrays)
def test_forward_rejects_malformed_theta(theta):
    Y0 = np.zeros((2, 3))
    ok = theta.dtype == np.float64 and theta.shape == (NET.n_params,) and np.isfinite(theta).all()
    if ok:
        assert NET.forward(theta, Y0).shape == (2, 3)
        return
    with pytest.raises((ValueError, TypeError), match="theta"):
        NET.forward(theta, Y0)


@SETTINGS
@given(
    C=st.builds(
        _cast,
        hnp.arrays(
            dtype=np.float64,
            shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6),
            elements=st.sampled_from([0.0, 1.0, 2.0, 3.0, 0.5, -1.0, np.nan]),
        ),
        st.sampled_from([np.int64, np.float64, np.int32]),
    )
)
def test_labels_are_indices_or_one_hot(C):
    objective = ocdl.SoftmaxCrossEntropy()
    try:
        T = objective.prepare_labels(C, n_classes=3)
    except (ValueError, TypeError) as err:
        assert "C" in str(err)
        return
    # accepted: must really be one of the two documented forms, and mean the same classes
    assert T.shape == (C.shape[0], 3)
    assert np.all((T == 0) | (T == 1)) and np.all(T.sum(axis=1) == 1)
    if C.ndim == 1:
        np.testing.assert_array_equal(T.argmax(axis=1), C)
    else:
        np.testing.assert_array_equal(T, C)


@SETTINGS
@given(data=st.binary(max_size=64))
def test_idx_reader_rejects_garbage(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("idx") / "file.idx"
    path.write_bytes(data)
    try:
        arr = read_idx(path)
    except IDXFormatError as err:
        assert str(path) in str(err)
        return
    # accepted: writing it back must give the same bytes (so it was a valid IDX file)
    again = tmp_path_factory.mktemp("idx") / "again.idx"
    write_idx(again, arr)
    assert again.read_bytes() == data


@SETTINGS
@given(data=st.binary(min_size=0, max_size=2048), cut=st.floats(0, 1))
def test_hdf5_reader_rejects_foreign_and_truncated(tmp_path_factory, data, cut):
    folder = tmp_path_factory.mktemp("h5")
    (folder / "garbage.h5").write_bytes(data)
    with pytest.raises(OcdlFileError):
        read_tree(folder / "garbage.h5", "ocdl-params")
    good = write_tree(folder / "good.h5", {"theta": np.arange(4.0)}, "ocdl-params")
    raw = good.read_bytes()
    n = int(cut * len(raw))
    if n < len(raw):
        (folder / "cut.h5").write_bytes(raw[:n])
        with pytest.raises(OcdlFileError):
            read_tree(folder / "cut.h5", "ocdl-params")


# -- the learning problem, the solvers and checkpoints --------------------------------

LP_NET = ocdl.network("resnet", 2, 2, 1.0)
labels = st.builds(
    _cast,
    hnp.arrays(
        dtype=np.float64,
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        elements=st.sampled_from([0.0, 1.0, 2.0, 0.5, -1.0, np.nan, np.inf]),
    ),
    st.sampled_from([np.int64, np.int32, np.float64, np.bool_, np.complex128]),
)


@SETTINGS
@given(Y=float_arrays, C=labels, n_classes=st.sampled_from([None, None, 1, 2, 3, 0, -1, 2.0]))
def test_learning_problem_rejects_malformed_examples_and_labels(Y, C, n_classes):
    try:
        lp = ocdl.LearningProblem(LP_NET, ocdl.SoftmaxCrossEntropy(), Y, C, n_classes=n_classes)
    except (ValueError, TypeError) as err:
        assert any(name in str(err) for name in ("Y0", "C", "n_classes", "dtype")), err
        return
    # accepted: well-formed examples, one valid label per example, the classes the labels say
    assert Y.dtype in (np.float32, np.float64) and Y.ndim == 2 and Y.shape[1] == 2 and np.isfinite(Y).all()
    assert lp.C.shape[0] == Y.shape[0] == lp.classes.shape[0]
    if C.ndim == 1:
        np.testing.assert_array_equal(lp.classes, C)
    else:
        np.testing.assert_array_equal(C.argmax(axis=1), lp.classes)
        assert np.all((C == 0) | (C == 1)) and np.all(C.sum(axis=1) == 1)
    assert lp.n_classes >= (1 if C.size == 0 else int(lp.classes.max()) + 1)


LP = ocdl.LearningProblem(LP_NET, ocdl.SoftmaxCrossEntropy(), np.ones((4, 2)), np.array([0, 1, 0, 1]))
THETA_LP = LP_NET.init_params(0)
param_arrays = st.builds(
    _cast,
    hnp.arrays(
        dtype=np.float64,
        shape=st.sampled_from([(10,), (9,), (2, 5), (2, 2), (2, 3), (2,), (3,), ()]),
        elements=st.one_of(st.floats(-2, 2), st.sampled_from([np.nan, np.inf])),
    ),
    st.sampled_from([np.float64, np.float64, np.float32, np.int64]),
)


@SETTINGS
@given(theta=param_arrays, W=st.one_of(st.none(), param_arrays), mu=st.one_of(st.none(), param_arrays))
def test_solvers_reject_malformed_parameters(theta, W, mu):
    expected = {"params0.theta": (10,), "params0.W": (2, 2), "params0.mu": (2,)}
    given_ = {"params0.theta": theta, "params0.W": W, "params0.mu": mu}
    ok = all(
        x is None or (x.dtype == np.float64 and x.shape == expected[name] and np.isfinite(x).all())
        for name, x in given_.items()
    )
    W_zero, mu_zero = LP.initial_classifier()
    params0 = theta if W is None and mu is None else ocdl.solvers.Params(
        theta, W_zero if W is None else W, mu_zero if mu is None else mu)
    for solver in (ocdl.solvers.BlockCoordinateDescent(max_iter=1), ocdl.solvers.SGD(max_epochs=1)):
        if ok:
            result = solver.minimize(LP, params0, progress=False)
            assert result.nit == 1 and np.isfinite(result.x.theta).all()
            continue
        with pytest.raises((ValueError, TypeError)) as err:
            solver.minimize(LP, params0, progress=False)
        assert any(name in str(err.value) for name in expected), err.value


@SETTINGS
@given(
    max_iter=st.sampled_from([0, -1, 1.5, "3", None, True]),
    batch_size=st.sampled_from([0, -2, 2.5, "all"]),
)
def test_solver_options_are_checked(max_iter, batch_size):
    with pytest.raises((ValueError, TypeError), match="max_iter|batch_size"):
        ocdl.solvers.BlockCoordinateDescent(max_iter=max_iter, batch_size=batch_size)
    with pytest.raises((ValueError, TypeError), match="max_epochs|batch_size"):
        ocdl.solvers.Adam(max_epochs=max_iter, batch_size=batch_size)


@SETTINGS
@given(data=st.binary(min_size=0, max_size=4096), cut=st.floats(0, 1))
def test_load_checkpoint_rejects_garbage_and_truncated_files(tmp_path_factory, data, cut):
    folder = tmp_path_factory.mktemp("ckpt")
    (folder / "garbage.h5").write_bytes(data)
    with pytest.raises(OcdlFileError):
        load_checkpoint(folder / "garbage.h5")
    raw = CHECKPOINT_BYTES
    n = int(cut * len(raw))
    if n < len(raw):
        (folder / "cut.h5").write_bytes(raw[:n])
        with pytest.raises(OcdlFileError):
            load_checkpoint(folder / "cut.h5")


def _checkpoint_bytes() -> bytes:
    """A checkpoint of Adam interrupted in level 1 (a completed level, a state with buffers)."""

    def interrupt(k, state):
        if state.params.theta.size > THETA_LP.size:
            raise KeyboardInterrupt

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.h5"
        with pytest.raises(TrainingInterrupted):
            ocdl.solvers.multilevel(LP, THETA_LP, max_layers=4, solver=ocdl.solvers.Adam(max_epochs=2, batch_size=2),
                                    progress=False, checkpoint=ocdl.solvers.Checkpointing(path, every=5),
                                    callback=interrupt)
        return path.read_bytes()


CHECKPOINT_BYTES = _checkpoint_bytes()


def _drop_or_garble(tree, choices):
    """``tree`` with one entry, picked by ``choices``, removed or replaced by a wrong value."""
    keys = sorted(tree)
    key = keys[choices.draw(st.integers(0, len(keys) - 1))]
    out = dict(tree)
    if isinstance(out[key], dict) and out[key] and choices.draw(st.booleans()):
        out[key] = _drop_or_garble(out[key], choices)
    elif choices.draw(st.booleans()):
        del out[key]
    else:
        out[key] = choices.draw(st.sampled_from([None, "x", -1, 1.5, [1, 2], {}, np.zeros(3, np.uint8),
                                                 np.arange(3), np.ones((2, 2))]))
    return out


@SETTINGS
@given(choices=st.data())
def test_load_checkpoint_rejects_damaged_content(tmp_path_factory, choices):
    folder = tmp_path_factory.mktemp("ckpt")
    (folder / "good.h5").write_bytes(CHECKPOINT_BYTES)
    tree = read_tree(folder / "good.h5", "ocdl-checkpoint")
    damaged = _drop_or_garble(tree, choices)
    write_tree(folder / "bad.h5", damaged, "ocdl-checkpoint")
    try:
        checkpoint = load_checkpoint(folder / "bad.h5")
    except OcdlFileError as err:
        assert str(folder / "bad.h5") in str(err)
        return
    # accepted: a change that leaves a consistent checkpoint (a history entry, a time, the settings, ...)
    assert checkpoint.level == len(checkpoint.levels) and not checkpoint.finished
