"""Find θ_tr (split=train) or θ_test (split=test) from the SGD solution: the endpoint of gradient
flow on that split's objective U_α = loss + (α/2)‖θ‖² (see `shiftcurv.landscape.minima`).

method "flow" (default) integrates the flow with step-size control; method "paper" is the paper's
protocol (minibatch GD at lr 1e-4, batch 5000, no shuffle, up to 10000 epochs). Both go to flow
time tau_max (the sweep derives it per split from the paper settings: lr·⌈N/B⌉·max_epochs) and
record τ reached, steps, gradient evaluations, final ‖∇U_α‖, U_α and the stop reason; the status
is "ok" (τ_max or gtol reached), "unconverged" (step cap, or a stalled flow) or "diverged". If
the SGD run did not end "ok" (e.g. diverged), nothing is minimised: the outputs carry that
status.

Example:
  shiftcurv minimize --data d.npz --init theta_sgd.safetensors --init-record train.json \\
      --settings '{"arch": {"type": "mlp", "widths": [100, 100]}, "split": "train",
      "l2": 1e-5, "method": "flow", "tau_max": 10}' --out-weights theta_train.safetensors \\
      --out-record min_train.json
"""

from __future__ import annotations

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import (
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

HELP = "find the train or test minimum from the SGD solution (gradient flow)"
# file arguments (argparse dests), for a pack's staged run of this step (commands._staging)
INPUTS = ("data", "init", "init_record")
OUTPUTS = ("out_weights", "out_record")
FLOW_OPTIONS = ("tau_max", "gtol", "step_ratio", "order", "max_steps")
PAPER_OPTIONS = ("lr", "batch_size", "max_epochs", "tau_max", "gtol")
# a minimum is converged when the flow reached τ_max (or ‖∇U_α‖ ≤ gtol); one stopped by the step
# cap or a stall is measured but never reported as converged
STATUS_OF_STOP = {"tau": "ok", "gtol": "ok", "max_steps": "unconverged",
                  "stalled": "unconverged", "diverged": "diverged"}


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset .npz from prepare-data")
    p.add_argument("--init", required=True, help="the SGD solution (.safetensors)")
    p.add_argument("--init-record", required=True, help="the SGD run's record (train.json)")
    add_settings_argument(p)
    p.add_argument("--out-weights", required=True)
    p.add_argument("--out-record", required=True)
    add_threads_argument(p)


def run(args) -> int:
    from shiftcurv import data
    from shiftcurv.io import load_state, read_json, save_state, write_json
    from shiftcurv.landscape.minima import find_minimum
    from shiftcurv.landscape.objective import Objective
    from shiftcurv.progress import Progress

    set_threads(args.threads)
    s = parse_settings(args.settings)
    require(s, "arch", "split")
    if s["split"] not in ("train", "test"):
        raise ShiftcurvError(f"split must be train or test, got {s['split']!r}")
    method = s.get("method", "flow")
    if method not in ("flow", "paper"):
        raise ShiftcurvError(f"unknown method {method!r}; known: flow, paper")
    ds = data.load(args.data)
    upstream = read_json(args.init_record, what="SGD record")
    state, _ = load_state(args.init, what="SGD weights")
    model = build_model(s["arch"], ds, state, device=resolve_device(s.get("device")))
    record = {"status": upstream["status"], "split": s["split"], "method": method,
              "settings": s, "provenance": provenance()}
    if upstream["status"] != "ok":
        log(f"SGD run has status {upstream['status']!r}: nothing to minimise")
        save_state(args.out_weights, state)
        write_json(args.out_record, record)
        return 0
    x, y = ds.tensors(s["split"])
    obj = Objective(model, x, y, l2=s.get("l2", 0.0), chunk_size=s.get("chunk_size"),
                    dtype=dtype_of(s.get("dtype", "float64")))
    names = FLOW_OPTIONS if method == "flow" else PAPER_OPTIONS
    options = {k: s[k] for k in names if k in s}
    log(f"minimize {s['split']} objective (N={obj.n}, {obj.dim:,d} parameters, "
        f"alpha={obj.l2:g}) by {method} {options}")
    res = find_minimum(obj, obj.theta_of(), method, progress=Progress(), **options)
    record.update(res.record())
    record["status"] = STATUS_OF_STOP[res.stop_reason]
    record["tau_max"] = options.get("tau_max")
    record["distance_moved"] = float((res.theta - obj.theta_of()).norm())
    log(f"done: {res.stop_reason} at tau={res.tau:.4g}, U_alpha={res.value:.6g}, "
        f"|grad|={res.grad_norm:.3e}, {res.steps} steps, {res.grad_evals:g} gradients, "
        f"{res.hvp_evals} HVPs, moved {record['distance_moved']:.4g}, {res.seconds:.1f} s")
    save_state(args.out_weights, obj.state_dict(res.theta))
    write_json(args.out_record, record)
    return 0
