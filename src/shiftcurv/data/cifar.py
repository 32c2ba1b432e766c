"""CIFAR-10 from the user's own extracted copy: the binary or the python release, never a download.

Compute nodes are offline, so the files must already be on disk (from
https://www.cs.toronto.edu/~kriz/cifar.html): `root` is the extracted `cifar-10-batches-bin/` or
`cifar-10-batches-py/` folder, or the folder that holds it. The python release is a set of
pickles; they are read with a restricted unpickler that builds only numpy arrays, so a planted
or damaged file cannot run code. numpy only (no torch): the config validator imports this.
"""

from __future__ import annotations

import _codecs
import pickle
from pathlib import Path

import numpy as np

from shiftcurv import ShiftcurvError

IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES  # binary release: one label byte, then 1024 R, 1024 G, 1024 B
N_CLASSES = 10

TRAIN_NAMES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_NAME = "test_batch"
FILES = {
    "binary": tuple(f"{n}.bin" for n in (*TRAIN_NAMES, TEST_NAME)),
    "python": (*TRAIN_NAMES, TEST_NAME),
}
SUBDIRS = {"binary": "cifar-10-batches-bin", "python": "cifar-10-batches-py"}


def _expected() -> str:
    return (f"expected {', '.join(FILES['binary'])} (binary release) or "
            f"{', '.join(FILES['python'])} (python release), in that folder or in its "
            f"{SUBDIRS['binary']}/ or {SUBDIRS['python']}/")


def find_cifar10(root: str | Path) -> tuple[str, Path, tuple[Path, ...]]:
    """(format, directory, the six files: five train batches then the test batch) under `root`.
    Binary is preferred when both releases are there: it needs no unpickling."""
    root = Path(root)
    if not root.exists():
        raise ShiftcurvError(f"CIFAR-10 folder not found: {root} ({_expected()}; it is never "
                             f"downloaded)")
    if not root.is_dir():
        raise ShiftcurvError(f"CIFAR-10 root is not a folder: {root} (extract the archive and "
                             f"point `root:` at the result; {_expected()})")
    candidates = [(fmt, root) for fmt in FILES] + [(fmt, root / SUBDIRS[fmt]) for fmt in FILES]
    for fmt, directory in candidates:
        files = tuple(directory / n for n in FILES[fmt])
        if any(f.exists() for f in files):
            missing = [f.name for f in files if not f.exists()]
            if missing:
                raise ShiftcurvError(f"CIFAR-10 ({fmt} release) file missing: "
                                     f"{directory / missing[0]} (missing: {', '.join(missing)};"
                                     f" expected {', '.join(FILES[fmt])})")
            return fmt, directory, files
    raise ShiftcurvError(f"no CIFAR-10 files in {root} ({_expected()})")


def source_problems(root: str | Path) -> list[str]:
    """Cheap checks for the config validator (names and sizes, no unpickling): one line each."""
    try:
        fmt, _, files = find_cifar10(root)
    except ShiftcurvError as e:
        return [str(e)]
    out = []
    for f in files:
        try:
            size = f.stat().st_size
        except OSError as e:
            out.append(f"cannot read {f}: {e.strerror}")
            continue
        if fmt == "binary":
            problem = _size_problem(size)
            if problem:
                out.append(f"{f}: {problem}")
        elif size == 0:
            out.append(f"{f}: empty file (truncated copy?)")
    return out


