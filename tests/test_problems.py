"""Tests of the data sets in :mod:`problems` and of the IDX reader."""

from __future__ import annotations

import functools
import gzip
import importlib
import tracemalloc
import types

import numpy as np
import pytest
from ocdl.problems import (
    Dataset,
    IDXFormatError,
    concentric_ellipses,
    mnist,
    peaks,
    peaks_function,
    read_idx,
    read_idx_header,
    read_idx_rows,
    swiss_roll,
    write_idx,
)
from ocdl.problems.mnist import ENV_VAR, FILES, default_data_dir, files_digest, find_file, user_data_dir

from ocdl.distributed import share_rows


def assert_same(a: Dataset, b: Dataset) -> None:
    for field in ("Y_train", "C_train", "Y_val", "C_val"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def rows(Y: np.ndarray) -> set[tuple[float, ...]]:
    return set(map(tuple, Y.tolist()))


def check_layout(data: Dataset, n_train: int, n_val: int, n_features: int) -> None:
    assert data.Y_train.shape == (n_train, n_features)
    assert data.Y_val.shape == (n_val, n_features)
    assert data.C_train.shape == (n_train,) and data.C_val.shape == (n_val,)
    assert data.Y_train.dtype == np.float64 and data.Y_val.dtype == np.float64
    assert data.C_train.dtype == np.int64 and data.C_val.dtype == np.int64
    assert not rows(data.Y_train) & rows(data.Y_val)


# ---------------------------------------------------------------- ellipses


def test_ellipses_sizes_and_balance():
    data = concentric_ellipses()
    check_layout(data, 1000, 200, 2)
    labels = np.concatenate([data.C_train, data.C_val])
    np.testing.assert_array_equal(np.bincount(labels), [600, 600])
    assert data.n_classes == 2


def test_ellipses_radii_per_class():
    data = concentric_ellipses(n_points=2000, n_val=500, seed=3)
    for Y, C in ((data.Y_train, data.C_train), (data.Y_val, data.C_val)):
        radius = np.hypot(Y[:, 0], Y[:, 1] / 0.4)
        assert np.all(radius[C == 0] < 1 + 1e-12)
        assert np.all((radius[C == 1] > 1 - 1e-12) & (radius[C == 1] < 2 + 1e-12))
        angle = np.arctan2(Y[:, 1] / 0.4, Y[:, 0])
        assert np.histogram(angle, bins=4, range=(-np.pi, np.pi))[0].min() > 0.15 * len(C)


def test_ellipses_determinism():
    assert_same(concentric_ellipses(seed=1), concentric_ellipses(seed=1))
    other = concentric_ellipses(seed=2)
    assert not np.array_equal(concentric_ellipses(seed=1).Y_train, other.Y_train)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_points": 0}, "n_points"),
        ({"n_points": 1201}, "n_points"),
        ({"n_points": 2.5}, "n_points"),
        ({"n_val": 0}, "n_val"),
        ({"n_val": 1200}, "n_val"),
    ],
)
def test_ellipses_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        concentric_ellipses(**kwargs)


# ---------------------------------------------------------------- swiss roll


def test_swiss_roll_sizes_and_balance():
    data = swiss_roll()
    check_layout(data, 514, 512, 2)
    np.testing.assert_array_equal(np.bincount(data.C_train), [257, 257])
    np.testing.assert_array_equal(np.bincount(data.C_val), [256, 256])


def test_swiss_roll_points_lie_on_their_curves():
    n = 513
    data = swiss_roll(n_per_class=n)
    for Y, C, parity in ((data.Y_train, data.C_train, 0), (data.Y_val, data.C_val, 1)):
        radius = np.hypot(Y[:, 0], Y[:, 1])
        r = radius - 0.2 * C  # position along the curve, r = k / (n - 1)
        k = r * (n - 1)
        np.testing.assert_allclose(k, np.round(k), atol=1e-9)
        assert np.all(np.round(k).astype(int) % 2 == parity)
        t = 4 * np.pi * r
        np.testing.assert_allclose(
            Y, radius[:, None] * np.column_stack([np.cos(t), np.sin(t)]), atol=1e-12
        )
        for c in (0, 1):
            expected = np.arange(parity, n, 2)
            np.testing.assert_array_equal(np.sort(np.round(k[C == c]).astype(int)), expected)


