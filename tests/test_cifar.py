"""CIFAR-10 from a local copy: both releases read to the same arrays, the pickles cannot run code,
damaged copies fail with one line naming the file, and the dataset subsets and normalises as
documented. Every test writes a tiny fake copy (a few images per file) into tmp_path."""

import collections
import io
import os
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from shiftcurv import ShiftcurvError, data, sweep
from shiftcurv.config import checks as config_checks
from shiftcurv.config import normalise_numbers, validate
from shiftcurv.data import cifar

REPO = Path(__file__).resolve().parents[1]
NAMES = (*cifar.TRAIN_NAMES, cifar.TEST_NAME)
SIZES = (4, 3, 5, 2, 6, 7)  # five train batches (20 images), then the test batch (7)


@pytest.fixture(scope="module")
def batches():
    """name -> (pixels uint8 (n, 3072) in file order, labels list)."""
    rng = np.random.default_rng(7)
    return {name: (rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                   [int(v) for v in rng.integers(0, 10, size=n)])
            for name, n in zip(NAMES, SIZES, strict=True)}


def write_binary(directory: Path, batches) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (pixels, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], pixels], axis=1)
        (directory / f"{name}.bin").write_bytes(records.tobytes())
    return directory


def python3_pickle(pixels, labels, protocol=2, bytes_keys=False) -> bytes:
    d = {"batch_label": "training batch", "labels": labels, "data": pixels,
         "filenames": [f"img_{i}.png" for i in range(len(labels))]}
    if bytes_keys:
        d = {k.encode(): v for k, v in d.items()}
    return pickle.dumps(d, protocol=protocol)


def python2_pickle(pixels, labels) -> bytes:
    """What Python 2 and numpy 1 wrote for the official release: protocol 2, bytes as py2 `str`
    (SHORT_BINSTRING/BINSTRING: non-ASCII, so only encoding='bytes' reads them), numpy.core."""
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def i(n: int) -> bytes:
        return b"K" + bytes([n]) if 0 <= n < 256 else b"J" + struct.pack("<i", n)

    dtype = (b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
             + b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + i(0) + b"\x85"
             + s(b"b") + b"\x87R" + b"(" + i(1) + i(len(pixels)) + i(3072) + b"\x86" + dtype
             + b"\x89" + s(pixels.tobytes()) + b"tb")
    names = [b"caf\xe9_%d.png" % k for k in range(len(labels))]  # latin-1, like the originals
    return (b"\x80\x02}(" + s(b"batch_label") + s(b"training batch 1 of 5")
            + s(b"labels") + b"](" + b"".join(i(v) for v in labels) + b"e"
            + s(b"data") + array
            + s(b"filenames") + b"](" + b"".join(s(f) for f in names) + b"e" + b"u.")


def write_python(directory: Path, batches, writer=python2_pickle) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (pixels, labels) in batches.items():
        (directory / name).write_bytes(writer(pixels, labels))
    return directory


def one_line_error(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(ShiftcurvError, match=match) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# -- reading ----------------------------------------------------------------------------------
def test_both_releases_read_to_the_same_arrays_in_channel_row_column_order(tmp_path, batches):
    bin_dir = write_binary(tmp_path / "b" / "cifar-10-batches-bin", batches)
    write_python(tmp_path / "p" / "cifar-10-batches-py", batches)
    xb, yb, xb_test, yb_test = cifar.read_cifar10(tmp_path / "b")
    xp, yp, xp_test, yp_test = cifar.read_cifar10(tmp_path / "p")
    for a, b in ((xb, xp), (yb, yp), (xb_test, xp_test), (yb_test, yp_test)):
        assert np.array_equal(a, b)
    assert xb.shape == (20, 3, 32, 32) and xb.dtype == np.uint8 and xb_test.shape[0] == 7
    assert yb.dtype == np.int64 and yb.tolist() == sum((batches[n][1] for n in NAMES[:5]), [])
    assert yb_test.tolist() == batches["test_batch"][1]
    # image 1 of data_batch_2 is image 5 overall; its record in the file: label, R, G, B planes
    record = (bin_dir / "data_batch_2.bin").read_bytes()[3073:2 * 3073]
    assert record[0] == yb[5]
    for c, row, col in ((0, 0, 0), (1, 3, 17), (2, 31, 30), (0, 31, 31)):
        assert xb[5, c, row, col] == record[1 + c * 1024 + row * 32 + col]


def test_root_is_the_folder_or_its_parent_and_binary_wins(tmp_path, batches):
    write_binary(tmp_path / "cifar-10-batches-bin", batches)
    py = write_python(tmp_path / "cifar-10-batches-py", batches)
    fmt, directory, files = cifar.find_cifar10(tmp_path)
    assert (fmt, directory) == ("binary", tmp_path / "cifar-10-batches-bin")
    assert [f.name for f in files] == [f"{n}.bin" for n in NAMES]
    assert cifar.find_cifar10(py)[:2] == ("python", py)
    write_binary(py, batches)  # both releases in one folder
    assert cifar.find_cifar10(py)[0] == "binary"


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [False, True])
def test_python3_pickles_load(tmp_path, batches, protocol, bytes_keys):
    pixels, labels = batches["data_batch_1"]
    path = tmp_path / "data_batch_1"
    path.write_bytes(python3_pickle(pixels, labels, protocol, bytes_keys))
    x, y = cifar.read_python_batch(path)
    assert np.array_equal(x.reshape(len(y), -1), pixels) and y.tolist() == labels


