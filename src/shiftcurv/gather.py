"""Gather every cell's measure record into one xarray.Dataset (written as netCDF by the CLI).

Dimensions: dataset, arch, temperature, seed (and batch_size when more than one is swept; else
batch_size is a per-cell variable), and u (= r/‖s‖) for the profiles along the line. A cell
without a record is NaN with status "missing"; a cell whose run diverged or failed is NaN with
that status — never dropped.
"""

from __future__ import annotations

import math
import time

import numpy as np

from shiftcurv import __version__
from shiftcurv.sweep import Cell, config_hash

# name -> (where in measure.json, units, long_name)
SCALARS = {
    "lr": ("sgd.lr", "1", "SGD learning rate (T x B)"),
    "batch_size": ("sgd.batch_size", "1", "SGD batch size B"),
    "epochs": ("sgd.epochs", "1", "SGD epochs run"),
    "sgd_steps": ("sgd.steps", "1", "SGD steps run"),
    "n_params": ("sgd.n_params", "1", "number of parameters"),
    "train_loss_sgd": ("sgd.train_loss", "nats", "train loss at the SGD solution"),
    "test_loss_sgd": ("sgd.test_loss", "nats", "test loss at the SGD solution"),
    "train_acc_sgd": ("sgd.train_acc", "1", "train accuracy at the SGD solution"),
    "test_acc_sgd": ("sgd.test_acc", "1", "test accuracy at the SGD solution"),
    "U_tr_min": ("scalars.U_tr_min", "nats", "train loss at the train minimum, U_tr_k"),
    "U_test_min": ("scalars.U_test_min", "nats", "test loss at the test minimum, U_test_k"),
    "test_loss_at_train_min": ("scalars.test_loss_at_train_min", "nats",
                               "test loss at the train minimum, U_test(theta_tr)"),
    "taylor_prediction": ("scalars.taylor_prediction", "nats",
                          "U_test_k + s'C_test s / 2 (Eq. 3)"),
    "taylor_relative_error": ("scalars.taylor_relative_error", "1",
                              "(Taylor prediction - U_test(theta_tr)) / U_test(theta_tr)"),
    "shift_norm": ("scalars.shift_norm", "parameter-space units",
                   "|s| = |theta_test - theta_tr|"),
    "c_train": ("scalars.c_train", "nats / unit^2",
                "train curvature along s, symmetrized quadratic fit (App. F)"),
    "c_test": ("scalars.c_test", "nats / unit^2",
               "test curvature along s, symmetrized quadratic fit (App. F)"),
    "c_train_r2": ("scalars.c_train_r2", "1", "R^2 of the train quadratic fit"),
    "c_test_r2": ("scalars.c_test_r2", "1", "R^2 of the test quadratic fit"),
    "shift_curvature": ("scalars.shift_curvature", "nats", "shift-curvature s'C_test s"),
    "c_train_hvp": ("scalars.c_train_hvp", "nats / unit^2",
                    "s'H_train(theta_tr)s / |s|^2, exact by Hessian-vector product"),
    "c_test_hvp": ("scalars.c_test_hvp", "nats / unit^2",
                   "s'H_test(theta_test)s / |s|^2, exact by Hessian-vector product"),
    "grad_norm_train_min": ("min_train.grad_norm", "nats / unit",
                            "|grad U_alpha| (train objective) at the train minimum"),
    "grad_norm_test_min": ("min_test.grad_norm", "nats / unit",
                           "|grad U_alpha| (test objective) at the test minimum"),
    "flow_time_train": ("min_train.tau", "1", "gradient-flow time to the train minimum"),
    "flow_time_test": ("min_test.tau", "1", "gradient-flow time to the test minimum"),
    "grad_evals_train_min": ("min_train.grad_evals", "1",
                             "full-data gradient evaluations to the train minimum"),
    "grad_evals_test_min": ("min_test.grad_evals", "1",
                            "full-data gradient evaluations to the test minimum"),
}
# curvature/sharpness measures (shiftcurv.curvature.measure_point), stored as {key}_{point} with
# point in sgd (SGD solution, train loss), train (θ_tr, train loss), test (θ_test, test loss)
HESSIAN = {
    "lambda_max": ("nats / unit^2", "largest Hessian eigenvalue (Lanczos)"),
    "lambda_min": ("nats / unit^2", "smallest Hessian eigenvalue (Lanczos)"),
    "hessian_trace": ("nats / unit^2", "Hessian trace (Hutch++ / Hutchinson)"),
    "hessian_trace_stderr": ("nats / unit^2", "standard error of the trace estimate"),
    "eps_sharpness": ("percent", "epsilon-sharpness of Keskar et al. (2017)"),
    "wme_nonuniformity": ("nats / unit^2", "non-uniformity of Wu, Ma & E (2018)"),
    "wme_sgd_stable": ("1", "Wu, Ma & E linear-stability verdict for the run's (lr, B): 1 stable"),
    "grad_noise_trace": ("nats^2 / unit^2", "trace of the per-sample gradient covariance D"),
    "grad_coherence": ("nats / unit", "minibatch regret E|g2|(1 - cos(g1, g2))"),
    "grad_cosine": ("1", "mean cosine between gradients of two minibatches"),
}
POINTS = {"sgd": "at the SGD solution (train loss)", "train": "at theta_tr (train loss)",
          "test": "at theta_test (test loss)"}
