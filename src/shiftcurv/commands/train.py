"""Train one cell with plain SGD at temperature T (lr = T·B), through PyTorch Lightning.

Writes the final weights (safetensors) and a JSON record: status (ok | diverged), lr, B, T,
epochs, steps, per-epoch train loss/accuracy (running means over the epoch's minibatches), the
final full-set train/test loss and accuracy (plain loss, no L2), wall time and provenance.

Every `checkpoint_every` epochs a checkpoint is written next to the weights (<weights>.ckpt, not
a workflow output, so Snakemake never deletes it); rerunning the same command resumes from it.
A checkpoint that is unreadable, or that belongs to other settings, is set aside and not used.

Example:
  shiftcurv train --data results/data/mnist1d.npz --out-weights w.safetensors \\
      --out-record train.json --settings '{"arch": {"type": "mlp", "widths": [100, 100]},
      "temperature": 1e-3, "batch_size": 100, "seed": 0}'
"""

from __future__ import annotations

import json
import math
import os
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
          "max_epochs", "checkpoint_every", "device")


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset .npz from prepare-data")
    add_settings_argument(p)
    p.add_argument("--out-weights", required=True, help="final weights (.safetensors)")
    p.add_argument("--out-record", required=True, help="the run's record (.json)")
    p.add_argument("--checkpoint", help="resume checkpoint path (default: <out-weights>.ckpt)")
    add_threads_argument(p)


def checkpoint_key(settings: dict) -> str:
    """What must match for a checkpoint to be resumed: everything that shapes the trajectory."""
    from shiftcurv.sweep import as_json, config_hash

    return config_hash(json.loads(as_json({k: settings.get(k) for k in ("arch", *FIELDS)
                                           if k != "checkpoint_every"})))


def load_checkpoint(path: Path, key: str, model):
    """The TrainState of a good checkpoint for these settings (weights loaded into `model`), else
    None. A damaged or foreign checkpoint is renamed aside (never deleted, never used)."""
    from shiftcurv.io import load_state
    from shiftcurv.training import TrainState

    if not path.exists():
        return None
    try:
        state, meta = load_state(path, what="checkpoint")
        if meta.get("key") != key:
            raise ShiftcurvError(f"checkpoint {path} was written for other settings")
        model.load_state_dict(state)
        return TrainState(epoch=int(meta["epoch"]), history=meta["history"],
                          status=meta["status"], wall_seconds=float(meta["wall_seconds"]))
    except (ShiftcurvError, KeyError, RuntimeError, ValueError) as e:
        aside = path.with_name(path.name + ".bad")
        os.replace(path, aside)
        log(f"not resuming: {e}; moved it to {aside}")
        return None


def run(args) -> int:
    import torch

    from shiftcurv import data
    from shiftcurv.io import save_state, write_json
    from shiftcurv.objective import Objective
    from shiftcurv.progress import Progress
    from shiftcurv.training import TrainSettings, TrainState, fit, settings_dict

    set_threads(args.threads)
    s = parse_settings(args.settings)
    require(s, "arch", "temperature", "batch_size", "seed")
    ds = data.load(args.data)
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
    model = build_model(s["arch"], ds)
    n_params = sum(p.numel() for p in model.parameters())
    ckpt = Path(args.checkpoint or args.out_weights + ".ckpt")
    key = checkpoint_key(s)
    state = load_checkpoint(ckpt, key, model)
    if state is not None:
        log(f"resuming from checkpoint {ckpt} at epoch {state.epoch}/{settings.epochs}")
    log(f"train: {s['arch']} ({n_params:,d} parameters) T={settings.temperature:g} "
        f"B={settings.batch_size} lr={settings.lr:g} epochs={settings.epochs} seed={settings.seed}")

    def checkpoint(module):
        st = module.state
        save_state(ckpt, module.model.state_dict(),
                   {"key": key, "epoch": st.epoch, "history": st.history, "status": st.status,
                    "wall_seconds": st.wall_seconds})

    x, y = ds.tensors("train", dtype=torch.float32)
    state = fit(model, x, y, settings, state or TrainState(), checkpoint, Progress())
    record = {"status": state.status, "settings": settings_dict(settings), "arch": s["arch"],
              "n_params": n_params, "lr": settings.lr, "batch_size": settings.batch_size,
              "temperature": settings.temperature, "epochs": state.epoch,
              "epochs_planned": settings.epochs,
              "steps": state.epoch * (ds.n_train // settings.batch_size),
              "history": state.history, "wall_seconds": state.wall_seconds,
              "provenance": provenance()}
    for split in ("train", "test"):
        xs, ys = ds.tensors(split)
        ob = Objective(model, xs, ys)
        loss, acc = ob.loss_and_accuracy(ob.theta_of())
        record[f"{split}_loss"], record[f"{split}_acc"] = loss, acc
    if state.status == "ok" and not math.isfinite(record["train_loss"]):
        record["status"] = "diverged"
    save_state(args.out_weights, model.state_dict())
    write_json(args.out_record, record)
    log(f"done: status {record['status']}, train loss {record['train_loss']:.5f} "
        f"acc {record['train_acc']:.4f}, test loss {record['test_loss']:.5f} "
        f"acc {record['test_acc']:.4f}, {state.wall_seconds:.1f} s of SGD")
    if ckpt.exists():
        ckpt.unlink()  # the final weights supersede it
    return 0