def test_the_official_python2_layout_loads(tmp_path, batches):
    pixels, labels = batches["data_batch_1"]
    blob = python2_pickle(pixels, labels)
    pickletools.dis(blob, out=io.StringIO())  # a well-formed pickle
    assert b"numpy.core.multiarray" in blob
    with pytest.raises(UnicodeDecodeError):  # why the reader needs encoding="bytes"
        pickle.loads(blob)
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    x, y = cifar.read_python_batch(path)
    assert np.array_equal(x.reshape(len(y), -1), pixels) and y.tolist() == labels


# -- the restricted unpickler -----------------------------------------------------------------
class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker: Path, pixels, labels):
    touch = f"touch {marker}"
    yield "os.system", pickle.dumps({"data": _Reduce(os.system, touch), "labels": labels}, 2)
    yield "builtins.eval", pickle.dumps(
        {"data": pixels, "labels": _Reduce(eval, f"open({str(marker)!r}, 'w').close()")}, 4)
    yield "collections.OrderedDict", pickle.dumps(
        collections.OrderedDict(data=pixels, labels=labels), 2)
    yield "os.system (protocol 0 INST)", b"(S'" + touch.encode() + b"'\nios\nsystem\n."
    yield "posix.system (hidden after the data)", pickle.dumps(
        {"data": pixels, "labels": labels, "filenames": _Reduce(os.system, touch)}, 5)


@pytest.mark.parametrize("which", range(5))
def test_pickles_that_build_anything_else_are_refused_unrun(tmp_path, batches, which):
    marker = tmp_path / "PWNED"
    pixels, labels = batches["data_batch_1"]
    what, blob = list(_payloads(marker, pixels, labels))[which]
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    msg = one_line_error(cifar.read_python_batch, path,
                         match=r"refusing to unpickle \S+ from .*data_batch_1: not part of "
                               r"the CIFAR-10 format")
    assert what.split()[0].split(".")[1] in msg
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object), "labels": [0]}, 2))
    one_line_error(cifar.read_python_batch, path, match="cannot unpickle .*data_batch_1.*object")


# -- damaged copies: one line naming the file -------------------------------------------------
def test_missing_folder_file_and_empty_folder(tmp_path, batches):
    one_line_error(cifar.find_cifar10, tmp_path / "nope",
                   match=r"CIFAR-10 folder not found: .*nope \(expected data_batch_1.bin")
    one_line_error(cifar.find_cifar10, tmp_path, match="no CIFAR-10 files in .*cifar-10-batches")
    d = write_binary(tmp_path / "cifar-10-batches-bin", batches)
    (d / "data_batch_3.bin").unlink()
    msg = one_line_error(cifar.read_cifar10, tmp_path,
                         match=r"file missing: .*cifar-10-batches-bin/data_batch_3.bin")
    assert "test_batch.bin" in msg  # lists what it expects
    one_line_error(data.build, "cifar10", root=str(tmp_path), train_samples=5, test_samples=5,
                   match="data_batch_3.bin")


