"""Sample SGD's steady state at the cell's own temperature and measure Eq. 4 (paper Section 3).

Continues SGD from θ_SGD at the cell's lr, B and α (`--settings` sampler: rr, training's own
batch order carried on, or wr, with replacement), burns in, keeps thinned samples in contiguous
batches and measures, around θ_test (paper form) and θ_tr (local form), the covariance term
½Tr(ΣC), the shift/cross/bias parts of ½(s+b)ᵀC(s+b), the first-order term, the mean test loss
over the chain and both predictions, each with its jackknife standard error, and the
stationarity diagnostics (shiftcurv.eq4; ../shared/notes/eq4-design.md). Writes one JSON.

A checkpoint (<out>.ckpt) is written at every finished sample batch: a killed or signalled job
(SIGTERM, SIGUSR1, SIGINT: exit 75 after the batch) resumes there when rerun, bit-identically on
CPU with the same thread count; the pilot and burn-in are redone if no batch had finished.
If an upstream step failed or diverged, the record carries that status and no sampling runs; a
chain that diverges or leaves its basin gets its own status (diverged, left_basin) and exit 0.

Example:
  shiftcurv sample --data d.npz --theta-sgd theta_sgd.safetensors \\
      --theta-train theta_train.safetensors --theta-test theta_test.safetensors \\
      --train-record train.json --min-records min_train.json min_test.json \\
      --settings '{"arch": {...}, "seed": 0, "lr": 0.1, "batch_size": 100, "l2": 1e-5,
      "eq4": {"sampler": "rr", "samples": 200}}' --out eq4_rr.json
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

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

HELP = "sample SGD's steady state and measure Eq. 4's terms"
# file arguments (argparse dests), for a pack's staged run of this step (commands._staging)
INPUTS = ("data", "theta_sgd", "theta_train", "theta_test", "train_record", "min_records")
OUTPUTS = ("out",)
MEASURABLE = ("ok", "unconverged")


def add_arguments(p):
    add_minima_arguments(p)
    p.add_argument("--theta-sgd", required=True, help="the SGD solution (.safetensors): the "
                                                      "chain's start")
    add_settings_argument(p)
    p.add_argument("--out", required=True, help="eq4_<sampler>.json")
    p.add_argument("--checkpoint", help="resume checkpoint (default: <out>.ckpt)")
    add_threads_argument(p)


def run(args) -> int:
    from shiftcurv.train.signals import run_until_stopped

    return run_until_stopped(lambda stop: sample(args, stop), "sample",
                             lambda: "the last finished batch's checkpoint is kept")


def sampling_settings(s: dict):
    from shiftcurv.eq4.sampling import SamplingSettings

    known = SamplingSettings.__dataclass_fields__
    eq4 = s.get("eq4") or {}
    unknown = sorted(set(eq4) - set(known))
    if unknown:
        raise ShiftcurvError(f"unknown eq4 settings: {', '.join(unknown)}")
    return SamplingSettings(**eq4)


def checkpoint_key(s: dict) -> str:
    from shiftcurv.sweep import config_hash

    return config_hash({k: s.get(k) for k in ("arch", "seed", "lr", "batch_size", "l2", "eq4",
                                             "dtype", "train_epochs")})


def sample(args, stop) -> int:
    from shiftcurv import data
    from shiftcurv.eq4.cell import Eq4Cell, cost_epochs
    from shiftcurv.eq4.chain import NetworkChain
    from shiftcurv.io import load_state, read_json, save_state, write_json
    from shiftcurv.landscape.objective import Objective

    set_threads(args.threads)
    s = parse_settings(args.settings)
    require(s, "arch", "seed", "lr", "batch_size")
    settings = sampling_settings(s)
    train_rec = read_json(args.train_record, what="SGD record")
    mins = [read_json(p, what="minimum record") for p in args.min_records]
    record = {"settings": s, "provenance": provenance(), "sampler": settings.sampler}
    upstream = [train_rec["status"]] + [m["status"] for m in mins]
    bad = [st for st in upstream if st not in MEASURABLE]
    if bad:
        record["status"] = bad[0]
        log(f"upstream status {bad[0]!r}: no sampling")
        write_json(args.out, record)
        return 0
    t0 = time.perf_counter()
    ds = data.load(args.data)
    device = resolve_device(s.get("device"))
    dtype = dtype_of(s.get("dtype", "float64"))
    l2 = float(s.get("l2", 0.0))
    x_tr, y_tr = ds.tensors("train")
    x_te, y_te = ds.tensors("test")
    models = {}
    for split, path in (("train", args.theta_train), ("test", args.theta_test)):
        state, _ = load_state(path, what=f"theta_{split}")
        models[split] = build_model(s["arch"], ds, state, dtype=dtype, device=device)
    test = Objective(models["test"], x_te, y_te, chunk_size=s.get("chunk_size"), dtype=dtype)
    train = Objective(models["train"], x_tr, y_tr, l2=l2, chunk_size=s.get("chunk_size"),
                      dtype=dtype)
    theta_test = test.theta_of(models["test"])
    theta_tr = test.theta_of(models["train"])
    sgd_state, _ = load_state(args.theta_sgd, what="SGD weights")
    chain_model = build_model(s["arch"], ds, sgd_state, device=device)
    train_epochs = int(train_rec["epochs"])
    chain = NetworkChain(chain_model, x_tr.to(device), y_tr.to(device), lr=float(s["lr"]),
                         batch_size=int(s["batch_size"]), l2=l2, seed=int(s["seed"]),
                         sampler=settings.sampler, first_epoch=train_epochs)
    cell = Eq4Cell(test, train, theta_test, theta_tr, chain, float(s["lr"]), l2)
    acc = cell.accumulator(settings)
    ckpt = Path(args.checkpoint or args.out + ".ckpt")
    key = checkpoint_key({**s, "train_epochs": train_epochs})
    resume = load_checkpoint(ckpt, key, chain, acc)

    def checkpoint(plan: dict) -> None:
        chain_t, chain_m = chain.state()
        acc_t, acc_m = acc.state()
        save_state(ckpt, {**chain_t, **{f"acc.{k}": v for k, v in acc_t.items()}},
                   {"key": key, "chain": chain_m, "acc": acc_m, "run": plan})

    run = cell.sample(acc, settings, checkpoint=checkpoint, resume=resume, stop=stop,
                      progress=log)
    if run["status"] == "interrupted":
        from shiftcurv.train.signals import EXIT_INTERRUPTED

        print(f"shiftcurv sample: interrupted by {run['stop_reason']} after batch "
              f"{acc.batches_done}; checkpoint written to {ckpt}; rerun to resume",
              file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    sampled = time.perf_counter() - t0
    record.update(cell.record(acc, run, settings))
    cost = cost_epochs(run["chain_epochs"], acc.n, len(y_tr), len(y_te), cell.hvps,
                       settings.sampler)
    record.update(cost=cost, train_epochs=train_epochs, sample_seconds=sampled,
                  chain_steps=chain.steps)
    write_json(args.out, record)
    terms = record.get("terms", {})
    log(f"sampling cost: {cost['total_epochs']:.0f} epoch-equivalents (chain "
        f"{cost['chain_epochs']} epochs + measurement {cost['measure_epochs']:.0f}) beside "
        f"training's {train_epochs} epochs; {sampled:.1f} s")
    if terms:
        log("eq4: " + ", ".join(f"{k}={terms[k]:.4g}±{terms[k + '_se']:.2g}" for k in
                                ("excess", "excess_prediction", "local_excess_prediction",
                                 "cov_term", "shift_bias_term", "first_order")))
    log(f"status {record['status']} ({record['stop_reason']}), {acc.n} samples")
    if ckpt.exists():
        os.remove(ckpt)  # the record holds everything now
    return 0


def load_checkpoint(path: Path, key: str, chain, acc) -> dict | None:
    """The plan dict of a good checkpoint (chain and accumulator loaded), else None; a damaged or
    foreign checkpoint is moved aside to <path>.bad and sampling starts over."""
    from shiftcurv.io import load_state

    if not path.exists():
        return None
    try:
        tensors, meta = load_state(path, what="eq4 checkpoint")
        if meta.get("key") != key:
            raise ShiftcurvError(f"checkpoint {path} was written for other settings")
        chain.load({k: v for k, v in tensors.items() if k.startswith("model.")}, meta["chain"])
        acc.load({k[len("acc."):]: v for k, v in tensors.items() if k.startswith("acc.")},
                 meta["acc"])
        return meta["run"]
    except (ShiftcurvError, KeyError, TypeError, RuntimeError, ValueError) as e:
        aside = path.with_name(path.name + ".bad")
        os.replace(path, aside)
        log(f"not resuming: {str(e).splitlines()[0]}; moved the checkpoint to {aside}")
        return None