def test_swiss_roll_seed_orders_rows_only():
    assert_same(swiss_roll(seed=4), swiss_roll(seed=4))
    a, b = swiss_roll(seed=4), swiss_roll(seed=5)
    assert not np.array_equal(a.Y_train, b.Y_train)
    assert rows(a.Y_train) == rows(b.Y_train) and rows(a.Y_val) == rows(b.Y_val)


def test_swiss_roll_rejects_bad_arguments():
    for n in (0, 1, -3, None):
        with pytest.raises(ValueError, match="n_per_class"):
            swiss_roll(n_per_class=n)


# ---------------------------------------------------------------- peaks


def test_peaks_function_values():
    assert peaks_function(0.0, 0.0) == pytest.approx(8 / 3 * np.exp(-1))
    x, y = 0.5, -1.0
    expected = (
        3 * 0.25 * np.exp(-0.25) - 10 * (0.1 - 0.125 + 1) * np.exp(-1.25) - np.exp(-2.25 - 1) / 3
    )
    assert peaks_function(x, y) == pytest.approx(expected)
    assert peaks_function(np.zeros((3, 1)), np.zeros(4)).shape == (3, 4)


def test_peaks_sizes_and_stratification():
    data = peaks()
    check_layout(data, 4000, 1000, 2)
    np.testing.assert_array_equal(np.bincount(data.C_train), [800] * 5)
    np.testing.assert_array_equal(np.bincount(data.C_val), [200] * 5)
    assert len(rows(data.Y_train)) == 4000 and len(rows(data.Y_val)) == 1000


def test_peaks_labels_recomputed_from_function():
    grid, n_classes = 256, 5
    data = peaks(grid=grid, n_classes=n_classes, seed=7)
    axis = np.linspace(-3, 3, grid)
    z_grid = peaks_function(axis[:, None], axis[None, :])
    z_min, width = z_grid.min(), (z_grid.max() - z_grid.min()) / n_classes
    for Y, C in ((data.Y_train, data.C_train), (data.Y_val, data.C_val)):
        index = (Y + 3) / 6 * (grid - 1)  # points are grid points
        np.testing.assert_allclose(index, np.round(index), atol=1e-9)
        z = peaks_function(Y[:, 0], Y[:, 1])
        expected = np.minimum(np.floor((z - z_min) / width), n_classes - 1)
        np.testing.assert_array_equal(C, expected)


def test_peaks_small_configuration_and_determinism():
    data = peaks(n_per_class=40, grid=64, n_classes=3, val_fraction=0.25, seed=1)
    check_layout(data, 90, 30, 2)
    assert data.n_classes == 3
    assert_same(data, peaks(n_per_class=40, grid=64, n_classes=3, val_fraction=0.25, seed=1))
    other = peaks(n_per_class=40, grid=64, n_classes=3, val_fraction=0.25, seed=2)
    assert not np.array_equal(data.Y_train, other.Y_train)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_per_class": 0}, "n_per_class"),
        ({"n_per_class": 2000}, "grid"),  # the top class has fewer grid points
        ({"grid": 1}, "grid"),
        ({"n_classes": 1}, "n_classes"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"n_per_class": 2, "val_fraction": 0.1}, "val_fraction"),
    ],
)
def test_peaks_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        peaks(**kwargs)


# ---------------------------------------------------------------- Dataset


def test_dataset_summary():
    data = swiss_roll(n_per_class=5)
    assert "swiss_roll" in repr(data) and "train=6" in repr(data) and "val=4" in repr(data)
    assert "class counts [3, 3]" in data.summary()


