"""Helpers shared by the CLI steps: settings, threads, progress, provenance, model rebuild."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from shiftcurv import ShiftcurvError, __version__


def add_settings_argument(p, required: bool = True) -> None:
    p.add_argument("--settings", required=required, metavar="JSON|@FILE",
                   help="the step's settings as JSON text, or @path to a JSON/YAML file")


def parse_settings(text: str) -> dict:
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.exists():
            raise ShiftcurvError(f"settings file not found: {path}")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ShiftcurvError(f"--settings is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ShiftcurvError("--settings must be a JSON object")
    return value


def parse_json_argument(text: str, option: str):
    """A JSON argument given as text or as @FILE (`option` names it in errors)."""
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.exists():
            raise ShiftcurvError(f"{option} file not found: {path}")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ShiftcurvError(f"{option} is not valid JSON: {e}") from None


def require(settings: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in settings]
    if missing:
        raise ShiftcurvError(f"--settings lacks {', '.join(missing)}")


def add_minima_arguments(p) -> None:
    """The inputs of a step after the minima (measure, sample): the data, θ_tr, θ_test and the
    records of the SGD run and of both minima."""
    p.add_argument("--data", required=True, help="dataset .npz from prepare-data")
    p.add_argument("--theta-train", required=True, help="θ_tr (.safetensors)")
    p.add_argument("--theta-test", required=True, help="θ_test (.safetensors)")
    p.add_argument("--train-record", required=True, help="the SGD run's record")
    p.add_argument("--min-records", required=True, nargs=2, metavar=("MIN_TRAIN", "MIN_TEST"))


def add_config_arguments(p) -> None:
    """--config FILE or --config-json TEXT (what Snakemake passes), one of them required."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the sweep config (YAML)")
    src.add_argument("--config-json", help="the resolved config as JSON (what Snakemake passes)")


def load_config_arguments(args) -> dict:
    """The validated sweep config from --config or --config-json."""
    from shiftcurv.config import load_config, normalise_numbers, validate

    if args.config:
        return load_config(args.config)
    try:
        return validate(normalise_numbers(json.loads(args.config_json)))
    except json.JSONDecodeError as e:
        raise ShiftcurvError(f"--config-json is not valid JSON: {e}") from None


def add_threads_argument(p) -> None:
    p.add_argument("--threads", type=int, default=int(os.environ.get("SHIFTCURV_THREADS", 1)),
                   help="torch CPU threads (default 1; results are bit-identical only for the "
                        "same thread count)")


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def log(msg: str) -> None:
    """A time-stamped progress line on stderr (the rule's log: file in the workflow)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        rev = out.stdout.strip()
        if rev:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
            return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def provenance() -> dict:
    import torch

    return {"shiftcurv_version": __version__, "git_revision": git_revision(),
            "torch_version": torch.__version__, "host": platform.node(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "threads": torch.get_num_threads(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def dtype_of(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def resolve_device(name: str | None) -> str:
    """cpu | cuda | auto (cuda when one is visible) -> the torch device to compute on."""
    import torch

    name = name or "cpu"
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ShiftcurvError(f"device is cuda but torch {torch.__version__} sees no CUDA device "
                             f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    if name not in ("cpu", "cuda"):
        raise ShiftcurvError(f"unknown device {name!r}; known: cpu, cuda, auto")
    return name


def build_model(arch: dict, dataset, state: dict | None = None, dtype=None, device=None):
    """The cell's network; with `state`, its weights (a state dict from a weights file), loaded
    after casting to `dtype` so that float64 minima are not rounded through float32; on
    `device` (the Objective computes wherever the model is)."""
    from shiftcurv import models

    model = models.build(arch, dataset.in_shape, dataset.n_classes)
    if dtype is not None:
        model = model.to(dtype)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise ShiftcurvError(f"weights do not fit architecture {arch}: {first}") from None
    return model if device is None else model.to(device)


def open_netcdf(path: str, what: str, made_by: str):
    """A gathered netCDF file, loaded; missing or damaged gives one line naming it."""
    import xarray as xr

    if not Path(path).exists():
        raise ShiftcurvError(f"{what} not found: {path} (run `shiftcurv {made_by}`)")
    try:
        return xr.open_dataset(path, engine="netcdf4").load()
    except (OSError, ValueError) as e:
        raise ShiftcurvError(f"{what} is truncated or unreadable: {path} ({e})") from None
