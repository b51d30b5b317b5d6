"""HDF5 files: round trips, atomic writes, and clear errors for files that are not ours."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from ocdl.io import (
    OcdlFileError,
    leftover_temporaries,
    load_params,
    read_tree,
    save_params,
    write_text,
    write_tree,
)


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


# -- integrity: checksums, and clear errors for corrupt files ----------------------------


def flip_data_byte(path, dataset, index=3):
    """Flip the bits of one byte inside the stored data of ``dataset`` in the HDF5 file ``path``.

    HDF5 1.14.2 (h5py 3.11) gives a chunk's offset without the file's user block: the chunk is where its stored
    bytes are."""
    with h5py.File(path, "r") as f:
        d = f[dataset]
        if d.chunks:
            info, stored = d.id.get_chunk_info(0), d.id.read_direct_chunk((0,) * d.ndim)[1]
            data = Path(path).read_bytes()
            offset = next(at for at in (info.byte_offset, info.byte_offset + f.userblock_size)
                          if data[at : at + len(stored)] == stored)
        else:
            offset = d.id.get_offset()
    with open(path, "rb+") as raw:
        raw.seek(offset + index)
        byte = raw.read(1)[0]
        raw.seek(offset + index)
        raw.write(bytes([byte ^ 0xFF]))


def test_a_flipped_byte_in_a_dataset_is_refused(tmp_path, rng):
    path = write_tree(tmp_path / "a.h5", {"theta": rng.standard_normal(7), "n": 4}, "ocdl-test")
    flip_data_byte(path, "theta")
    with pytest.raises(OcdlFileError, match=rf"^{re.escape(str(path))}: corrupt ocdl file"):
        read_tree(path, "ocdl-test")


def test_a_changed_attribute_is_refused(tmp_path):
    path = write_tree(tmp_path / "a.h5", {"stepper": "verlet"}, "ocdl-test")
    raw = path.read_bytes()
    assert raw.count(b'"verlet"') == 1
    path.write_bytes(raw.replace(b'"verlet"', b'"verlex"'))  # still valid JSON: only the checksum sees it
    with pytest.raises(OcdlFileError, match="corrupt ocdl file"):
        read_tree(path, "ocdl-test")


def test_every_single_byte_change_is_refused(tmp_path, rng):
    tree = {"theta": rng.standard_normal(5), "W": rng.standard_normal((2, 1)), "nested": {"k": [1, "a"]}}
    raw = write_tree(tmp_path / "a.h5", tree, "ocdl-test").read_bytes()
    bad = tmp_path / "bad.h5"
    for i in range(0, len(raw), 7):
        changed = bytearray(raw)
        changed[i] ^= 1 << (i % 8)
        bad.write_bytes(bytes(changed))
        with pytest.raises(OcdlFileError, match=f"^{re.escape(str(bad))}: "):
            read_tree(bad, "ocdl-test")


def test_datasets_carry_fletcher32_for_plain_h5py_readers(tmp_path):
    tree = {"one": np.ones(1), "none": np.zeros(0), "big": np.arange(5000.0), "f32": np.ones((2, 3), np.float32)}
    path = write_tree(tmp_path / "a.h5", tree, "ocdl-test", compression="gzip")
    with h5py.File(path, "r") as f:
        assert all(f[key].fletcher32 for key in tree)
    flip_data_byte(path, "f32")
    with h5py.File(path, "r") as f, pytest.raises(OSError, match="filter returned failure|Fletcher32 checksum"):
        f["f32"][()]


def write_version_1(path, attrs=None, datasets=None, version=1):
    """A file as ocdl's format version 1 wrote it: no user block, no checksums, contiguous datasets."""
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "ocdl-params", version
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for key, value in (datasets or {}).items():
            f[key] = value
    return path


def test_version_1_files_still_load(tmp_path):
    path = write_version_1(tmp_path / "old.h5", {"setting_stepper": '"verlet"'},
                           {"theta": np.arange(4.0), "W": np.ones((2, 1)), "mu": np.zeros(1)})
    p = load_params(path)
    np.testing.assert_array_equal(p["theta"], np.arange(4.0))
    assert p["settings"] == {"stepper": "verlet"}


@pytest.mark.parametrize("attrs, datasets, version, message", [
    ({"x": 3}, {}, 1, "attribute x is a int64, not JSON text"),
    ({"x": "{nope"}, {}, 1, "corrupt or not an ocdl file: Expecting"),
    ({}, {}, "one", "format_version must be an integer >= 1, got 'one'"),
    ({}, {}, 1.5, "format_version must be an integer >= 1"),
    ({}, {}, 2, r"its checksum header \(format 2\) is damaged"),
])
def test_malformed_files_name_the_file(tmp_path, attrs, datasets, version, message):
    path = write_version_1(tmp_path / "odd.h5", attrs, datasets, version)
    with pytest.raises(OcdlFileError, match=rf"^{re.escape(str(path))}: .*{message}"):
        read_tree(path, "ocdl-params")


def test_a_broken_link_is_a_corrupt_file(tmp_path):
    path = write_version_1(tmp_path / "link.h5")
    with h5py.File(path, "a") as f:
        f["theta"] = h5py.SoftLink("/nowhere")
    message = "corrupt or not an ocdl file: theta is a broken link"
    with pytest.raises(OcdlFileError, match=f"^{re.escape(str(path))}: {message}"):
        read_tree(path, "ocdl-params")


