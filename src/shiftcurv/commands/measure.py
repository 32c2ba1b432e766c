"""Measure along the line between θ_tr and θ_test (paper Fig. 1-3, Eq. 3, Appendix F).

Writes one JSON with everything the gather step needs for the cell: the SGD run's summary, the
minimum-finding summaries (τ, ‖∇U‖, stop reasons), the loss/accuracy profiles on the grid
u = r/‖s‖ ∈ [−margin, 1 + margin], the symmetrized-fit curvatures c_train and c_test over the
fit window (test: u ∈ [1 − w, 1], train: u ∈ [−w, 0], w = fit_window ≤ margin), ‖s‖,
shift-curvature sᵀC_test s, the Taylor check (Eq. 3) in the paper's form and with the
first-order terms g_testᵀs, g_trᵀs (one exact gradient each; `shiftcurv.landscape.line`), and
the exact directional curvatures sᵀ∇²U s/‖s‖² at θ_tr and θ_test by Hessian-vector products (plain
loss, no L2).
Optionally (settings "hessian": {"measures": [...], "points": [...], "options": {...}}), the
curvature and sharpness measures of `shiftcurv.landscape.measures.measure_point` (λ_max, λ_min,
trace, ε-sharpness, non-uniformity, gradient noise, coherence; docs/measures.md) at the SGD solution
("sgd", train loss), θ_tr ("train", train loss) and θ_test ("test", test loss).
If an upstream step diverged or failed, the record carries its status and no measures; if a
minimum ended "unconverged" (step cap or stall), the cell is measured and keeps that status.

Example:
  shiftcurv measure --data d.npz --theta-train theta_train.safetensors \\
      --theta-test theta_test.safetensors --train-record train.json \\
      --min-records min_train.json min_test.json --settings '{"arch": {...}}' --out measure.json
"""

from __future__ import annotations

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import (
    add_minima_arguments,
    add_settings_argument,
    add_threads_argument,
    build_model,
    dtype_of,
    log,
    parse_settings,
    provenance,
    require,
    resolve_device,
    set_threads,
)

HELP = "measure losses, curvatures and shift along the line between the minima"
# file arguments (argparse dests), for a pack's staged run of this step (commands._staging)
INPUTS = ("data", "theta_sgd", "theta_train", "theta_test", "train_record", "min_records")
OUTPUTS = ("out",)
TRAIN_KEYS = ("lr", "batch_size", "temperature", "epochs", "epochs_planned", "steps", "n_params",
              "wall_seconds")
MIN_KEYS = ("method", "tau", "tau_max", "steps", "grad_evals", "hvp_evals", "grad_norm", "value",
            "stop_reason", "seconds", "distance_moved")
MEASURABLE = ("ok", "unconverged")  # upstream statuses that still get measures


def add_arguments(p):
    add_minima_arguments(p)
    p.add_argument("--theta-sgd", help="the SGD solution (.safetensors), for hessian measures "
                                       "at point 'sgd'")
    add_settings_argument(p)
    p.add_argument("--out", required=True, help="measure.json")
    add_threads_argument(p)


