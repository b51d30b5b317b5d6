"""Property-based tests: malformed arrays, labels and files at the public entry points.

Every malformed input must give a documented exception (ValueError, TypeError,
or their subclasses IDXFormatError, OcdlFileError) whose message names the
argument, never a crash deep in NumPy or a silently wrong result.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ocdl
from ocdl.io import OcdlFileError, read_tree, write_tree
from problems.idx import IDXFormatError, read_idx, write_idx

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