def test_dataset_checks_consistency():
    Y, C = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="n_classes must be an integer >= 1, got 2.5"):
        Dataset(Y, C, Y, C, n_classes=2.5, name="bad")
    with pytest.raises(ValueError, match="C_val"):
        Dataset(Y, C, Y, C[:3], n_classes=2, name="bad")
    with pytest.raises(ValueError, match="integers"):
        Dataset(Y, C.astype(float), Y, C, n_classes=2, name="bad")
    with pytest.raises(ValueError, match="labels outside"):
        Dataset(Y, C, Y, C + 1, n_classes=2, name="bad")
    with pytest.raises(ValueError, match="together"):
        Dataset(Y, C, Y, C, n_classes=2, name="bad", Y_test=Y)
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(Y, C, Y, C, n_classes=2, name="bad", image_shape=(1, 3, 1))


def test_dataset_part_records_where_its_rows_lie():
    Y, C = np.zeros((3, 2)), np.array([0, 1, 0])
    part = Dataset(Y, C, Y[:2], C[:2], n_classes=2, name="part", part={"train": (4, 10), "val": (0, 2)})
    assert (part.whole_size("train"), part.whole_size("val")) == (10, 2)
    assert "train=3 of 10, val=2 of 2" in repr(part)
    whole = Dataset(Y, C, Y[:2], C[:2], n_classes=2, name="whole")
    assert (whole.part, whole.whole_size("train"), whole.whole_size("val")) == (None, 3, 2)
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', got 'test'"):
        whole.whole_size("test")
    with pytest.raises(ValueError, match=r"part must give \(first, total\) for the splits \['train', 'val'\]"):
        Dataset(Y, C, Y, C, n_classes=2, name="bad", part={"train": (0, 3)})
    with pytest.raises(ValueError, match=r"part\['val'\] = \(8, 10\) does not hold the 3 examples of Y_val"):
        Dataset(Y, C, Y, C, n_classes=2, name="bad", part={"train": (0, 3), "val": (8, 10)})


# ---------------------------------------------------------------- IDX


IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4), (0, 3), (1, 2, 1, 3)])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype) and result.shape == shape
    np.testing.assert_array_equal(result, array)
    assert read_idx_header(path) == (np.dtype(dtype), shape)


def test_idx_detects_gzip_by_content_and_reads_big_endian_input(tmp_path):
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    gzipped = write_idx(tmp_path / "no_suffix", array, compress=True)
    plain = write_idx(tmp_path / "misleading.gz", array)
    np.testing.assert_array_equal(read_idx(gzipped), array)
    np.testing.assert_array_equal(read_idx(plain), array)
    assert plain.read_bytes()[:8] == bytes([0, 0, 0x0C, 2, 0, 0, 0, 2])
    assert plain.read_bytes()[-4:] == bytes([0, 0, 0, 5])


def write_bytes(path, data: bytes, compress: bool):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "wrong magic number 0x01000801"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x07", "unknown type code 0x0A"),
        (b"\x00\x00\x08", "truncated magic number: expected 4 bytes, got 3"),
        (b"", "truncated magic number"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated header of 2 dimension sizes"),
        (b"\x00\x00\x0b\x01\x00\x00\x00\x03" + bytes(5), "truncated data.*6 bytes, got 5"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02" + bytes(3), "1 trailing bytes"),
    ],
)
def test_idx_reports_format_errors(tmp_path, data, match, compress):
    path = write_bytes(tmp_path / "broken.idx", data, compress)
    with pytest.raises(IDXFormatError, match=match) as error:
        read_idx(path)
    assert "broken.idx" in str(error.value)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("sizes", [(100_000, 100_000), (2**32 - 1,) * 3])
