"""The paper's Fig. 5 experiments (Appendix G.1): what runs, where its files go, and with which
settings. Torch-free: the Snakefile imports this at parse time. Reading of the protocol:
docs/fig5.md.

*Temperature collapse* (two stages). Stage 1, once per seed: SGD with momentum at a large batch
and a step-decayed lr, trained to convergence. Stage 2, for every (lr, B) of the grid and every
seed: continue from that seed's stage-1 weights (BN running statistics included) with plain SGD
at constant lr for a fixed number of epochs. The claim: final train and test loss depend on
T = lr/B, not on lr and B separately.

*Shift experiments*, trial t = 0..trials-1, each from a fresh init (seed t): `default` trains on
the dataset's own split; `shuffle_seed~t` on the pooled data split again at random with the
default sizes; `sample_size~n` on n pooled samples split proportionally (shiftcurv.data.splits).
Default and shuffled trials share their init seed, so they compare pairwise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from shiftcurv import ShiftcurvError
from shiftcurv.sweep.cells import dataset_test_size, dataset_train_size, format_temperature

EXPERIMENTS = ("temperature", "shuffle", "sample_size")
ROOT = "results/fig5/{dataset}/{arch}"
STAGE1_DIR = ROOT + "/stage1/seed~{seed}"
STAGE2_DIR = ROOT + "/stage2/lr~{lr}/B~{B}/seed~{seed}"
SHIFT_DIR = ROOT + "/shift/{split}/seed~{seed}"
WEIGHTS, RECORD = "theta.safetensors", "train.json"
NC = "results/fig5.nc"
SUMMARY = "results/fig5_summary.json"
FIGURE_NAMES = ("fig5", "fig5_bn")
SPLIT_RE = r"default|shuffle_seed~[0-9]+|sample_size~[0-9]+"


@dataclass(frozen=True)
class Stage2Cell:
    lr: str  # canonical spelling (format_temperature), as in the path
    batch_size: int
    seed: int

    @property
    def T(self) -> float:
        return float(self.lr) / self.batch_size


def section(config: dict) -> dict | None:
    """The validated `fig5` section (schema defaults filled in), or None when absent."""
    return config.get("fig5")


def wildcards(config: dict) -> dict:
    f = config["fig5"]
    return {"dataset": f["dataset"], "arch": f["arch"]}


def stage2_cells(config: dict) -> list[Stage2Cell]:
    """Every (lr, B, seed) of the stage-2 grid whose T = lr/B lies in `temperature_range`."""
    f = config["fig5"]
    lo, hi = f["stage2"].get("temperature_range") or (0.0, float("inf"))
    lrs = list(dict.fromkeys(format_temperature(lr) for lr in f["stage2"]["lrs"]))
    out = []
    for lr, b, seed in itertools.product(lrs, f["stage2"]["batch_sizes"], f["seeds"]):
        if lo * (1 - 1e-12) <= float(lr) / b <= hi * (1 + 1e-12):
            out.append(Stage2Cell(lr, int(b), int(seed)))
    return out


def shift_runs(config: dict) -> list[tuple[str, int]]:
    """(split label, seed) of every shift-experiment run; the default split serves both."""
    f = config["fig5"]
    if not {"shuffle", "sample_size"} & set(f["experiments"]):
        return []
    trials = range(f["shift"]["trials"])
    runs = [("default", t) for t in trials]
    if "shuffle" in f["experiments"]:
        runs += [(f"shuffle_seed~{t}", t) for t in trials]
    if "sample_size" in f["experiments"]:
        runs += [(f"sample_size~{n}", t) for n in f["shift"]["sample_sizes"] for t in trials]
    return runs


def split_of(label: str, seed: int) -> dict:
    """The data split a shift run trains on (shiftcurv.data.splits.apply)."""
    if label == "default":
        return {}
    kind, value = label.split("~")
    if kind == "shuffle_seed":
        return {"shuffle_seed": int(value)}
    if kind == "sample_size":
        return {"sample_size": int(value), "sample_seed": int(seed)}
    raise ShiftcurvError(f"unknown fig5 split {label!r}")


def record_files(config: dict) -> list[str]:
    """The train.json of every Fig. 5 run the config asks for (what fig5-gather reads)."""
    f = section(config)
    if f is None:
        return []
    w = wildcards(config)
    out = []
    if "temperature" in f["experiments"]:
        out += [STAGE1_DIR.format(**w, seed=s) + f"/{RECORD}" for s in f["seeds"]]
        out += [STAGE2_DIR.format(**w, lr=c.lr, B=c.batch_size, seed=c.seed) + f"/{RECORD}"
                for c in stage2_cells(config)]
    out += [SHIFT_DIR.format(**w, split=label, seed=s) + f"/{RECORD}"
            for label, s in shift_runs(config)]
    return out


def figure_files(config: dict, outdir: str = "results/figures") -> list[str]:
    return [] if section(config) is None else [f"{outdir}/{n}.png" for n in FIGURE_NAMES]


# -- per-run train settings (the params of each rule: a change reruns only that run) -------------
def catalog(config: dict, kind: str) -> dict:
    """`datasets` or `archs` of the main sweep plus the fig5-only entries."""
    return {**config[kind], **(config.get("fig5") or {}).get(kind, {})}


def _settings(config: dict, stage: dict, batch_size: int, lr: float, seed: int,
              epochs: int, **extra) -> dict:
    f = config["fig5"]
    return {
        "arch": catalog(config, "archs")[f["arch"]], "temperature": lr / batch_size,
        "batch_size": int(batch_size), "seed": int(seed), "l2": stage["weight_decay"],
        "momentum": stage["momentum"], "lr_milestones": list(stage.get("lr_milestones", [])),
        "lr_decay": stage.get("lr_decay", 1.0), "epochs_fixed": int(epochs),
        "checkpoint_every": min(f["checkpoint_every"], epochs),
        "device": config["train"]["device"],
        "lr": lr, **extra}


def stage1_settings(config: dict, seed: int) -> dict:
    s1 = config["fig5"]["stage1"]
    # evaluated once, at the end: the stage-1 losses are reported, not windowed
    return _settings(config, s1, s1["batch_size"], s1["lr"], seed, s1["epochs"],
                     eval_every=s1["epochs"], final_window=1)


def stage2_settings(config: dict, cell: Stage2Cell) -> dict:
    s2 = config["fig5"]["stage2"]
    return _settings(config, s2, cell.batch_size, float(cell.lr),
                     cell.seed, s2["epochs"], eval_every=1, final_window=s2["final_window"])


def shift_settings(config: dict, label: str, seed: int) -> dict:
    sh = config["fig5"]["shift"]
    return _settings(config, sh, sh["batch_size"], sh["lr"], seed, sh["epochs"],
                     eval_every=1, final_window=sh["final_window"], split=split_of(label, seed))


# -- config checks (after the schema; one line per problem, naming the key) ---------------------
def problems(config: dict) -> list[str]:
    """What the schema cannot say about the `fig5` section (after the schema filled its
    defaults), one line per problem naming the key."""
    f = section(config)
    if f is None:
        return []
    out = []
    for kind, key in (("datasets", "dataset"), ("archs", "arch")):
        for name, spec in f.get(kind, {}).items():
            if name in config[kind] and config[kind][name] != spec:
                out.append(f"fig5.{kind}.{name}: also defined differently in `{kind}`: "
                           f"use another name")
        if f[key] not in catalog(config, kind):
            out.append(f"fig5.{key}: {f[key]!r} is not in `{kind}` or fig5.{kind} (known: "
                       f"{', '.join(catalog(config, kind))})")
    for where in ("stage1", "shift"):
        bad = [m for m in f[where].get("lr_milestones", []) if not 0 < m < 1]
        if bad:
            out.append(f"fig5.{where}.lr_milestones: {bad} are not fractions in (0, 1)")
    lo_hi = f["stage2"].get("temperature_range")
    if lo_hi is not None and not 0 < lo_hi[0] <= lo_hi[1]:
        out.append(f"fig5.stage2.temperature_range: {lo_hi} is not [low, high] with 0 < low "
                   f"<= high")
    if "temperature" in f["experiments"] and not out and not stage2_cells(config):
        out.append(f"fig5.stage2: no (lr, B) of the grid has lr/B within temperature_range "
                   f"{lo_hi}")
    if len(set(f["seeds"])) != len(f["seeds"]):
        out.append(f"fig5.seeds: duplicate values in {f['seeds']}")
    spec = catalog(config, "datasets").get(f["dataset"])
    spec = None if spec is None else spec | {"type": spec.get("type", f["dataset"])}
    n_train = None if spec is None else dataset_train_size(spec)
    if n_train is not None:
        checks = []
        if "temperature" in f["experiments"]:
            checks.append(("stage1.batch_size", f["stage1"]["batch_size"], n_train))
            checks += [("stage2.batch_sizes", b, n_train) for b in f["stage2"]["batch_sizes"]]
        if shift_runs(config):
            checks.append(("shift.batch_size", f["shift"]["batch_size"], n_train))
        for where, b, n in checks:
            if b > n:
                out.append(f"fig5.{where}: {b} is larger than the {n} training samples of "
                           f"{f['dataset']!r}")
        n_test = dataset_test_size(spec)
        if "sample_size" in f["experiments"] and n_test is not None:
            pool = n_train + n_test
            for n in f["shift"]["sample_sizes"]:
                part = round(n * n_train / pool)
                if n > pool:
                    out.append(f"fig5.shift.sample_sizes: {n} is more than the {pool} samples "
                               f"of {f['dataset']!r} (train and test pooled)")
                elif part < f["shift"]["batch_size"]:
                    out.append(f"fig5.shift.sample_sizes: {n} leaves {part} training samples, "
                               f"fewer than shift.batch_size {f['shift']['batch_size']}")
    return out