def run(args) -> int:
    import numpy as np

    from shiftcurv import data
    from shiftcurv.io import load_state, read_json, write_json
    from shiftcurv.landscape.line import line_grid, loss_profiles, shift_curvature_measures
    from shiftcurv.landscape.objective import Objective

    set_threads(args.threads)
    s = parse_settings(args.settings)
    require(s, "arch")
    train_rec = read_json(args.train_record, what="SGD record")
    mins = {split: read_json(path, what=f"min_{split} record")
            for split, path in zip(("train", "test"), args.min_records, strict=True)}
    record = {"sgd": {k: train_rec.get(k) for k in TRAIN_KEYS}, "settings": s,
              "provenance": provenance()}
    for split in ("train", "test"):
        record["sgd"][f"{split}_loss"] = train_rec.get(f"{split}_loss")
        record["sgd"][f"{split}_acc"] = train_rec.get(f"{split}_acc")
        record[f"min_{split}"] = {k: mins[split].get(k) for k in MIN_KEYS}
    upstream = (train_rec["status"], mins["train"]["status"], mins["test"]["status"])
    bad = [st for st in upstream if st not in MEASURABLE]
    if bad:
        record["status"] = bad[0]
        log(f"upstream status {bad[0]!r}: no measures")
        write_json(args.out, record)
        return 0
    # a minimum stopped by its step cap or a stall is measured (the numbers help to see why)
    # but keeps its own status, so that figures mask it and nobody reads it as converged
    status = "unconverged" if "unconverged" in upstream else "ok"
    ds = data.load(args.data)
    dtype = dtype_of(s.get("dtype", "float64"))
    device = resolve_device(s.get("device"))
    thetas, objectives = {}, {}
    for split, path in (("train", args.theta_train), ("test", args.theta_test)):
        state, _ = load_state(path, what=f"theta_{split}")
        model = build_model(s["arch"], ds, state, dtype=dtype, device=device)
        x, y = ds.tensors(split)
        objectives[split] = Objective(model, x, y, l2=0.0, chunk_size=s.get("chunk_size"),
                                      dtype=dtype)
        thetas[split] = objectives[split].theta_of()
    theta_tr, theta_test = thetas["train"], thetas["test"]
    shift = theta_test - theta_tr
    shift_norm = float(shift.norm())
    margin, fit_window = s.get("margin", 1.0), s.get("fit_window", 1.0)
    if fit_window > margin:
        raise ShiftcurvError(f"measure.fit_window {fit_window} is more than measure.margin "
                             f"{margin}: the line grid must cover the train fit window")
    u = line_grid(margin, s.get("points_per_unit", 20))
    log(f"measure: |s| = {shift_norm:.5g}, {len(u)} points on the line, fit window "
        f"{fit_window:g}|s|")
    profiles = loss_profiles(objectives, theta_tr, theta_test, u)
    # the L2 objective along the line, U + (α/2)|Θ(u)|², for reference (Θ(u) = θ_tr + u·s)
    alpha = float(s.get("l2", 0.0))
    sq = [float((theta_tr + float(ui) * shift).pow(2).sum()) for ui in u]
    profiles["train_objective_line"] = profiles["train_loss_line"] + 0.5 * alpha * np.array(sq)
    # Eq. 3's first-order terms: g_trᵀs and g_testᵀs, one exact gradient of the plain loss each
    first_order = {split: float(objectives[split].value_and_grad(thetas[split])[1].dot(shift))
                   for split in ("train", "test")}
    scalars = shift_curvature_measures(u, profiles["train_loss_line"],
                                       profiles["test_loss_line"], shift_norm, fit_window,
                                       first_order["train"], first_order["test"])
    if shift_norm > 0:
        scalars["c_train_hvp"] = objectives["train"].directional_curvature(theta_tr, shift)
        scalars["c_test_hvp"] = objectives["test"].directional_curvature(theta_test, shift)
    hessian = s.get("hessian") or {}
    if hessian.get("measures"):
        record["hessian"] = hessian_measures(hessian, objectives, thetas, args, ds, s, dtype,
                                             train_rec)
    record.update(status=status, u=u, scalars=scalars, profiles=profiles)
    write_json(args.out, record)
    log("done: " + ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()
                             if k in ("c_train", "c_test", "c_train_hvp", "c_test_hvp",
                                      "shift_curvature", "taylor_relative_error",
                                      "taylor_first_order_relative_error")))
    return 0


def hessian_measures(hessian: dict, objectives: dict, thetas: dict, args, ds, s: dict, dtype,
                     train_rec: dict) -> dict:
    """{point: {measure: value}} for the configured points (sgd, train, test)."""
    from shiftcurv.io import load_state
    from shiftcurv.landscape.measures import measure_point
    from shiftcurv.landscape.objective import Objective

    out = {}
    for point in hessian.get("points", ["train", "test"]):
        if point == "sgd":
            if not args.theta_sgd:
                raise ShiftcurvError("hessian point 'sgd' needs --theta-sgd")
            state, _ = load_state(args.theta_sgd, what="SGD weights")
            x, y = ds.tensors("train")
            obj = Objective(build_model(s["arch"], ds, state, dtype=dtype,
                                        device=resolve_device(s.get("device"))), x, y,
                            chunk_size=s.get("chunk_size"), dtype=dtype)
            theta = obj.theta_of()
        elif point in ("train", "test"):
            obj, theta = objectives[point], thetas[point]
        else:
            raise ShiftcurvError(f"unknown hessian point {point!r}; known: sgd, train, test")
        log(f"hessian measures at {point}: {', '.join(hessian['measures'])}")
        out[point] = measure_point(obj, theta, hessian["measures"], lr=train_rec["lr"],
                                   batch_size=train_rec["batch_size"],
                                   seed=int(s.get("seed", 0)), options=hessian.get("options"))
    return out
