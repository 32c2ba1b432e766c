"""Fig. 5 records → one xarray.Dataset (results/fig5.nc), and the numbers that test its claims.

Layout (docs/fig5.md):
- stage 1, dim `seed`: `stage1_{train,test}_{loss,acc}` (full sets, eval mode, at the end) and
  `stage1_last_train_loss` (the last epoch's mean minibatch loss: train-mode BN at stage 1's B).
- stage 2, dims (`lr`, `batch_size`, `seed`), with the 2-D coordinate `temperature` = lr/B:
  `final_train_loss` (median over the last `final_window` epochs of the epoch's mean minibatch
  loss: train-mode BN, what SGD sees), `final_eval_train_loss` and `final_test_loss` (eval mode,
  full sets), and the first stage-2 epoch's `first_train_loss` / `first_eval_train_loss` (the BN
  mismatch at small B, compared across B at fixed T: `bn_mismatch`). Grid points outside
  `temperature_range` are NaN with status "skipped".
- shift, dims (`trial`) and (`sample_size`, `trial`): `{default,shuffle,sample}_{train,test}_loss`.
A run without a record is NaN with status "missing" (gather with --partial), never dropped.
"""

from __future__ import annotations

import math
import time

import numpy as np

from shiftcurv import __version__
from shiftcurv.sweep import fig5, format_temperature

STAGE2_VARS = {
    "final_train_loss": ("final_train_loss", "median over the last epochs of the mean minibatch "
                         "train loss (train-mode BN)"),
    "final_eval_train_loss": ("final_eval_train_loss", "median over the last epochs of the "
                              "full train loss (eval-mode BN)"),
    "final_test_loss": ("final_test_loss", "median over the last epochs of the full test loss "
                        "(eval-mode BN)"),
    "first_train_loss": (("history", "loss", 0), "mean minibatch train loss of the first "
                         "stage-2 epoch (train-mode BN)"),
    "first_eval_train_loss": (("history", "eval_train_loss", 0), "full train loss after the "
                              "first stage-2 epoch (eval-mode BN)"),
}
SHIFT_VARS = {"train": "final_train_loss", "test": "final_test_loss"}


def _value(record: dict | None, where) -> float:
    if record is None or record.get("status") != "ok":
        return math.nan
    try:
        if isinstance(where, tuple):
            return float(record[where[0]][where[1]][where[2]])
        return float(record[where])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan


def _status(record: dict | None) -> str:
    return "missing" if record is None else str(record.get("status", "failed"))


