"""HDF5 files: round trips, atomic writes, and clear errors for files that are not ours."""

import h5py
import numpy as np
import pytest

from ocdl.io import OcdlFileError, load_params, read_tree, save_params, write_tree


def test_round_trip(tmp_path, rng):
    tree = {
        "theta": rng.standard_normal(7),
        "nested": {"W": rng.standard_normal((3, 2)), "n": 4, "name": "verlet", "hist": [1.5, 2.5]},
        "none": None,
    }
    write_tree(tmp_path / "a.h5", tree, "ocdl-test")
    back = read_tree(tmp_path / "a.h5", "ocdl-test")
    np.testing.assert_array_equal(back["theta"], tree["theta"])
    np.testing.assert_array_equal(back["nested"]["W"], tree["nested"]["W"])
    assert back["nested"]["n"] == 4 and back["nested"]["name"] == "verlet"
    assert back["nested"]["hist"] == [1.5, 2.5] and back["none"] is None


def test_params(tmp_path, rng):
    theta, W, mu = rng.standard_normal(5), rng.standard_normal((2, 1)), rng.standard_normal(1)
    save_params(tmp_path / "p.h5", theta, W, mu, {"stepper": "verlet", "T": 20.0})
    p = load_params(tmp_path / "p.h5")
    np.testing.assert_array_equal(p["theta"], theta)
    np.testing.assert_array_equal(p["mu"], mu)
    assert p["settings"] == {"stepper": "verlet", "T": 20.0}
    with h5py.File(tmp_path / "p.h5") as f:  # a person can read it with h5py
        assert f["W"].shape == (2, 1)


def test_errors_say_which(tmp_path):
    with pytest.raises(OcdlFileError, match="no such file"):
        read_tree(tmp_path / "missing.h5", "ocdl-params")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(OcdlFileError, match="not a readable HDF5 file"):
        read_tree(tmp_path / "text.h5", "ocdl-params")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1.0
    with pytest.raises(OcdlFileError, match="not written by ocdl"):
        read_tree(tmp_path / "foreign.h5", "ocdl-params")
    write_tree(tmp_path / "other.h5", {"a": 1}, "ocdl-checkpoint")
    with pytest.raises(OcdlFileError, match="kind 'ocdl-checkpoint', expected 'ocdl-params'"):
        read_tree(tmp_path / "other.h5", "ocdl-params")
    data = (tmp_path / "other.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(OcdlFileError, match="truncated|damaged"):
        read_tree(tmp_path / "trunc.h5", "ocdl-checkpoint")


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    write_tree(tmp_path / "c.h5", {"x": np.arange(3.0)}, "ocdl-test")

    class Boom(Exception):
        pass

    def fail(*args, **kwargs):
        raise Boom

    import ocdl.io

    monkeypatch.setattr(ocdl.io.os, "replace", fail)
    with pytest.raises(Boom):
        write_tree(tmp_path / "c.h5", {"x": np.arange(5.0)}, "ocdl-test")
    np.testing.assert_array_equal(read_tree(tmp_path / "c.h5", "ocdl-test")["x"], np.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no temporary left behind