def test_truncated_binary_and_bad_label(tmp_path, batches):
    d = write_binary(tmp_path, batches)
    path = d / "data_batch_2.bin"
    good = path.read_bytes()
    path.write_bytes(good[:-10])
    one_line_error(cifar.read_cifar10, tmp_path,
                   match=r"data_batch_2.bin: size 9209 bytes is not a positive multiple of 3073")
    assert cifar.source_problems(tmp_path) == [
        f"{path}: size 9209 bytes is not a positive multiple of 3073 (1 label byte + 3072 pixels "
        f"per image) (truncated copy?)"]
    path.write_bytes(b"")
    one_line_error(cifar.read_binary_batch, path, match="size 0 bytes")
    path.write_bytes(bytes([3]) + good[1:3073] + bytes([10]) + good[3074:])
    one_line_error(cifar.read_cifar10, tmp_path,
                   match=r"data_batch_2.bin: label 10 of image 1 is outside 0..9")


def test_damaged_python_batches(tmp_path, batches):
    pixels, labels = batches["data_batch_1"]
    path = tmp_path / "data_batch_1"
    for blob, match in [
        (python3_pickle(pixels[:, :3000], labels), r"'data' is a uint8 array of shape \(4, 3000\)"),
        (python3_pickle(pixels.astype(np.int16), labels), "'data' is a int16 array"),
        (python3_pickle(pixels, labels[:-1]), "'labels' must be 4 integers"),
        (python3_pickle(pixels, [0, 1, 2, 12]), "label 12 of image 3 is outside 0..9"),
        (python3_pickle(pixels, ["a"] * 4), "'labels' must be 4 integers"),
        (pickle.dumps([pixels, labels], 2), "holds a list, not the CIFAR-10 batch dict"),
        (pickle.dumps({"pixels": pixels}, 2), "no 'data' and 'labels' entries"),
        (python3_pickle(pixels, labels)[:500], "cannot unpickle .*truncated"),
    ]:
        path.write_bytes(blob)
        msg = one_line_error(cifar.read_python_batch, path, match=match)
        assert str(path) in msg


def test_source_problems_are_cheap_and_named(tmp_path, batches):
    assert cifar.source_problems(write_binary(tmp_path / "b", batches)) == []
    py = write_python(tmp_path / "p", batches)
    assert cifar.source_problems(tmp_path / "p") == []
    (py / "test_batch").write_bytes(b"")
    assert cifar.source_problems(py) == [f"{py / 'test_batch'}: empty file (truncated copy?)"]
    (py / "data_batch_1").write_bytes(b"not a pickle at all")  # not unpickled here
    assert len(cifar.source_problems(py)) == 1
    assert cifar.source_problems(tmp_path / "nope")[0].startswith("CIFAR-10 folder not found")


# -- the dataset ------------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path, batches) -> str:
    write_binary(tmp_path / "cifar-10-batches-bin", batches)
    return str(tmp_path)


def test_seeded_subsets_are_reproducible_and_nested(root):
    ds = data.build("cifar10", root=root, train_samples=8, test_samples=5, seed=3)
    assert ds.x_train.shape == (8, 3, 32, 32) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (5, 3, 32, 32) and ds.y_train.dtype == np.int64
    assert ds.n_classes == 10 and ds.in_shape == (3, 32, 32)
    again = data.build("cifar10", root=root, train_samples=8, test_samples=5, seed=3)
    assert np.array_equal(ds.x_train, again.x_train) and np.array_equal(ds.y_test, again.y_test)
    raw_train, _, raw_test, _ = cifar.read_cifar10(root)

    def rows(d, split, raw):  # which raw images a built split holds (normalise=False: x/255)
        x = getattr(d, f"x_{split}")
        return {int(np.flatnonzero((raw.reshape(len(raw), -1) == np.rint(r.ravel() * 255))
                                   .all(axis=1))[0]) for r in x}

    plain = dict(root=root, test_samples=5, seed=3, normalise=False)
    small = data.build("cifar10", train_samples=4, **plain)
    big = data.build("cifar10", train_samples=8, **plain)
    other = data.build("cifar10", train_samples=8, **(plain | {"seed": 4}))
    assert rows(small, "train", raw_train) < rows(big, "train", raw_train)  # nested
    assert rows(big, "train", raw_train) != rows(other, "train", raw_train)
    assert rows(small, "test", raw_test) == rows(big, "test", raw_test)  # test set kept
    assert len(rows(big, "test", raw_test)) == 5


