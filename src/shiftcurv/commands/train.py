"""Train one cell with plain SGD at temperature T (lr = T·B), through PyTorch Lightning.

Writes the final weights (safetensors) and a JSON record: status (ok | diverged), lr, B, T,
epochs, steps, per-epoch train loss/accuracy (running means over the epoch's minibatches), the
final full-set train/test loss and accuracy (plain loss, no L2), wall time and provenance.

Every `checkpoint_every` epochs a checkpoint is written next to the weights (<weights>.ckpt, not
a workflow output, so Snakemake never deletes it); rerunning the same command resumes from it.
A checkpoint that is unreadable, or that belongs to other settings, is set aside (renamed to
<checkpoint>.bad) and not used.

Stop signals (SIGTERM, SIGUSR1, SIGINT): the run finishes the current epoch, writes a checkpoint
at that epoch boundary and exits with status 75 (EX_TEMPFAIL) and the line "interrupted by
SIGTERM at epoch k/E; checkpoint written to PATH"; a second signal exits at once (the last
checkpoint on disk stays the resume point). Rerun the same command to resume, bit-identically on
CPU with the same thread count. See docs/reliability.md.

Example:
  shiftcurv train --data results/data/mnist1d.npz --out-weights w.safetensors \\
      --out-record train.json --settings '{"arch": {"type": "mlp", "widths": [100, 100]},
      "temperature": 1e-3, "batch_size": 100, "seed": 0}'
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import (
    add_settings_argument,
    add_threads_argument,
    build_model,
    log,
    parse_settings,
    provenance,
    require,
    set_threads,
)

HELP = "train one cell with SGD at temperature T (Lightning)"
FIELDS = ("temperature", "batch_size", "seed", "l2", "epochs_ref", "temperature_ref",
          "max_epochs", "checkpoint_every", "device", "momentum", "lr_milestones", "lr_decay",
          "epochs_fixed", "eval_every")
# settings that shape the run besides TrainSettings: the data split (Fig. 5 shift experiments)
# and, with --init, the starting weights (Fig. 5 stage 2)
EXTRA = ("split", "init_sha256")
MOMENTUM = "__momentum__."  # key prefix of the momentum buffers inside a checkpoint
# file arguments (argparse dests): a pack job trains this step's cell or Fig. 5 run staged and
# this command takes the result over (commands._staging)
INPUTS = ("data", "init")
OUTPUTS = ("out_weights", "out_record")


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset .npz from prepare-data")
    add_settings_argument(p)
    p.add_argument("--out-weights", required=True, help="final weights (.safetensors)")
    p.add_argument("--out-record", required=True, help="the run's record (.json)")
    p.add_argument("--checkpoint", help="resume checkpoint path (default: <out-weights>.ckpt)")
    p.add_argument("--init", help="start from these weights (e.g. a Fig. 5 stage-1 result), "
                                  "BN running statistics included, instead of the seeded init")
    add_threads_argument(p)


def checkpoint_key(settings: dict) -> str:
    """What must match for a checkpoint to be resumed: everything that shapes the trajectory."""
    from shiftcurv.sweep import as_json, config_hash

    return config_hash(json.loads(as_json({k: settings.get(k) for k in ("arch", *FIELDS, *EXTRA)
                                           if k != "checkpoint_every"})))


def load_checkpoint(path: Path, key: str, model, epochs: int):
    """The TrainState of a good checkpoint for these settings (weights loaded into `model`), else
    None. A damaged, inconsistent or foreign checkpoint is renamed aside to <path>.bad (never
    deleted, never used) and the run starts from the beginning."""
    import torch

    from shiftcurv.io import load_state
    from shiftcurv.train.sgd import TrainState

    if not path.exists():
        return None
    try:
        state, meta = load_state(path, what="checkpoint")
        if meta.get("key") != key:
            raise ShiftcurvError(f"checkpoint {path} was written for other settings")
        epoch, history = int(meta["epoch"]), meta["history"]
        if not 0 < epoch <= epochs or meta["status"] != "running" or any(
                len(history[k]) != epoch for k in ("epoch", "loss", "accuracy", "seconds")):
            raise ShiftcurvError(f"checkpoint {path} is inconsistent (epoch {epoch} of {epochs},"
                                 f" status {meta['status']!r})")
        if not all(bool(torch.isfinite(t).all()) for t in state.values()):
            raise ShiftcurvError(f"checkpoint {path} holds non-finite weights")
        buffers = [state.pop(f"{MOMENTUM}{i}") for i in range(int(meta.get("momentum", 0)))]
        backup = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            model.load_state_dict(state)
        except RuntimeError:
            model.load_state_dict(backup)  # a partial load must not leak into a fresh start
            raise
        return TrainState(epoch=epoch, history=history, status="running",
                          wall_seconds=float(meta["wall_seconds"]),
                          momentum_buffers=buffers or None)
    except (ShiftcurvError, KeyError, TypeError, RuntimeError, ValueError) as e:
        aside = path.with_name(path.name + ".bad")
        os.replace(path, aside)
        log(f"not resuming: {str(e).splitlines()[0]}; moved the checkpoint to {aside}; "
            f"starting from epoch 0")
        return None


def remove_stale_temporaries(*paths: Path) -> None:
    """Temp files that a killed atomic write left next to `paths` (never read, only clutter)."""
    for path in paths:
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def run(args) -> int:
    from shiftcurv.train.signals import run_until_stopped

    def kept() -> str:
        ckpt = Path(args.checkpoint or args.out_weights + ".ckpt")
        return f"checkpoint {ckpt} kept" if ckpt.exists() else "no checkpoint yet"

    # installed first, so that Lightning's SIGTERM handler (set in Trainer.fit) chains ours
    return run_until_stopped(lambda stop: train(args, stop), "train", kept)


def final_losses(history: dict, window: int) -> dict:
    """The paper's Fig. 5 'final loss': the median over the last `window` logged values (one per
    epoch here), which drops the spiky outliers of constant-lr SGD."""
    import numpy as np

    out = {}
    for key, name in (("loss", "final_train_loss"), ("eval_train_loss", "final_eval_train_loss"),
                      ("eval_test_loss", "final_test_loss")):
        values = history.get(key, [])[-window:]
        if values:
            out[name] = float(np.median(values))
    return out


def train(args, stop) -> int:
    import torch

    from shiftcurv import data
    from shiftcurv.data import splits
    from shiftcurv.io import save_state
    from shiftcurv.progress import Progress
    from shiftcurv.train.sgd import TrainSettings, TrainState, fit

    set_threads(args.threads)
    s = parse_settings(args.settings)
    require(s, "arch", "temperature", "batch_size", "seed")
    ds = splits.apply(data.load(args.data), s.get("split"))
    if args.init:
        from shiftcurv.commands._staging import file_sha256

        s["init_sha256"] = file_sha256(args.init)  # the start point is part of the run's key
    try:
        settings = TrainSettings(**{k: s[k] for k in FIELDS if k in s})
    except TypeError as e:
        raise ShiftcurvError(f"bad train settings: {e}") from None
    if not (math.isfinite(settings.temperature) and settings.temperature > 0):
        raise ShiftcurvError(f"temperature must be > 0, got {settings.temperature}")
    if settings.batch_size > ds.n_train:
        raise ShiftcurvError(f"batch_size {settings.batch_size} exceeds the {ds.n_train} "
                             f"training samples of {args.data}")
    torch.manual_seed(settings.seed)  # the init depends on the seed only, not on T
    if args.init:
        from shiftcurv.io import load_state

        model = build_model(s["arch"], ds, load_state(args.init, what="initial weights")[0])
    else:
        model = build_model(s["arch"], ds)
    n_params = sum(p.numel() for p in model.parameters())
    ckpt = Path(args.checkpoint or args.out_weights + ".ckpt")
    remove_stale_temporaries(ckpt, Path(args.out_weights), Path(args.out_record))
    key = checkpoint_key(s)
    state = load_checkpoint(ckpt, key, model, settings.epochs)
    if state is not None:
        log(f"resuming from checkpoint {ckpt} at epoch {state.epoch}/{settings.epochs}")
    log(f"train: {s['arch']} ({n_params:,d} parameters) T={settings.temperature:g} "
        f"B={settings.batch_size} lr={settings.lr:g} epochs={settings.epochs} seed={settings.seed}")

    def checkpoint(module):
        st = module.state
        tensors = dict(module.model.state_dict())
        buffers = module.momentum_buffers() or []
        tensors.update({f"{MOMENTUM}{i}": b for i, b in enumerate(buffers)})
        save_state(ckpt, tensors,
                   {"key": key, "epoch": st.epoch, "history": st.history, "status": st.status,
                    "wall_seconds": st.wall_seconds, "momentum": len(buffers)})

    x, y = ds.tensors("train", dtype=torch.float32)
    eval_data = ds.tensors("test", dtype=torch.float32) if settings.eval_every > 0 else None
    state = fit(model, x, y, settings, state or TrainState(), checkpoint, Progress(), stop,
                eval_data)
    if state.interrupted is not None:
        from shiftcurv.train.signals import EXIT_INTERRUPTED

        where = (f"checkpoint written to {ckpt}" if ckpt.exists()
                 else "no checkpoint (no epoch finished)")
        msg = (f"interrupted by {state.interrupted} at epoch {state.epoch}/{settings.epochs}; "
               f"{where}; rerun to resume")
        print(f"shiftcurv train: {msg}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finish(s, settings, state, ds, model, args.out_weights, args.out_record, ckpt, args.init)
    return 0


def finish(s: dict, settings, state, ds, model, out_weights, out_record, ckpt: Path,
           init: str | None = None, extra: dict | None = None) -> dict:
    """Write a finished cell's weights and record (final full-set losses included), remove its
    checkpoint; `extra` adds fields to the record (the packed trainer's). Returns the record."""
    from shiftcurv.io import save_state, write_json
    from shiftcurv.landscape.objective import Objective
    from shiftcurv.train.sgd import settings_dict

    n_params = sum(p.numel() for p in model.parameters())
    record = {"status": state.status, "settings": settings_dict(settings), "arch": s["arch"],
              "n_params": n_params, "lr": settings.lr, "batch_size": settings.batch_size,
              "temperature": settings.temperature, "epochs": state.epoch,
              "epochs_planned": settings.epochs,
              "steps": state.epoch * (ds.n_train // settings.batch_size),
              "history": state.history, "wall_seconds": state.wall_seconds,
              "n_train": ds.n_train, "n_test": ds.n_test, "split": s.get("split") or {},
              "init": init, "init_sha256": s.get("init_sha256"),
              **final_losses(state.history, int(s.get("final_window", 100))),
              "provenance": provenance(), **(extra or {})}
    for split in ("train", "test"):
        xs, ys = ds.tensors(split)
        ob = Objective(model, xs, ys)
        loss, acc = ob.loss_and_accuracy(ob.theta_of())
        record[f"{split}_loss"], record[f"{split}_acc"] = loss, acc
    if state.status == "ok" and not math.isfinite(record["train_loss"]):
        record["status"] = "diverged"
    save_state(out_weights, model.state_dict())
    write_json(out_record, record)
    log(f"done: status {record['status']}, train loss {record['train_loss']:.5f} "
        f"acc {record['train_acc']:.4f}, test loss {record['test_loss']:.5f} "
        f"acc {record['test_acc']:.4f}, {state.wall_seconds:.1f} s of SGD")
    if ckpt.exists():
        ckpt.unlink()  # the final weights supersede it
    return record