PROFILES = {
    "train_loss_line": ("nats", "train loss along the line theta_tr + u s"),
    "test_loss_line": ("nats", "test loss along the line theta_tr + u s"),
    "train_acc_line": ("1", "train accuracy along the line theta_tr + u s"),
    "test_acc_line": ("1", "test accuracy along the line theta_tr + u s"),
    "train_objective_line": ("nats", "train loss + (alpha/2)|theta|^2 along the line"),
}


def _get(record: dict, dotted: str) -> float:
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return math.nan if value is None else float(value)


def _hessian_meta(key: str):
    """(units, long_name) of a measure_point key we gather, else None (diagnostics are left in
    the per-cell records)."""
    if key in HESSIAN:
        return HESSIAN[key]
    if key.startswith("eps_sharpness_") and key.count("_") == 2:
        units, name = HESSIAN["eps_sharpness"]
        return units, f"{name}, eps = {key.rsplit('_', 1)[1]}"
    return None


def build_dataset(config: dict, records: dict[Cell, dict | None], config_text: str = "",
                  git_revision: str = "unknown"):
    """One xarray.Dataset from {cell: measure record or None (missing)}."""
    import xarray as xr

    temps = sorted({c.temperature for c in records}, key=float)
    axes = {"dataset": list(config["datasets"]), "arch": list(config["archs"]),
            "temperature": temps, "batch_size": list(config["batch_sizes"]),
            "seed": list(config["seeds"])}
    swept_b = len(axes["batch_size"]) > 1
    dims = ["dataset", "arch", "temperature"] + (["batch_size"] if swept_b else []) + ["seed"]
    shape = [len(axes[d]) for d in dims]
    u = next((np.asarray(r["u"]) for r in records.values() if r and "u" in r), np.zeros(0))

    def index(cell: Cell) -> tuple:
        pos = {"dataset": cell.dataset, "arch": cell.arch, "temperature": cell.temperature,
               "batch_size": cell.batch_size, "seed": cell.seed}
        return tuple(axes[d].index(pos[d]) for d in dims)

    status = np.full(shape, "missing", dtype=object)
    scalars = {k: np.full(shape, np.nan) for k in SCALARS if not (swept_b and k == "batch_size")}
    profiles = {k: np.full(shape + [len(u)], np.nan) for k in PROFILES}
    hessian_meta = {}
    for rec in records.values():
        for point, values in ((rec or {}).get("hessian") or {}).items():
            for key in values:
                meta = _hessian_meta(key)
                if meta is not None:
                    hessian_meta[f"{key}_{point}"] = (meta[0], f"{meta[1]} {POINTS[point]}",
                                                      f"hessian.{point}.{key}")
    hessian = {k: np.full(shape, np.nan) for k in sorted(hessian_meta)}
    for cell, rec in records.items():
        i = index(cell)
        if rec is None:
            continue
        status[i] = rec.get("status", "failed")
        for k in scalars:
            scalars[k][i] = _get(rec, SCALARS[k][0])
        for k in hessian:
            hessian[k][i] = _get(rec, hessian_meta[k][2])
        if rec.get("status") == "ok":
            for k in profiles:
                if k in rec.get("profiles", {}):
                    profiles[k][i] = np.asarray(rec["profiles"][k], float)

    coords = {"dataset": axes["dataset"], "arch": axes["arch"],
              "temperature": ("temperature", np.array(temps, dtype=float),
                              {"units": "1", "long_name": "SGD temperature T = lr / B"}),
              "seed": axes["seed"], "u": ("u", u, {"units": "1",
                                                  "long_name": "position on the line, r / |s|"})}
    if swept_b:
        coords["batch_size"] = ("batch_size", np.array(axes["batch_size"]),
                                {"units": "1", "long_name": "SGD batch size B"})
    data_vars = {"status": (dims, status.astype(str), {
        "long_name": "cell status: ok, diverged, failed or missing"})}
    for k, arr in scalars.items():
        data_vars[k] = (dims, arr, {"units": SCALARS[k][1], "long_name": SCALARS[k][2]})
    for k, arr in hessian.items():
        data_vars[k] = (dims, arr, {"units": hessian_meta[k][0], "long_name": hessian_meta[k][1]})
    for k, arr in profiles.items():
        data_vars[k] = (dims + ["u"], arr, {"units": PROFILES[k][0], "long_name": PROFILES[k][1]})
    attrs = {"title": "shiftcurv sweep", "config": config_text or str(config),
             "config_hash": config_hash(config), "shiftcurv_version": __version__,
             "git_revision": git_revision,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "cells": len(records), "cells_ok": int((status == "ok").sum()),
             "reference": "Bradley, Gomez-Uribe, Vuyyuru: Shift-curvature, SGD, and "
                          "generalization"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_netcdf(ds, path) -> None:
    """netCDF4, zlib-compressed, written atomically."""
    from shiftcurv.io import atomic_path

    encoding = {k: {"zlib": True, "complevel": 4} for k, v in ds.data_vars.items()
                if v.dtype.kind == "f"}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
