"""I/O at the edges: atomic writes, JSON records, weights files.

Every output is written to a temporary file in the same directory and renamed into place, so a
killed job never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from shiftcurv import ShiftcurvError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any file
    try:
        yield Path(tmp)
        _fsync(tmp)  # the data is on disk before the name points at it (node crashes)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(obj: Any) -> Any:
    """NaN/inf become null in JSON (strict JSON has no NaN); numpy/torch scalars become floats."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, record: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "record") -> dict:
    path = Path(path)
    if not path.exists():
        raise ShiftcurvError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShiftcurvError(f"{what} file is truncated or unreadable: {path} ({e})") from None


def save_state(path: str | os.PathLike, state: dict, metadata: dict | None = None) -> None:
    """Save a flat {name: tensor} dict with safetensors (no pickle: safe to load anywhere)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    meta = {k: json.dumps(_jsonable(v)) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_state(path: str | os.PathLike, what: str = "weights") -> tuple[dict, dict]:
    """Load tensors and metadata written by `save_state`; a damaged file is named in the error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise ShiftcurvError(f"{what} file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise ShiftcurvError(f"{what} file is truncated or unreadable: {path} ({e})") from None