def read_cifar10(root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images uint8 (N, 3, 32, 32) (channel, row, column),
    labels int64 in 0..9; all 50000 + 10000 images of a complete copy, in file order."""
    fmt, _, files = find_cifar10(root)
    read = read_binary_batch if fmt == "binary" else read_python_batch
    batches = [read(f) for f in files]
    x_train = np.concatenate([x for x, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    return x_train, y_train, batches[-1][0], batches[-1][1]


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), on the [0, 1] scale. Exact, from
    a 256-bin histogram per channel: no float copy of 50000 images. A constant channel gets std
    1 (nothing to rescale) instead of a division by zero."""
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        values = np.arange(256) / 255.0
        mean = counts @ values / counts.sum()
        std = float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
        means.append(float(mean))
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def scale(x: np.ndarray, mean, std) -> np.ndarray:
    """uint8 images -> float32 (x / 255 - mean_c) / std_c, in place on one float32 copy."""
    out = x.astype(np.float32)
    for c, (m, s) in enumerate(zip(mean, std, strict=True)):
        out[:, c] *= np.float32(1.0 / (255.0 * s))
        out[:, c] -= np.float32(m / s)
    return out


def _size_problem(size: int) -> str | None:
    if size > 0 and size % RECORD_BYTES == 0:
        return None
    hint = (" (3074-byte records: that is CIFAR-100, not CIFAR-10)"
            if size > 0 and size % (RECORD_BYTES + 1) == 0 else " (truncated copy?)")
    return (f"size {size} bytes is not a positive multiple of {RECORD_BYTES} (1 label byte + "
            f"{IMAGE_BYTES} pixels per image){hint}")


def _check_labels(y: np.ndarray, path: Path) -> None:
    bad = np.flatnonzero((y < 0) | (y >= N_CLASSES))
    if bad.size:
        raise ShiftcurvError(f"{path}: label {int(y[bad[0]])} of image {int(bad[0])} is outside "
                             f"0..{N_CLASSES - 1}: not a CIFAR-10 file")


def read_binary_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One file of the binary release: (images uint8 (N, 3, 32, 32), labels int64)."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ShiftcurvError(f"cannot read {path}: {e.strerror or e}") from None
    problem = _size_problem(raw.size)
    if problem:
        raise ShiftcurvError(f"{path}: {problem}")
    records = raw.reshape(-1, RECORD_BYTES)
    y = records[:, 0].astype(np.int64)
    _check_labels(y, path)
    return np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32), y


def _numpy_attr(submodule: str, name: str):
    """numpy 2 moved numpy.core to numpy._core; pickles name either, so look in both (the new
    one first: touching numpy.core under numpy 2 warns)."""
    import importlib

    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"numpy has no {submodule}.{name}")


def _safe_dtype(*args):
    """np.dtype, minus object dtypes: nothing in CIFAR-10 holds Python objects."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"object dtype {dt} is not part of the CIFAR-10 format")
    return dt


# (module, name) -> how to get it: exactly what numpy array pickles (protocols 2 to 5, Python 2
# and 3, numpy 1 and 2) refer to, and nothing else
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_attr("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_attr("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_attr("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_attr("numeric", "_frombuffer"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _safe_dtype,
    ("_codecs", "encode"): lambda: _codecs.encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in `_ALLOWED`; anything else is refused before it
    is looked up, so it can never be called."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # the official files are Python 2 pickles
        self.path = path

    def find_class(self, module, name):
        get = _ALLOWED.get((module, name))
        if get is None:
            raise ShiftcurvError(f"refusing to unpickle {module}.{name} from {self.path}: not "
                                 f"part of the CIFAR-10 format")
        return get()

    def persistent_load(self, pid):
        raise ShiftcurvError(f"refusing to unpickle a persistent id from {self.path}: not part "
                             f"of the CIFAR-10 format")


def _key(d: dict, name: str):
    """d[b'name'] (Python 2 files) or d['name'] (written by Python 3); None when absent."""
    return d[name.encode()] if name.encode() in d else d.get(name)


def read_python_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One file of the python release: (images uint8 (N, 3, 32, 32), labels int64)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, path).load()
    except ShiftcurvError:
        raise
    except OSError as e:
        raise ShiftcurvError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ...: all "not a good file"
        why = " ".join(str(e).split()) or type(e).__name__
        raise ShiftcurvError(f"cannot unpickle {path}: {why} (truncated, or not the CIFAR-10 "
                             f"python release)") from None
    if not isinstance(d, dict):
        raise ShiftcurvError(f"{path}: holds a {type(d).__name__}, not the CIFAR-10 batch dict")
    data, labels = _key(d, "data"), _key(d, "labels")
    if data is None or labels is None:
        raise ShiftcurvError(f"{path}: no 'data' and 'labels' entries (keys: "
                             f"{sorted(map(str, d))}): not a CIFAR-10 batch")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[0] > 0 and data.shape[1] == IMAGE_BYTES):
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise ShiftcurvError(f"{path}: 'data' is a {what}, expected uint8 of shape "
                             f"(N, {IMAGE_BYTES}) with N >= 1")
    try:
        y = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    except (ValueError, OverflowError, TypeError):
        y = None
    if y is None or y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(data):
        got = (f"{y.dtype} of shape {y.shape}" if y is not None else type(labels).__name__)
        raise ShiftcurvError(f"{path}: 'labels' must be {len(data)} integers (one per image), "
                             f"got {got}")
    y = y.astype(np.int64)
    _check_labels(y, path)
    return data.reshape(-1, 3, 32, 32), y
