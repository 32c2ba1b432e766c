"""Cells and their paths: config → cells → canonical directories (torch-free: the Snakefile
imports this at parse time).

A cell is (dataset, arch, temperature, batch size, seed); its directory is

    results/runs/{dataset}/{arch}/T~{T}/B~{B}/seed~{seed}/

with T in one canonical format (`format_temperature`), so 1e-4, 0.0001 and 1.0e-04 are one cell.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass

RESULTS = "results"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # safe in paths and shell words
# per-cell step outputs, relative to the cell directory
TRAIN_OUT = {"weights": "theta_sgd.safetensors", "record": "train.json"}
MIN_OUT = {split: {"weights": f"theta_{split}.safetensors", "record": f"min_{split}.json"}
           for split in ("train", "test")}
MEASURE_OUT = "measure.json"
EQ4_OUT = "eq4_{chain}.json"  # one per chain (sampler x ladder step) when eq4 is enabled
DATA_FILE = "results/data/{dataset}.npz"


def format_temperature(t: float | str) -> str:
    """Canonical spelling of a temperature: shortest round-trip mantissa, 2-digit exponent
    (1e-04, 2.5e-05). Equal floats always give the same string."""
    x = float(t)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
    mant, exp = f"{x:.15e}".split("e")
    mant = repr(float(mant))  # drop trailing zeros and float noise (e.g. 2.5000000000000000)
    mant = mant[:-2] if mant.endswith(".0") else mant
    return f"{mant}e{int(exp):+03d}"


@dataclass(frozen=True)
class Cell:
    dataset: str
    arch: str
    temperature: str  # canonical string
    batch_size: int
    seed: int

    @property
    def T(self) -> float:
        return float(self.temperature)

    @property
    def dir(self) -> str:
        return (f"{RESULTS}/runs/{self.dataset}/{self.arch}/T~{self.temperature}/"
                f"B~{self.batch_size}/seed~{self.seed}")

    @property
    def wildcards(self) -> dict:
        return {"dataset": self.dataset, "arch": self.arch, "T": self.temperature,
                "B": str(self.batch_size), "seed": str(self.seed)}


def cells(config: dict) -> list[Cell]:
    """Every cell of the sweep, in a stable order (config order on each axis)."""
    return list(_cells(axes(config)))


def axes(config: dict) -> tuple:
    """The config's five cell axes as tuples (a key for caches of per-config cell lists)."""
    return (tuple(config["datasets"]), tuple(config["archs"]), tuple(config["temperatures"]),
            tuple(config["batch_sizes"]), tuple(config["seeds"]))


def _cells(key: tuple) -> tuple[Cell, ...]:
    """The cells of these `axes`, built once per axes (per-job callers such as a pack's steps
    ask again for every cell: 10 000 cells took 10 ms each time). Equal axes give equal cells."""
    try:
        return _cells_cached(key)
    except TypeError:  # an unhashable value: the schema should have refused it; build anyway
        return _cells_cached.__wrapped__(key)


@functools.lru_cache(maxsize=8)
def _cells_cached(key: tuple) -> tuple[Cell, ...]:
    datasets, archs, temperatures, batch_sizes, seeds = key
    temps = list(dict.fromkeys(format_temperature(t) for t in temperatures))
    return tuple(Cell(d, a, t, int(b), int(s)) for d, a, t, b, s in itertools.product(
        datasets, archs, temps, batch_sizes, seeds))


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]



def dataset_train_size(opts: dict) -> int | None:
    """Training-set size implied by a dataset's options (None when unknown before building)."""
    if opts["type"] == "mnist1d":
        return int(opts.get("num_samples", 5000) * opts.get("train_split", 0.8))
    if opts["type"] == "gaussian-teacher":
        return int(opts.get("n_train", 512))
    if opts["type"] == "cifar10":
        return int(opts.get("train_samples", 50000))
    return None


def dataset_test_size(opts: dict) -> int | None:
    """Test-set size implied by a dataset's options (None when unknown before building)."""
    if opts["type"] == "mnist1d":
        n = opts.get("num_samples", 5000)
        return n - int(n * opts.get("train_split", 0.8))
    if opts["type"] == "gaussian-teacher":
        return int(opts.get("n_test", 256))
    if opts["type"] == "cifar10":
        return int(opts.get("test_samples", 10000))
    return None
