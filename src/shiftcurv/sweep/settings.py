"""Per-step settings of a cell: only the cell's own resolved values, passed to each `shiftcurv`
step as JSON (Snakemake's `params`, its rerun trigger: adding a temperature never touches the
other cells). Torch-free."""

from __future__ import annotations

import functools
import json
import math

from shiftcurv import ShiftcurvError
from shiftcurv.sweep.cells import (
    Cell,
    _cells,
    axes,
    cells,
    dataset_test_size,
    dataset_train_size,
    format_temperature,
)


def dataset_settings(config: dict, dataset: str) -> dict:
    from shiftcurv.sweep.fig5 import catalog

    opts = dict(catalog(config, "datasets")[dataset])
    return {"name": opts.pop("type", dataset), "options": opts}


def train_settings(config: dict, cell: Cell) -> dict:
    from shiftcurv.sweep.temperature import epoch_budget, learning_rate

    tr = config["train"]
    return {
        "arch": config["archs"][cell.arch], "temperature": cell.T, "batch_size": cell.batch_size,
        "seed": cell.seed, "l2": tr["l2"], "epochs_ref": tr["epochs_ref"],
        "temperature_ref": tr["temperature_ref"], "max_epochs": tr["max_epochs"],
        "checkpoint_every": tr["checkpoint_every"], "device": tr["device"],
        # derived, so a change of rule shows in the params too
        "lr": learning_rate(cell.T, cell.batch_size),
        "epochs": epoch_budget(cell.T, tr["epochs_ref"], tr["temperature_ref"], tr["max_epochs"]),
    }


def _device(config: dict) -> dict:
    """Minimum finding and measures compute where training does; stated only when not the CPU,
    so that CPU sweeps keep the params (and so the finished jobs) they had."""
    device = config["train"]["device"]
    return {} if device == "cpu" else {"device": device}


def paper_batch_size(config: dict, arch: str) -> int:
    """The paper method's minibatch size for `arch` (paper: 5000 VGG, 10000 ResNet)."""
    b = config["minimize"]["batch_size"]
    return int(b.get(arch, b.get("default", 5000)) if isinstance(b, dict) else b)


def split_size(config: dict, dataset: str, split: str) -> int | None:
    opts = config["datasets"][dataset]
    opts = opts | {"type": opts.get("type", dataset)}
    return dataset_train_size(opts) if split == "train" else dataset_test_size(opts)


def flow_time(config: dict, cell: Cell, split: str) -> float:
    """τ_max of the split's minimum: `minimize.tau_max` (a number, or {train, test}) when the
    config gives it, else the flow time the paper's protocol reaches on this split (App. G:
    minibatch GD at lr with batch B_arch, no shuffle, last batch kept, max_epochs epochs),

        τ = lr · ⌈N_split / B_arch⌉ · max_epochs

    (CIFAR-10: train 10 (VGG, B 5000) / 5 (ResNet, B 10000), test 2 / 1; the default MNIST-1D:
    1 and 1). So `method: flow` and `method: paper` reach the same endpoint from one config."""
    mn = config["minimize"]
    given = mn.get("tau_max")
    if isinstance(given, dict):
        return float(given[split])
    if given is not None:
        return float(given)
    n = split_size(config, cell.dataset, split)
    if n is None:
        raise ShiftcurvError(f"minimize.tau_max: the size of dataset {cell.dataset!r}'s {split} "
                             f"split is not known before it is built: give tau_max")
    return float(mn["lr"]) * math.ceil(n / paper_batch_size(config, cell.arch)) * \
        int(mn["max_epochs"])


def minimize_settings(config: dict, cell: Cell, split: str) -> dict:
    mn = dict(config["minimize"])
    mn["batch_size"] = paper_batch_size(config, cell.arch)
    mn["tau_max"] = flow_time(config, cell, split)
    return {"arch": config["archs"][cell.arch], "split": split, "l2": config["train"]["l2"],
            **mn, **_device(config)}


def capped_temperatures(config: dict) -> dict[str, tuple[int, int]]:
    """{temperature: (epochs run, epochs the E·T budget asks)} for every temperature whose budget
    train.max_epochs cuts: those cells train for less E·T than the others."""
    from shiftcurv.sweep.temperature import epoch_budget

    tr = config["train"]
    out = {}
    for t in dict.fromkeys(format_temperature(t) for t in config["temperatures"]):
        want = epoch_budget(float(t), tr["epochs_ref"], tr["temperature_ref"])
        if want > tr["max_epochs"]:
            out[t] = (int(tr["max_epochs"]), want)
    return out