def build_dataset(config: dict, records: dict[str, dict | None], config_yaml: str = "",
                  git_revision: str = "unknown"):
    """`records` maps each path of `fig5.record_files(config)` to its JSON (None: missing)."""
    import xarray as xr

    f = config["fig5"]
    w = fig5.wildcards(config)
    seeds = list(f["seeds"])
    data_vars, coords = {}, {"seed": ("seed", seeds)}

    def rec(pattern, **kw):
        return records.get(pattern.format(**w, **kw) + f"/{fig5.RECORD}")

    if "temperature" in f["experiments"]:
        s1 = [rec(fig5.STAGE1_DIR, seed=s) for s in seeds]
        for split in ("train", "test"):
            for kind, units in (("loss", "nats"), ("acc", "1")):
                data_vars[f"stage1_{split}_{kind}"] = (
                    "seed", [_value(r, f"{split}_{kind}") for r in s1],
                    {"units": units, "long_name": f"stage-1 {split} {kind} (full set, eval mode)"})
        b1 = int(f["stage1"]["batch_size"])
        data_vars["stage1_last_train_loss"] = (
            "seed", [_value(r, ("history", "loss", -1)) for r in s1],
            {"units": "nats", "batch_size": b1,
             "long_name": f"mean minibatch train loss of stage 1's last epoch (train-mode BN, "
                          f"batch statistics at B = {b1})"})
        data_vars["stage1_status"] = ("seed", [_status(r) for r in s1])
        cells = fig5.stage2_cells(config)
        lrs = sorted({c.lr for c in cells}, key=float)
        bs = sorted({c.batch_size for c in cells})
        grid = {(c.lr, c.batch_size, c.seed): rec(fig5.STAGE2_DIR, lr=c.lr, B=c.batch_size,
                                                  seed=c.seed) for c in cells}
        shape = (len(lrs), len(bs), len(seeds))
        dims = ("lr", "batch_size", "seed")
        for name, (where, long_name) in STAGE2_VARS.items():
            arr = np.full(shape, math.nan)
            for (i, lr), (j, b), (k, s) in _index3(lrs, bs, seeds):
                if (lr, b, s) in grid:
                    arr[i, j, k] = _value(grid[(lr, b, s)], where)
            data_vars[name] = (dims, arr, {"units": "nats", "long_name": long_name})
        status = np.full(shape, "skipped", dtype=object)
        for (i, lr), (j, b), (k, s) in _index3(lrs, bs, seeds):
            if (lr, b, s) in grid:
                status[i, j, k] = _status(grid[(lr, b, s)])
        data_vars["stage2_status"] = (dims, status.astype(str))
        coords.update(lr=("lr", [float(x) for x in lrs], {"long_name": "stage-2 learning rate"}),
                      batch_size=("batch_size", bs, {"long_name": "stage-2 batch size B"}))
        coords["temperature"] = (("lr", "batch_size"),
                                 np.array([[float(lr) / b for b in bs] for lr in lrs]),
                                 {"long_name": "SGD temperature T = lr / B"})
    runs = fig5.shift_runs(config)
    if runs:
        trials = list(range(f["shift"]["trials"]))
        coords["trial"] = ("trial", trials)
        labels = ["default"] + (["shuffle"] if "shuffle" in f["experiments"] else [])
        for label in labels:
            rs = [rec(fig5.SHIFT_DIR, split="default" if label == "default"
                      else f"shuffle_seed~{t}", seed=t) for t in trials]
            for split, key in SHIFT_VARS.items():
                data_vars[f"{label}_{split}_loss"] = (
                    "trial", [_value(r, key) for r in rs],
                    {"units": "nats", "long_name": f"final {split} loss, {label} split"})
            data_vars[f"{label}_status"] = ("trial", [_status(r) for r in rs])
        if "sample_size" in f["experiments"]:
            sizes = list(f["shift"]["sample_sizes"])
            coords["sample_size"] = ("sample_size", sizes)
            rs = [[rec(fig5.SHIFT_DIR, split=f"sample_size~{n}", seed=t) for t in trials]
                  for n in sizes]
            for split, key in SHIFT_VARS.items():
                data_vars[f"sample_{split}_loss"] = (
                    ("sample_size", "trial"), [[_value(r, key) for r in row] for row in rs],
                    {"units": "nats", "long_name": f"final {split} loss, subsampled data"})
            data_vars["sample_status"] = (("sample_size", "trial"),
                                          [[_status(r) for r in row] for row in rs])
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "title": "shiftcurv Fig. 5: temperature collapse and shift experiments",
        "dataset": w["dataset"], "arch": w["arch"], "shiftcurv_version": __version__,
        "git_revision": git_revision, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config_yaml})
    return ds


def _index3(a, b, c):
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            for k, z in enumerate(c):
                yield (i, x), (j, y), (k, z)


# -- the claims, in numbers --------------------------------------------------------------------
def collapse(loss, temperature, lr) -> dict:
    """How much `loss` (seed-mean, on the (lr, B) grid; NaN where not run) depends on T versus on
    lr and B. Cells are grouped by T (relative tolerance 1e-9): `within_T` is the mean, over T
    values run at two or more B, of the standard deviation across B; `across_T` the standard
    deviation of the per-T means. The same grouping by lr gives `within_lr` / `across_lr`.
    Temperature collapse: within_T ≪ across_T, and within_T ≪ within_lr. `r2_log_T` /
    `r2_log_lr`: variance explained by a line in log T / log lr."""
    loss, temperature = np.asarray(loss, float), np.asarray(temperature, float)
    lr = np.broadcast_to(np.asarray(lr, float)[:, None], loss.shape)
    ok = np.isfinite(loss)
    out = {"cells": int(ok.sum())}
    for name, key in (("T", temperature), ("lr", lr)):
        groups: dict[float, list[float]] = {}
        for k, v in zip(key[ok], loss[ok], strict=True):
            match = next((g for g in groups if math.isclose(g, k, rel_tol=1e-9)), k)
            groups.setdefault(match, []).append(float(v))
        multi = [np.std(v) for v in groups.values() if len(v) >= 2]
        means = [np.mean(v) for v in groups.values()]
        out[f"within_{name}"] = float(np.mean(multi)) if multi else math.nan
        out[f"across_{name}"] = float(np.std(means)) if len(means) >= 2 else math.nan
        out[f"groups_{name}"] = len(multi)
        out[f"r2_log_{name}"] = _r2(np.log(key[ok]), loss[ok])
    out["ratio_T"] = _ratio(out["within_T"], out["across_T"])
    out["ratio_lr"] = _ratio(out["within_lr"], out["across_lr"])
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    if len(y) < 3 or np.ptp(x) == 0 or np.var(y) == 0:
        return math.nan
    slope, icept = np.polyfit(x, y, 1)
    return float(1 - np.var(y - (slope * x + icept)) / np.var(y))


