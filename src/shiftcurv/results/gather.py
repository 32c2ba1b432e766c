"""Gather every cell's measure record into one xarray.Dataset (written as netCDF by the CLI).

Dimensions: dataset, arch, temperature, seed (and batch_size when more than one is swept; else
batch_size is a per-cell variable), and u (= r/‖s‖) for the profiles along the line. A cell
without a record is NaN with status "missing"; a cell whose run diverged or failed is NaN with
that status — never dropped. A cell whose minimum stopped at its step cap or stalled keeps its
measures with status "unconverged" (the figures mask it like "diverged").
"""

from __future__ import annotations

import math
import time

import numpy as np

from shiftcurv import __version__
from shiftcurv import sweep as sw
from shiftcurv.sweep import Cell, config_hash
from shiftcurv.sweep.temperature import epoch_budget

# name -> (where in measure.json, units, long_name)
SCALARS = {
    "lr": ("sgd.lr", "1", "SGD learning rate (T x B)"),
    "batch_size": ("sgd.batch_size", "1", "SGD batch size B"),
    "epochs": ("sgd.epochs", "1", "SGD epochs run"),
    "epochs_planned": ("sgd.epochs_planned", "1",
                       "SGD epochs of the budget after train.max_epochs"),
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
    "first_order_test": ("scalars.first_order_test", "nats",
                         "g_test's, g_test = grad U_test(theta_test): Eq. 3's first-order term"),
    "c_test_first_order": ("scalars.c_test_first_order", "nats / unit^2",
                           "test curvature along s fitted with the exact slope g_test's/|s|"),
    "taylor_prediction_first_order": ("scalars.taylor_prediction_first_order", "nats",
                                      "U_test_k - g_test's + c_test_first_order |s|^2 / 2"),
    "taylor_first_order_relative_error": (
        "scalars.taylor_first_order_relative_error", "1",
        "(first-order Taylor prediction - U_test(theta_tr)) / U_test(theta_tr)"),
    "train_loss_at_test_min": ("scalars.train_loss_at_test_min", "nats",
                               "train loss at the test minimum, U_tr(theta_test)"),
    "train_taylor_prediction": ("scalars.train_taylor_prediction", "nats",
                                "U_tr_k + c_train |s|^2 / 2 (Eq. 3 on the train side)"),
    "train_taylor_relative_error": ("scalars.train_taylor_relative_error", "1",
                                    "(train Taylor prediction - U_tr(theta_test)) / "
                                    "U_tr(theta_test)"),
    "first_order_train": ("scalars.first_order_train", "nats",
                          "g_tr's, g_tr = grad U_tr(theta_tr): the train side's first-order term"),
    "c_train_first_order": ("scalars.c_train_first_order", "nats / unit^2",
                            "train curvature along s fitted with the exact slope g_tr's/|s|"),
    "train_taylor_prediction_first_order": ("scalars.train_taylor_prediction_first_order",
                                            "nats", "U_tr_k + g_tr's + c_train_first_order "
                                            "|s|^2 / 2"),
    "train_taylor_first_order_relative_error": (
        "scalars.train_taylor_first_order_relative_error", "1",
        "(first-order train Taylor prediction - U_tr(theta_test)) / U_tr(theta_test)"),
    "shift_norm": ("scalars.shift_norm", "parameter-space units",
                   "|s| = |theta_test - theta_tr|"),
    "c_train": ("scalars.c_train", "nats / unit^2",
                "train curvature along s, symmetrized quadratic fit (App. F)"),
    "c_test": ("scalars.c_test", "nats / unit^2",
               "test curvature along s, symmetrized quadratic fit (App. F)"),
    "c_train_r2": ("scalars.c_train_r2", "1", "R^2 of the train quadratic fit"),
    "c_test_r2": ("scalars.c_test_r2", "1", "R^2 of the test quadratic fit"),
    "c_train_rms_residual": ("scalars.c_train_rms_residual", "nats",
                             "rms residual of the train quadratic fit over its window"),
    "c_test_rms_residual": ("scalars.c_test_rms_residual", "nats",
                            "rms residual of the test quadratic fit over its window"),
    "fit_window": ("scalars.fit_window", "|s|",
                   "fit window w: c_test over u in [1 - w, 1], c_train over u in [-w, 0]"),
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
    "flow_time_max_train": ("min_train.tau_max", "1",
                            "flow time asked for the train minimum (tau_max)"),
    "flow_time_max_test": ("min_test.tau_max", "1", "flow time asked for the test minimum"),
    "distance_moved_train_min": ("min_train.distance_moved", "parameter-space units",
                                 "|theta_tr - theta_sgd|"),
    "distance_moved_test_min": ("min_test.distance_moved", "parameter-space units",
                                "|theta_test - theta_sgd|"),
    "grad_evals_train_min": ("min_train.grad_evals", "1",
                             "full-data gradient evaluations to the train minimum"),
    "grad_evals_test_min": ("min_test.grad_evals", "1",
                            "full-data gradient evaluations to the test minimum"),
}
# curvature/sharpness measures (shiftcurv.landscape.measures.measure_point), stored as
# {key}_{point} with point in sgd (SGD solution, train loss), train (θ_tr, train loss), test
# (θ_test, test loss)
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
    "lambda_max_converged": ("1", "1 if Lanczos met its tolerance for lambda_max"),
    "lambda_max_error": ("nats / unit^2", "Lanczos residual bound on lambda_max"),
    "lambda_min_converged": ("1", "1 if Lanczos met its tolerance for lambda_min"),
    "lambda_min_error": ("nats / unit^2", "Lanczos residual bound on lambda_min"),
}
# from the config and the cell (so that a capped budget is visible): name -> (units, long_name)
BUDGET = {
    "epochs_budget": ("1", "SGD epochs the E*T budget asks, ceil(epochs_ref T_ref / T), "
                           "before train.max_epochs"),
    "epoch_temperature": ("1", "E*T: SGD epochs run x temperature (the diffusion budget)"),
}
# per-cell strings: name -> (where in measure.json, long_name)
STRINGS = {
    "stop_reason_train_min": ("min_train.stop_reason",
                              "why the train flow stopped: tau, gtol, max_steps, stalled, "
                              "diverged"),
    "stop_reason_test_min": ("min_test.stop_reason", "why the test flow stopped"),
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


# Eq. 4 (eq4_<chain>.json, `shiftcurv sample`), gathered as eq4_<name>(..., sampler, ladder) with
# eq4_<name>_se beside each term: name -> (where in the record, units, long_name). The term names
# are shiftcurv.eq4.statistics.TERMS (a test keeps the two in step; this layer stays torch-free).
EQ4_TERMS = {
    "mean_test_loss": ("nats", "E[U_test(theta)] over SGD's steady state (Eq. 4's left side)"),
    "mean_train_loss": ("nats", "E[U_tr(theta)] over the chain"),
    "excess": ("nats", "measured excess E[U_test(theta)] - U_test(theta_tr)"),
    "excess_bias": ("nats", "U_test(mu) - U_test(theta_tr): the part of the excess due to b"),
    "excess_cov": ("nats", "E[U_test(theta)] - U_test(mu): the part due to the spread"),
    "cov_term": ("nats", "1/2 Tr(Sigma C_test), C_test at theta_test (covariance-curvature)"),
    "shift_bias_term": ("nats", "1/2 (s+b)' C_test (s+b)"),
    "shift_term": ("nats", "1/2 s' C_test s"),
    "cross_term": ("nats", "s' C_test b"),
    "bias_term": ("nats", "1/2 b' C_test b (bias-curvature)"),
    "first_order": ("nats", "-g_test'(s+b), g_test = grad U_test(theta_test)"),
    "prediction": ("nats", "Eq. 4 at theta_test with the first-order term (paper form)"),
    "prediction_no_first_order": ("nats", "Eq. 4 at theta_test as the paper writes it"),
    "excess_prediction": ("nats", "paper-form prediction of the excess (Eq. 4 - Eq. 3)"),
    "residual": ("nats", "measured - predicted E[U_test], paper form"),
    "local_cov_term": ("nats", "1/2 Tr(Sigma H), H = Hessian of U_test at theta_tr"),
    "local_bias_term": ("nats", "1/2 b' H b"),
    "local_first_order": ("nats", "-g_tr'b, g_tr = grad U_test(theta_tr)"),
    "local_prediction": ("nats", "Eq. 4 expanded at theta_tr (local form)"),
    "local_excess_prediction": ("nats", "local-form prediction of the excess"),
    "local_residual": ("nats", "measured - predicted E[U_test], local form"),
    "bias_norm": ("parameter-space units", "|b| = |theta_tr - mu|, mu the chain mean"),
    "train_loss_at_mean": ("nats", "U_tr(mu)"),
    "fdr_lhs": ("nats", "E[(theta - theta_tr) . grad U_alpha,tr(theta)] (Yaida's FDR)"),
    "fdr_rhs": ("nats", "(lr / 2) E|g_B + alpha theta|^2 (Yaida's FDR)"),
}
EQ4_SCALARS = {
    "n_eff": ("diagnostics.n_eff", "1", "effective sample size of the kept test losses"),
    "tau_int": ("diagnostics.tau_int_epochs", "epochs",
                "integrated autocorrelation time of the kept test losses"),
    "trend_z": ("diagnostics.trend_z", "1", "slope of U_tr over the samples / its SE"),
    "geweke_z": ("diagnostics.geweke_z", "1", "Geweke z of U_test (first 10% vs last 50%)"),
    "drift_ratio": ("diagnostics.drift_ratio", "1",
                    "split-half drift 1/2 dmu' C dmu over 1/2 Tr(Sigma C)"),
    "one_basin": ("diagnostics.one_basin", "1", "1 if U_tr(mu) <= E[U_tr(theta)]"),
    "lr_lambda_max": ("diagnostics.lr_lambda_max", "1",
                      "lr x lambda_max(train Hessian at theta_tr): 2 is the edge of stability"),
    "samples": ("samples", "1", "kept samples"),
    "chain_epochs": ("chain_epochs", "epochs", "epochs the chain ran (burn-in + sampling)"),
    "burn_in": ("plan.burn_in", "epochs", "burn-in epochs"),
    "thin": ("plan.thin", "epochs", "epochs between kept samples"),
    "cost_epochs": ("cost.total_epochs", "epochs",
                    "sampling cost in train-epoch equivalents (chain + measurement)"),
    "seconds": ("sample_seconds", "s", "wall seconds of the sampling step"),
}


def _eq4_variables(records: dict, index, shape: list[int], samplers: list[str],
                   ladder: list[float]) -> dict:
    """eq4_* arrays of shape (cells..., sampler, ladder) from {cell: {chain: record or None}}."""
    full = shape + [len(samplers), len(ladder)]
    status = np.full(full, "not_sampled", dtype=object)  # a cell outside eq4.seeds
    terms = {k: np.full(full, np.nan) for k in EQ4_TERMS}
    errors = {k: np.full(full, np.nan) for k in EQ4_TERMS}
    scalars = {k: np.full(full, np.nan) for k in EQ4_SCALARS}
    for cell, by_chain in records.items():
        for j, sampler in enumerate(samplers):
            for m, scale in enumerate(ladder):
                rec = (by_chain or {}).get(sw.eq4_chain_name(sampler, scale))
                i = index(cell) + (j, m)
                if rec is None:
                    status[i] = "missing"
                    continue
                status[i] = rec.get("status", "failed")
                for k in terms:
                    terms[k][i] = _get(rec, f"terms.{k}")
                    errors[k][i] = _get(rec, f"terms.{k}_se")
                for k, (where, _, _) in EQ4_SCALARS.items():
                    scalars[k][i] = _get(rec, where)
    out = {"eq4_status": (status.astype(str), {
        "long_name": "Eq. 4 chain status: ok, left_basin (its mean is outside one basin), "
                     "diverged, too_short, or the upstream status; missing; not_sampled "
                     "(outside eq4.seeds)"})}
    for k, (units, name) in EQ4_TERMS.items():
        out[f"eq4_{k}"] = (terms[k], {"units": units, "long_name": name})
        out[f"eq4_{k}_se"] = (errors[k], {"units": units,
                                          "long_name": f"jackknife standard error of eq4_{k}"})
    for k, (_, units, name) in EQ4_SCALARS.items():
        out[f"eq4_{k}"] = (scalars[k], {"units": units, "long_name": name})
    return out


def _lookup(record: dict, dotted: str):
    """record["a"]["b"] for "a.b", or None where a key is missing."""
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _get(record: dict, dotted: str) -> float:
    value = _lookup(record, dotted)
    return math.nan if value is None else float(value)


def _get_str(record: dict, dotted: str) -> str:
    value = _lookup(record, dotted)
    return "" if value is None else str(value)


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
                  git_revision: str = "unknown", eq4_records: dict | None = None):
    """One xarray.Dataset from {cell: measure record or None (missing)}; with `eq4_records`
    ({cell: {chain: Eq. 4 record or None}}) also the eq4_* variables over `sampler` and
    `ladder` axes."""
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
    budget = {k: np.full(shape, np.nan) for k in BUDGET}
    strings = {k: np.full(shape, "", dtype=object) for k in STRINGS}
    tr = config["train"]
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
        budget["epochs_budget"][i] = epoch_budget(cell.T, tr["epochs_ref"], tr["temperature_ref"])
        if rec is None:
            continue
        status[i] = rec.get("status", "failed")
        for k in scalars:
            scalars[k][i] = _get(rec, SCALARS[k][0])
        budget["epoch_temperature"][i] = _get(rec, "sgd.epochs") * cell.T
        for k in strings:
            strings[k][i] = _get_str(rec, STRINGS[k][0])
        for k in hessian:
            hessian[k][i] = _get(rec, hessian_meta[k][2])
        if "profiles" in rec:  # ok and unconverged cells are measured
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
        "long_name": "cell status: ok, unconverged (a minimum stopped at its step cap or "
                     "stalled: measured, masked in figures), diverged, failed or missing"})}
    for k, arr in scalars.items():
        data_vars[k] = (dims, arr, {"units": SCALARS[k][1], "long_name": SCALARS[k][2]})
    for k, arr in budget.items():
        data_vars[k] = (dims, arr, {"units": BUDGET[k][0], "long_name": BUDGET[k][1]})
    for k, arr in strings.items():
        data_vars[k] = (dims, arr.astype(str), {"long_name": STRINGS[k][1]})
    for k, arr in hessian.items():
        data_vars[k] = (dims, arr, {"units": hessian_meta[k][0], "long_name": hessian_meta[k][1]})
    for k, arr in profiles.items():
        data_vars[k] = (dims + ["u"], arr, {"units": PROFILES[k][0], "long_name": PROFILES[k][1]})
    samplers = sw.eq4_samplers(config) if eq4_records is not None else []
    if samplers:
        ladder = sw.eq4_ladder(config)
        for k, (arr, attrs) in _eq4_variables(eq4_records, index, shape, samplers,
                                              ladder).items():
            data_vars[k] = (dims + ["sampler", "ladder"], arr, attrs)
        coords["sampler"] = ("sampler", samplers, {
            "long_name": "Eq. 4 chain's minibatches: rr reshuffled (training's order carried "
                         "on), wr drawn with replacement"})
        coords["ladder"] = ("ladder", np.array(ladder), {
            "units": "1", "long_name": "Eq. 4 chain's temperature over the cell's: the chain "
                                       "runs at T x ladder from the cell's theta_SGD"})
    attrs = {"title": "shiftcurv sweep", "config": config_text or str(config),
             "config_hash": config_hash(config), "shiftcurv_version": __version__,
             "git_revision": git_revision,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "cells": len(records), "cells_ok": int((status == "ok").sum()),
             "cells_unconverged": int((status == "unconverged").sum()),
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