def test_idx_header_announcing_more_than_the_file_holds_fails_before_allocating(tmp_path, compress, sizes):
    """A damaged header announced 10 GB to 10^29 bytes: NumPy's MemoryError ('Unable to allocate 1.82 TiB') or
    'Maximum allowed dimension exceeded', naming no file; now the format error, before any allocation."""
    data = bytes([0, 0, 8, len(sizes)]) + b"".join(size.to_bytes(4, "big") for size in sizes) + bytes(1000)
    path = write_bytes(tmp_path / "huge.idx", data, compress)
    held = path.stat().st_size
    got = f"more than a gzip file of {held} bytes can hold" if compress else "got 1000"
    for read in (read_idx, lambda path: read_idx_rows(path, [slice(0, 1)])):
        tracemalloc.start()
        try:
            with pytest.raises(IDXFormatError, match=rf"huge.idx: truncated data: shape \({sizes[0]}, .*{got}"):
                read(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10**7, peak


def test_idx_truncated_gzip_stream(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.arange(1000, dtype=np.float64), compress=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IDXFormatError, match="a.idx"):
        read_idx(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_rows_are_the_rows_of_the_whole_array(tmp_path, dtype, compress):
    array = (np.random.default_rng(1).standard_normal((23, 3, 2)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    for rows in ([slice(None)], [slice(0, 5), slice(5, 9), slice(20, None)], [slice(3, 3), slice(-4, -1)],
                 [slice(2, 1), slice(7, 30)], []):
        parts = read_idx_rows(path, rows)
        assert len(parts) == len(rows)
        for part, piece in zip(parts, rows):
            assert part.dtype == np.dtype(dtype) and part.flags.c_contiguous
            np.testing.assert_array_equal(part, array[piece])
    np.testing.assert_array_equal(read_idx_rows(write_idx(tmp_path / "v.idx", array[:, 0, 0]), [slice(4, 6)])[0],
                                  array[4:6, 0, 0])


@pytest.mark.parametrize("compress", [False, True])
def test_idx_rows_check_the_whole_file_and_their_arguments(tmp_path, compress):
    data = b"\x00\x00\x08\x02\x00\x00\x00\x04\x00\x00\x00\x02" + bytes(range(8))
    for broken, match in ((data[:-1], "truncated data: shape \\(4, 2\\) of uint8 needs 8 bytes, got 7"),
                          (data + b"\x01", "1 trailing bytes")):
        path = write_bytes(tmp_path / "broken.idx", broken, compress)
        with pytest.raises(IDXFormatError, match=match):
            read_idx_rows(path, [slice(0, 1)])  # the first row is there: the file is checked to its end
    path = write_bytes(tmp_path / "a.idx", data, compress)
    with pytest.raises(ValueError, match="step 1"):
        read_idx_rows(path, [slice(0, 4, 2)])
    with pytest.raises(ValueError, match="increasing order without overlaps"):
        read_idx_rows(path, [slice(1, 3), slice(2, 4)])
    with pytest.raises(IDXFormatError, match="no dimensions"):
        read_idx_rows(write_idx(tmp_path / "scalar.idx", np.array(7, dtype=np.uint8), compress=compress), [])


@pytest.mark.parametrize("compress", [False, True])
def test_idx_rows_hold_only_their_rows_in_memory(tmp_path, compress):
    """Peak memory (tracemalloc, which sees NumPy's and Python's allocations) of reading a quarter of an 8 MB
    file: the rows and buffers of 2 MiB at most, where reading all of it takes the whole file at least."""
    import tracemalloc

    array = np.random.default_rng(2).integers(0, 256, (2000, 4096), dtype=np.uint8)
    path = write_idx(tmp_path / "big.idx", array, compress=compress)
    peak = {}
    for name, rows in (("rows", slice(1000, 1500)), ("whole", slice(None))):
        tracemalloc.start()
        try:
            result = read_idx_rows(path, [rows])[0] if name == "rows" else read_idx(path)
            peak[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(result, array[rows])
    assert peak["rows"] < array[1000:1500].nbytes + (2 << 20) and peak["whole"] >= array.nbytes, peak


def test_idx_rows_of_rows_without_values(tmp_path):
    path = write_idx(tmp_path / "empty-rows.idx", np.zeros((5, 0, 3), dtype=np.uint8))
    assert [part.shape for part in read_idx_rows(path, [slice(0, 2), slice(4, 5)])] == [(2, 0, 3), (1, 0, 3)]


def test_idx_missing_file_and_unsupported_dtype(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx_header(tmp_path / "missing.idx")
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "a.idx", np.arange(3, dtype=np.int64))


# ---------------------------------------------------------------- MNIST, synthetic files


def make_fake_mnist(folder, n_train=10, n_test=5, train_labels=None, compress=True):
    """Write four small IDX files shaped like MNIST (4 x 4 images) into ``folder``."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10
        if train_labels is None
        else train_labels,
        "test_images": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for key, array in arrays.items():
        name = FILES[key] + (".gz" if compress else "")
        write_idx(folder / name, array, compress=compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_split_on_fake_files(tmp_path, compress):
    arrays = make_fake_mnist(tmp_path, compress=compress)
    data = mnist(tmp_path, n_train=6, n_val=3)
    assert data.image_shape == (1, 4, 4) and data.n_classes == 10
    np.testing.assert_array_equal(data.Y_train, arrays["train_images"][:6].reshape(6, 16) / 255)
    np.testing.assert_array_equal(data.Y_val, arrays["train_images"][7:].reshape(3, 16) / 255)
    np.testing.assert_array_equal(data.C_val, arrays["train_labels"][7:])
    np.testing.assert_array_equal(data.Y_test, arrays["test_images"].reshape(5, 16) / 255)
    assert data.C_test.dtype == np.int64

    raw = mnist(tmp_path, n_train=6, n_val=3, normalize=False, dtype=np.float32, limit=2)
    assert raw.Y_train.dtype == np.float32 and raw.Y_test.shape == (2, 16)
    np.testing.assert_array_equal(raw.Y_val, arrays["train_images"][7:9].reshape(2, 16))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("limit", [None, 7])
def test_mnist_rows_are_the_shares_of_the_whole_data_set(tmp_path, compress, limit):
    """Each of P = 1, 2, 3 workers loads the rows share_rows gives it of every split (and the labels with them):
    those of the whole data set loaded then split, in the same order."""
    make_fake_mnist(tmp_path, n_train=20, n_test=9, compress=compress)
    whole = mnist(tmp_path, n_train=11, n_val=8, limit=limit)
    for P in (1, 2, 3):
        for worker in (types.SimpleNamespace(rank=rank, size=P) for rank in range(P)):
            rows_of = functools.partial(share_rows, reduction=worker)
            part = mnist(tmp_path, n_train=11, n_val=8, limit=limit, rows=rows_of)
            for split in ("train", "val", "test"):
                Y, C = getattr(whole, f"Y_{split}"), getattr(whole, f"C_{split}")
                mine = share_rows(Y.shape[0], worker)
                np.testing.assert_array_equal(getattr(part, f"Y_{split}"), Y[mine])
                np.testing.assert_array_equal(getattr(part, f"C_{split}"), C[mine])
                assert part.part[split] == (mine.start, Y.shape[0]) and part.whole_size(split) == Y.shape[0]
    assert whole.part is None
    with pytest.raises(ValueError, match=r"rows\(11\) must give a slice of step 1, got \[0, 1\]"):
        mnist(tmp_path, n_train=11, n_val=8, rows=lambda n: [0, 1])


def test_mnist_files_digest_tells_files_apart(tmp_path):
    make_fake_mnist(tmp_path / "a")
    make_fake_mnist(tmp_path / "b", compress=False)
    first = files_digest(tmp_path / "a")
    assert first == files_digest(tmp_path / "a") and first != files_digest(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        files_digest(tmp_path / "nowhere")


def test_mnist_environment_variable(tmp_path, monkeypatch):
    make_fake_mnist(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert mnist(n_train=5, n_val=5).Y_val.shape == (5, 16)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        mnist()


def test_mnist_default_folder_is_the_users_data_folder_wherever_ocdl_is_installed(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # installed outside a source checkout (no pyproject.toml above it), so ../shared/data/mnist is not looked at
    monkeypatch.setattr(importlib.import_module("ocdl.problems.mnist"), "__file__",
                        str(tmp_path / "site-packages" / "ocdl" / "problems" / "mnist.py"))
    folder = tmp_path / "data" / "ocdl" / "mnist"
    with pytest.raises(FileNotFoundError, match=f"in {folder}, or set {ENV_VAR}"):
        default_data_dir()
    folder.parent.mkdir(parents=True)
    make_fake_mnist(folder)
    assert default_data_dir() == folder
    assert mnist(n_train=5, n_val=5).Y_train.shape == (5, 16)
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_data_dir() == tmp_path / "home" / ".local" / "share" / "ocdl" / "mnist"


def test_mnist_folders_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_fake_mnist(tmp_path / "mnist")
    assert mnist("~/mnist", n_train=5, n_val=5).Y_val.shape == (5, 16)
    monkeypatch.setenv(ENV_VAR, "~/mnist")
    assert default_data_dir() == tmp_path / "mnist"


def test_mnist_reports_bad_folders_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        mnist(tmp_path / "nowhere")
    make_fake_mnist(tmp_path)
    (tmp_path / (FILES["test_labels"] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=FILES["test_labels"]):
        mnist(tmp_path, n_train=5, n_val=5)


def test_mnist_rejects_test_images_of_another_size(tmp_path):
    make_fake_mnist(tmp_path)
    write_idx(tmp_path / (FILES["test_images"] + ".gz"), np.zeros((5, 3, 4), dtype=np.uint8), compress=True)
    with pytest.raises(ValueError, match="test images are 3 x 4, the training images 4 x 4"):
        mnist(tmp_path, n_train=5, n_val=5)


def test_mnist_rejects_images_without_pixels(tmp_path):
    make_fake_mnist(tmp_path)  # was NumPy's "cannot reshape array of size 0 into shape (0,0)", naming no file
    write_idx(tmp_path / (FILES["train_images"] + ".gz"), np.zeros((10, 0, 0), dtype=np.uint8), compress=True)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: expected unsigned bytes of shape \(count, "
                                         r"rows, columns\), at least one pixel, got uint8 of shape \(10, 0, 0\)"):
        mnist(tmp_path, n_train=5, n_val=5)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros(9, dtype=np.uint8), "labels of shape \\(9,\\) for the 10 images"),
        (np.full(10, 10, dtype=np.uint8), "labels outside 0..9"),
        (np.full(10, -1, dtype=np.int8), "labels outside 0..9"),
    ],
)
def test_mnist_rejects_inconsistent_labels(tmp_path, labels, match):
    make_fake_mnist(tmp_path, train_labels=labels)
    with pytest.raises(ValueError, match=match):
        mnist(tmp_path, n_train=5, n_val=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_val": -1}, "n_val"),
        ({"limit": 0}, "limit"),
        ({"dtype": np.int32}, "dtype"),
        ({"n_train": 8, "n_val": 3}, "exceeds the 10 training images"),
        ({"n_train": 5, "n_val": 5, "verify": True}, "SHA-256"),
    ],
)
def test_mnist_rejects_bad_arguments(tmp_path, kwargs, match):
    make_fake_mnist(tmp_path)
    with pytest.raises(ValueError, match=match):
        mnist(tmp_path, **kwargs)


# ---------------------------------------------------------------- MNIST, real files


@pytest.fixture(scope="module")
def mnist_dir():
    try:
        return default_data_dir()
    except FileNotFoundError as error:
        pytest.skip(f"MNIST files not available: {error}")


def test_mnist_headers_have_full_sizes(mnist_dir):
    expected = {
        "train_images": (60000, 28, 28),
        "train_labels": (60000,),
        "test_images": (10000, 28, 28),
        "test_labels": (10000,),
    }
    for key, shape in expected.items():
        assert read_idx_header(find_file(mnist_dir, FILES[key])) == (np.dtype(np.uint8), shape)


def test_mnist_real_files(mnist_dir):
    data = mnist(mnist_dir, limit=64, verify=True)
    assert data.Y_train.shape == data.Y_val.shape == data.Y_test.shape == (64, 784)
    assert data.image_shape == (1, 28, 28) and data.Y_train.dtype == np.float64
    assert data.Y_train.min() == 0.0 and data.Y_train.max() == 1.0
    np.testing.assert_array_equal(data.C_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    for Y in (data.Y_train, data.Y_val, data.Y_test):
        np.testing.assert_array_equal(Y * 255, np.round(Y * 255))

    labels = read_idx(find_file(mnist_dir, FILES["train_labels"]))
    np.testing.assert_array_equal(data.C_val, labels[50000:50064])
    test_labels = read_idx(find_file(mnist_dir, FILES["test_labels"]))
    np.testing.assert_array_equal(np.bincount(test_labels)[:3], [980, 1135, 1032])