def shared_temperatures(temperature, ok) -> list[tuple[float, list[tuple[int, int]]]]:
    """The temperatures run at two or more batch sizes, ascending: (T, cells) with `cells` the
    (lr index, batch-size index) pairs of that T where `ok` holds, in the order of the batch-size
    axis. `temperature` and `ok` are (lr, batch_size) arrays; T values equal to a relative 1e-9
    are one temperature (as in `collapse`)."""
    temperature = np.asarray(temperature, float)
    ok = np.asarray(ok, bool)
    groups: dict[float, list[tuple[int, int]]] = {}
    for i, j in zip(*np.nonzero(ok), strict=True):
        t = float(temperature[i, j])
        match = next((g for g in groups if math.isclose(g, t, rel_tol=1e-9)), t)
        groups.setdefault(match, []).append((int(i), int(j)))
    return [(t, sorted(cells, key=lambda c: c[1])) for t, cells in sorted(groups.items())
            if len({j for _, j in cells}) >= 2]


def bn_mismatch(ds) -> dict:
    """The BN mismatch compared across batch sizes at fixed T = lr/B, train mode against train
    mode (seed means; the batch sizes of each T are those with a finite first-epoch loss):
    `first_epoch_train_loss` {T: {B: first_train_loss}}, the first stage-2 epoch's mean
    minibatch loss; `first_epoch_minus_stage1` {T: {B: mean over seeds of first_train_loss −
    stage1_last_train_loss}}, the jump from stage 1's last epoch (batch statistics at stage 1's
    B) to stage 2's first (at B); `final_train_loss` {T: {B: final_train_loss}}, the median of the
    last epochs' mean minibatch losses; `stage1_last_epoch_train_loss` and `stage1_batch_size`
    the reference. T keys are spelled as in the paths (sweep.format_temperature); only T values
    run at two or more batch sizes are listed, so no B is credited with another's temperature."""
    first = ds["first_train_loss"]
    s1 = ds.get("stage1_last_train_loss")
    if s1 is None:  # a fig5.nc gathered before the variable existed
        s1 = ds["stage1_train_loss"] * math.nan
    jump = (first - s1).mean("seed", skipna=True).values
    means = {"first_epoch_train_loss": first.mean("seed", skipna=True).values,
             "first_epoch_minus_stage1": jump,
             "final_train_loss": ds["final_train_loss"].mean("seed", skipna=True).values}
    groups = shared_temperatures(ds["temperature"].values,
                                 np.isfinite(means["first_epoch_train_loss"]))
    bs = [int(b) for b in ds["batch_size"].values]
    out: dict = {name: {format_temperature(t): {bs[j]: _finite(v[i, j]) for i, j in cells}
                        for t, cells in groups} for name, v in means.items()}
    out["stage1_last_epoch_train_loss"] = _finite(s1.mean(skipna=True).values)
    b1 = s1.attrs.get("batch_size")
    out["stage1_batch_size"] = None if b1 is None else int(b1)
    return out


def paired_difference(a, b) -> dict:
    """Mean of b − a over the trials where both exist, its standard error and t = mean / SE."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    se = float(d.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    return {"n": n, "mean": mean, "se": se, "t": _ratio(mean, se)}


def summary(ds) -> dict:
    """The numbers behind the figure's claims (also stored in the netCDF attributes)."""
    out: dict = {}
    if "final_test_loss" in ds:
        for split in ("train", "test"):
            mean = ds[f"final_{split}_loss"].mean("seed", skipna=True).values
            out[f"collapse_{split}"] = collapse(mean, ds["temperature"].values, ds["lr"].values)
        out["bn_mismatch_at_fixed_T"] = bn_mismatch(ds)
        out["stage1_eval_train_loss"] = _finite(ds["stage1_train_loss"].mean().values)
        out["stage1_test_loss"] = _finite(ds["stage1_test_loss"].mean().values)
    if "shuffle_test_loss" in ds:
        for split in ("train", "test"):
            out[f"shuffle_minus_default_{split}"] = paired_difference(
                ds[f"default_{split}_loss"].values, ds[f"shuffle_{split}_loss"].values)
    if "sample_test_loss" in ds:
        sizes = ds["sample_size"].values
        for split in ("train", "test"):
            m = ds[f"sample_{split}_loss"].mean("trial", skipna=True).values
            ok = np.isfinite(m)
            slope = (float(np.polyfit(np.log(sizes[ok]), m[ok], 1)[0]) if ok.sum() >= 2
                     else math.nan)
            out[f"sample_size_{split}"] = {"mean": {int(n): _finite(v) for n, v in
                                                    zip(sizes, m, strict=True)},
                                           "slope_per_log_size": slope}
    return out


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