def test_normalised_with_the_training_subsets_statistics(root):
    ds = data.build("cifar10", root=root, train_samples=12, test_samples=7, seed=1)
    assert np.allclose(ds.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(ds.x_train.std(axis=(0, 2, 3)), 1, atol=1e-5)
    _, _, raw_test, y_test = cifar.read_cifar10(root)  # all 7 test images: file order
    mean = np.array(ds.meta["mean"])[None, :, None, None]
    std = np.array(ds.meta["std"])[None, :, None, None]
    assert np.allclose(ds.x_test, (raw_test / 255.0 - mean) / std, atol=1e-5)
    assert np.array_equal(ds.y_test, y_test)
    assert not np.allclose(ds.x_test.mean(axis=(0, 2, 3)), 0, atol=1e-3)  # not its own stats
    assert ds.meta | {"mean": 0, "std": 0, "directory": 0} == {
        "root": root, "format": "binary", "train_samples": 12, "test_samples": 7, "seed": 1,
        "normalise": True, "mean": 0, "std": 0, "directory": 0}


def test_both_releases_build_the_same_dataset(tmp_path, batches, root):
    write_python(tmp_path / "py" / "cifar-10-batches-py", batches)
    a = data.build("cifar10", root=root, train_samples=9, test_samples=3)
    b = data.build("cifar10", root=str(tmp_path / "py"), train_samples=9, test_samples=3)
    assert b.meta["format"] == "python"
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)


def test_too_many_samples_or_no_root_fail(root):
    one_line_error(data.build, "cifar10", root=root, train_samples=21, test_samples=7,
                   match="train_samples=21 but .*cifar-10-batches-bin holds 20 train images")
    one_line_error(data.build, "cifar10", root=root, train_samples=20, test_samples=8,
                   match="test_samples=8 but .* holds 7 test images")
    one_line_error(data.build, "cifar10", root=root, match="train_samples=50000")  # defaults
    one_line_error(data.build, "cifar10", match=r"datasets.cifar10 needs `root:`")


def test_prepare_and_load_round_trip(tmp_path, root):
    ds = data.prepare("cifar10", tmp_path / "c.npz", root=root, train_samples=6, test_samples=4)
    back = data.load(tmp_path / "c.npz")
    assert back.name == "cifar10" and back.n_classes == 10 and back.meta == ds.meta
    assert np.array_equal(back.x_train, ds.x_train) and np.array_equal(back.y_test, ds.y_test)
    assert back.x_train.shape == (6, 3, 32, 32)


# -- the config checks ------------------------------------------------------------------------
def test_data_source_problems_name_the_root(tmp_path, root):
    config = {"datasets": {"cifar10": {"root": str(tmp_path / "nope")},
                           "small": {"type": "cifar10", "root": root, "train_samples": 10},
                           "none": {"type": "cifar10"},
                           "gaussian-teacher": {"n_train": 64}}}
    problems = config_checks.data_source_problems(config)
    assert len(problems) == 2
    assert problems[0].startswith("datasets.cifar10.root: CIFAR-10 folder not found: ")
    assert "nope" in problems[0]
    assert problems[1].startswith("datasets.none.root: missing")


def test_a_dry_run_config_needs_no_files(tmp_path):
    config = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    config.pop("fig5", None)  # a fig5 section would name the tiny dataset, replaced here
    config["datasets"] = {"cifar10": {"root": str(tmp_path / "nope"), "train_samples": 1000,
                                      "test_samples": 100}}
    validate(normalise_numbers(config))  # parse time: no files looked at
    assert sweep.dataset_train_size({"type": "cifar10"}) == 50000
    assert config_checks.dataset_option_problems("c", "cifar10", {"train_samples": 0}) == [
        "datasets.c.train_samples: must be >= 1 and <= 50000, got 0"]
    assert config_checks.dataset_option_problems("c", "cifar10", {"normalise": 1}) == [
        "datasets.c.normalise: 1 is not a boolean"]
    assert config_checks.data_source_problems(config)[0].startswith("datasets.cifar10.root: ")