def capped_lines(config: dict) -> list[str]:
    """One warning line per capped temperature, naming its cells (none when nothing is capped)."""
    per_t = len(cells(config)) // max(1, len(dict.fromkeys(
        format_temperature(t) for t in config["temperatures"])))
    tr = config["train"]
    cells_at = f"{per_t} cell{'s' if per_t != 1 else ''}"
    return [f"shiftcurv: warning: train.max_epochs {run} caps the {cells_at} at T~{t} "
            f"(runs/*/*/T~{t}/...): {run} epochs where E*T = {tr['epochs_ref']:g} x "
            f"{tr['temperature_ref']:g} asks {want}, so they train for E*T = {run * float(t):.3g} "
            f"instead of {want * float(t):.3g}"
            for t, (run, want) in capped_temperatures(config).items()]


def measure_settings(config: dict, cell: Cell) -> dict:
    return {"arch": config["archs"][cell.arch], "l2": config["train"]["l2"], "seed": cell.seed,
            **config["measure"], **_device(config)}


def eq4_samplers(config: dict) -> list[str]:
    """The samplers the `eq4` section runs ([] when it is off): `sampler` as a list."""
    eq4 = config.get("eq4") or {}
    if not eq4.get("enabled"):
        return []
    sampler = eq4.get("sampler", "rr")
    return [sampler] if isinstance(sampler, str) else list(sampler)


def eq4_ladder(config: dict) -> list[float]:
    """The within-basin temperature ladder: each sampled cell's chain runs at T·m for every m
    (1 included: the cell's own temperature first)."""
    ladder = (config.get("eq4") or {}).get("ladder") or [1.0]
    return [1.0] + sorted(float(m) for m in ladder if float(m) != 1.0)


def eq4_chain_name(sampler: str, scale: float) -> str:
    """`rr` at the cell's own T, `rr_x0.5` at T/2 (the record eq4_<name>.json, the job
    sample_<name>).

    >>> [eq4_chain_name("rr", m) for m in (1.0, 0.5, 2.0)]
    ['rr', 'rr_x0.5', 'rr_x2']
    """
    return sampler if float(scale) == 1.0 else f"{sampler}_x{float(scale):g}"


def parse_eq4_chain(name: str) -> tuple[str, float]:
    """(sampler, temperature scale) of a chain name.

    >>> parse_eq4_chain("wr_x0.25"), parse_eq4_chain("rr")
    (('wr', 0.25), ('rr', 1.0))
    """
    sampler, _, scale = name.partition("_x")
    return sampler, float(scale) if scale else 1.0


def eq4_chains(config: dict) -> list[str]:
    """Every chain a sampled cell runs: each sampler at each ladder step ([] when off)."""
    return [eq4_chain_name(s, m) for s in eq4_samplers(config) for m in eq4_ladder(config)]


def eq4_cells(config: dict) -> list[Cell]:
    """The cells the `eq4` section samples: every cell, or those of `eq4.seeds`; none when off."""
    if not eq4_samplers(config):
        return []
    seeds = config["eq4"].get("seeds")
    key = (axes(config), None if seeds is None else tuple(seeds))
    try:
        return list(_eq4_cells(key))
    except TypeError:  # unhashable: not cached
        return list(_eq4_cells.__wrapped__(key))


@functools.lru_cache(maxsize=8)
def _eq4_cells(key: tuple) -> tuple[Cell, ...]:
    """Cached: per-cell and per-pack callers (a pack's steps, its runtime) ask for every cell."""
    cell_axes, seeds = key
    return tuple(c for c in _cells(cell_axes) if seeds is None or c.seed in seeds)


def eq4_settings(config: dict, cell: Cell, chain: str) -> dict:
    """The `shiftcurv sample` settings of a cell and chain: the chain's SGD (lr = m·T·B at ladder
    step m, B, α, seed) and the measure's dtype and chunking for the expansion points."""
    from shiftcurv.sweep.temperature import learning_rate

    sampler, scale = parse_eq4_chain(chain)
    eq4 = {k: v for k, v in config["eq4"].items() if k not in ("enabled", "seeds", "ladder")}
    ms = config["measure"]
    out = {"arch": config["archs"][cell.arch], "seed": cell.seed,
           "lr": learning_rate(scale * cell.T, cell.batch_size), "batch_size": cell.batch_size,
           "l2": config["train"]["l2"], "dtype": ms["dtype"], "chunk_size": ms["chunk_size"],
           "eq4": {**eq4, "sampler": sampler}, **_device(config)}
    if scale != 1.0:  # stated only on the ladder, so that plain chains keep their params
        out["temperature_scale"] = scale
    return out


def as_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