def test_write_tree_rejects_what_it_cannot_store(tmp_path):
    path = write_tree(tmp_path / "a.h5", {"x": np.array(2.5), "y": np.float32(1.5)}, "ocdl-test")
    assert read_tree(path, "ocdl-test") == {"x": 2.5, "y": 1.5}  # 0-d arrays are numbers
    with pytest.raises(TypeError, match="tree entry a/f is a builtin_function_or_method"):
        write_tree(tmp_path / "b.h5", {"a": {"f": len}}, "ocdl-test")
    with pytest.raises(ValueError, match=r"tree keys \['format_version'\] are reserved"):
        write_tree(tmp_path / "b.h5", {"format_version": 3}, "ocdl-test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


# -- validation of parameters --------------------------------------------------------


@pytest.mark.parametrize("theta, W, mu, error, message", [
    ([0.1, 0.2], np.ones((2, 1)), np.ones(1), TypeError, "theta must be a NumPy or CuPy array, got list"),
    (np.ones(3), np.ones((2, 1)), np.array(1.0), ValueError, r"mu must be 1-D .* got shape \(\)"),
    (np.ones(3), np.ones((2, 1), int), np.ones(1), TypeError, "W must be a floating-point array"),
    (np.ones((3, 1)), np.ones((2, 1)), np.ones(1), ValueError, "theta must be 1-D"),
    (np.ones(3), np.ones((2, 2)), np.ones(1), ValueError, "mu must have shape 2"),
    (np.array(["a"]), np.ones((2, 1)), np.ones(1), TypeError, "theta must be a floating-point array"),
    # mixed precisions were written as they came (a float64 theta beside a float32 classifier)
    (np.ones(3), np.ones((2, 1), np.float32), np.ones(1), TypeError, r"W \(float32\) must have the dtype of theta"),
    (np.ones(3, np.float32), np.ones((2, 1), np.float32), np.ones(1), TypeError, r"mu \(float64\) must have"),
])
def test_save_params_checks_the_parameters(tmp_path, theta, W, mu, error, message):
    with pytest.raises(error, match=message):
        save_params(tmp_path / "p.h5", theta, W, mu)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("theta, message", [
    ([0.1, 0.2], "theta must be a 1-D float32 or float64 dataset, found a list"),
    (np.array([b"a", b"b"]), r"theta must be a 1-D float32 or float64 dataset, found dtype \|S1"),
    (np.ones((2, 2)), r"theta must be a 1-D float32 or float64 dataset, found dtype float64, shape \(2, 2\)"),
])
def test_load_params_checks_the_datasets(tmp_path, theta, message):
    path = write_tree(tmp_path / "p.h5", {"theta": theta, "W": np.ones((2, 1)), "mu": np.ones(1)}, "ocdl-params")
    with pytest.raises(OcdlFileError, match=f"^{re.escape(str(path))}: {message}"):
        load_params(path)


def test_write_text_is_atomic(tmp_path, monkeypatch):
    path = write_text(tmp_path / "r.json", "old\n")
    assert path.read_text() == "old\n" and leftover_temporaries(path) == []

    def fail(*args, **kwargs):
        raise OSError("disk full")

    import ocdl.io

    monkeypatch.setattr(ocdl.io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text(path, "new\n")
    assert path.read_text() == "old\n" and leftover_temporaries(path) == []


def test_a_completed_write_removes_the_temporaries_killed_writes_left(tmp_path):
    """A SIGKILL between a write and its rename leaves .NAME.XXXX.tmp; the next completed write of NAME removes
    it (they stayed in run folders for ever: features.png's, accuracy.png's), and only NAME's."""
    killed = [tmp_path / ".r.json.0a1b2c3d.tmp", tmp_path / ".params.h5.00000000.tmp"]
    for path in killed:
        path.write_bytes(b"\0" * 512)
    path = write_text(tmp_path / "r.json", "new\n")
    assert leftover_temporaries(path) == [] and path.read_text() == "new\n"
    assert leftover_temporaries(tmp_path / "params.h5") == [killed[1]]
    write_tree(tmp_path / "params.h5", {"a": np.ones(2)}, "ocdl-test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.h5", "r.json"]


def test_a_full_disk_is_an_oserror_before_hdf5_writes(tmp_path, monkeypatch):
    """HDF5 fails on a full disk only at close (OSError or RuntimeError, 'Exception ignored' tracebacks, a crash
    at exit seen): write_tree checks the room first; the old file stays, no temporary is left."""
    from collections import namedtuple

    import ocdl.io

    path = write_tree(tmp_path / "c.h5", {"a": np.ones(10)}, "ocdl-test")
    before = path.read_bytes()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ocdl.io.shutil, "disk_usage", lambda where: usage(10**6, 10**6 - 70_000, 70_000))
    with pytest.raises(OSError, match=r"\[Errno 28\] cannot write .*c.h5: No space left on device \(70,000 bytes"):
        write_tree(path, {"a": np.ones(1000), "b": {"c": np.ones(10)}}, "ocdl-test")
    assert path.read_bytes() == before and leftover_temporaries(path) == []
    write_tree(path, {"a": np.ones(10)}, "ocdl-test")  # what fits is written
