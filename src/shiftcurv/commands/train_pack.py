"""Train several cells as one pack: one process, one vectorized model (shiftcurv.train.packed).

The cells share the dataset, the architecture, the batch size and the weight decay; each has its
own seed (and so its own initialisation and batch order), temperature, epoch budget, divergence
status, checkpoint and outputs, in the same formats as `shiftcurv train` (weights .safetensors,
record .json, checkpoint <weights>.ckpt). A cell's record gains a "pack" field (its resume key and
the pack's size). A cell's numbers do not depend on which cells it is packed with.

--cells is a JSON list (text, or @FILE), one object per cell:
  {"settings": {... as for `shiftcurv train` ...}, "out_weights": PATH, "out_record": PATH,
   "checkpoint": PATH (optional, default <out_weights>.ckpt),
   "done_if": [PATH, ...] (optional: the cell is skipped when all of these exist)}
--out-record writes the pack's own record (its cells, their status and epochs, the wall time)
when every cell has finished; the workflow's pack job has it as its one output.

A cell may start from given weights ("init": PATH, as `shiftcurv train --init`: the Fig. 5
stage 2), and may name its own job's command line ("job_argv": ["train", ...]): its outputs
(then that job's outputs under their staging names) get a key the job takes them over by
(commands._staging). A cell may also name its later steps, run in this process once the pack
is trained:
  "steps": [{"name": "min_train", "argv": ["minimize", "--data", ..., "--out-record", PATH]},
            ...]
each the command line of the cell's own Snakemake job. A step writes its outputs under staging
names, and the cell's job (the same command line) takes them over (commands._staging): import,
data and set-up costs are paid once per pack, not once per step. A step that fails is left to
the cell's own job, which runs it and reports why; its pack-mates go on.

A cell finishes (outputs written, checkpoint removed) at the epoch boundary where it ends, while
its pack-mates go on. A cell whose outputs exist from a packed run with the same settings is
skipped, so rerunning an interrupted pack only resumes the cells left. Stop signals (SIGTERM,
SIGUSR1, SIGINT): every cell still training writes a checkpoint at the epoch boundary and the
command exits 75; rerun it to resume every cell, bit-identically on CPU with the same threads.

Not packed: momentum (the Fig. 5 stage 1): use `shiftcurv train`.

Example:
  shiftcurv train-pack --data results/data/mnist1d.npz --cells '[
    {"settings": {"arch": {"type": "mlp"}, "temperature": 1e-3, "batch_size": 100, "seed": 0},
     "out_weights": "a/theta_sgd.safetensors", "out_record": "a/train.json"},
    {"settings": {"arch": {"type": "mlp"}, "temperature": 2e-3, "batch_size": 100, "seed": 1},
     "out_weights": "b/theta_sgd.safetensors", "out_record": "b/train.json"}]'
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from shiftcurv import ShiftcurvError
from shiftcurv.commands import _staging as staging
from shiftcurv.commands._common import (
    add_threads_argument,
    build_model,
    log,
    parse_json_argument,
    require,
    set_threads,
)
from shiftcurv.train.signals import EXIT_INTERRUPTED

HELP = "train several cells (same data, arch and B) as one vectorized pack"


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset .npz from prepare-data")
    p.add_argument("--cells", required=True, metavar="JSON|@FILE",
                   help="the cells: a JSON list of {settings, out_weights, out_record}")
    p.add_argument("--out-record", help="the pack's record (.json), written when all cells end")
    add_threads_argument(p)


def parse_cells(text: str) -> list[dict]:
    cells = parse_json_argument(text, "--cells")
    if not isinstance(cells, list) or not cells:
        raise ShiftcurvError("--cells must be a non-empty JSON list")
    for i, c in enumerate(cells):
        if not isinstance(c, dict) or not isinstance(c.get("settings"), dict) or \
                not all(isinstance(c.get(k), str) for k in ("out_weights", "out_record")):
            raise ShiftcurvError(f"--cells[{i}] needs settings (an object), out_weights and "
                                 f"out_record (paths)")
        require(c["settings"], "arch", "temperature", "batch_size", "seed")
        problem = staging.steps_problem(c.get("steps", []))
        if problem:
            raise ShiftcurvError(f"--cells[{i}].steps {problem}")
        if "job_argv" in c and not staging.is_argv(c["job_argv"]):
            raise ShiftcurvError(f"--cells[{i}].job_argv must be a non-empty list of strings")
        if "init" in c:
            if not (isinstance(c["init"], str) and Path(c["init"]).exists()):
                raise ShiftcurvError(f"--cells[{i}].init: initial weights not found: "
                                     f"{c['init']}")
            # the start point is part of the run's key, as for `shiftcurv train --init`
            c["settings"] = {**c["settings"], "init_sha256": staging.file_sha256(c["init"])}
    outs = [c[k] for c in cells for k in ("out_weights", "out_record")]
    if len(set(outs)) != len(outs):
        raise ShiftcurvError("--cells name an output path twice")
    return cells


def one_value(cells: list[dict], key: str):
    """The value of settings[key] shared by every cell (an error naming it when not shared)."""
    from shiftcurv.sweep import as_json

    values = {as_json(c["settings"].get(key)) for c in cells}
    if len(values) > 1:
        raise ShiftcurvError(f"cells of one pack must share {key}; got {' vs '.join(values)}")
    return cells[0]["settings"].get(key)


def run(args) -> int:
    from shiftcurv.train.signals import run_until_stopped

    return run_until_stopped(lambda stop: train_pack(args, stop), "train-pack",
                             lambda: "the checkpoints on disk stay the resume points")


def job_key(cell: dict) -> tuple[list[str], str] | None:
    """(outputs, staging key) of the cell's own job (`job_argv`), None without one."""
    if "job_argv" not in cell:
        return None
    job = staging.parse_argv(cell["job_argv"])
    outputs = staging.outputs_of(job)
    if [staging.staged(o) for o in outputs] != [cell["out_weights"], cell["out_record"]]:
        raise ShiftcurvError(f"a cell with job_argv writes its job's outputs staged: "
                             f"{', '.join(staging.staged(o) for o in outputs)}")
    return outputs, staging.step_key(job)


def already_done(cell: dict, key: str, job: tuple[list[str], str] | None) -> bool:
    """All of `done_if` are there; or, for a cell with its job's command line (`job`, from
    `job_key`), its staged result has that job's key; or, without one, outputs of a finished
    packed run of these settings are there."""
    from shiftcurv.io import read_json

    done_if = cell.get("done_if") or []
    if done_if and all(Path(p).exists() for p in done_if):
        return True
    if job is not None:
        return staging.staged_key(job[0]) == job[1]
    if not (Path(cell["out_weights"]).exists() and Path(cell["out_record"]).exists()):
        return False
    try:
        record = read_json(cell["out_record"])
    except ShiftcurvError:
        return False
    return record.get("pack", {}).get("key") == key and record.get("status") in ("ok",
                                                                                  "diverged")


def steps_left(cells: list[dict]) -> bool:
    """Some cell's later step has no outputs yet (a cheap check, before importing torch)."""
    for c in cells:
        for step in c.get("steps", []):
            parsed = staging.parse_argv(step["argv"])
            if not all(Path(o).exists() for o in staging.outputs_of(parsed)):
                return True
    return False


def train_pack(args, stop) -> int:
    from shiftcurv.commands.train import checkpoint_key
    from shiftcurv.sweep.packs import KEY_PREFIX

    cells = parse_cells(args.cells)
    keys = [KEY_PREFIX + checkpoint_key(c["settings"]) for c in cells]
    jobs = [job_key(c) for c in cells]
    todo = [k for k, c in enumerate(cells) if not already_done(c, keys[k], jobs[k])]
    if not todo and not steps_left(cells):
        write_pack_record(args, cells, {}, {})  # nothing left: no torch, no data
        return 0
    return train_and_step(args, stop, cells, keys, jobs, todo)


def train_and_step(args, stop, cells: list[dict], keys: list[str], jobs: list, todo: list[int]
                   ) -> int:
    import torch

    from shiftcurv import data
    from shiftcurv.commands.train import (
        FIELDS,
        finish,
        load_checkpoint,
        remove_stale_temporaries,
    )
    from shiftcurv.data import splits
    from shiftcurv.io import load_state, save_state
    from shiftcurv.progress import Progress
    from shiftcurv.train.packed import check_packable, fit_packed
    from shiftcurv.train.sgd import TrainSettings, TrainState

    set_threads(args.threads)
    arch = one_value(cells, "arch")
    ds = splits.apply(data.load(args.data), one_value(cells, "split"))
    settings = []
    for c in cells:
        s = c["settings"]
        try:
            settings.append(TrainSettings(**{k: s[k] for k in FIELDS if k in s}))
        except TypeError as e:
            raise ShiftcurvError(f"bad train settings: {e}") from None
        t = settings[-1].temperature
        if not (math.isfinite(t) and t > 0):
            raise ShiftcurvError(f"temperature must be > 0, got {t}")
    try:
        check_packable(settings)
    except ValueError as e:
        raise ShiftcurvError(str(e)) from None
    if settings[0].batch_size > ds.n_train:
        raise ShiftcurvError(f"batch_size {settings[0].batch_size} exceeds the {ds.n_train} "
                             f"training samples of {args.data}")
    for k in sorted(set(range(len(cells))) - set(todo)):
        log(f"cell {k}: done ({cells[k]['out_record']} of these settings, or its done_if "
            f"files): skipped")
    if not todo:
        return finish_steps(args, cells, {}, stop)
    ckpts = [Path(c.get("checkpoint") or c["out_weights"] + ".ckpt") for c in cells]
    models, states = [], []
    for k in todo:
        c = cells[k]
        torch.manual_seed(settings[k].seed)  # the init depends on the seed only, as unpacked
        models.append(build_model(arch, ds, load_state(c["init"], what="initial weights")[0])
                      if c.get("init") else build_model(arch, ds))
        remove_stale_temporaries(ckpts[k], Path(c["out_weights"]), Path(c["out_record"]))
        state = load_checkpoint(ckpts[k], keys[k], models[-1], settings[k].epochs)
        if state is not None:
            log(f"cell {k}: resuming from checkpoint {ckpts[k]} at epoch "
                f"{state.epoch}/{settings[k].epochs}")
        states.append(state or TrainState())
    n_params = sum(p.numel() for p in models[0].parameters())
    log(f"train-pack: {len(todo)} cells of {arch} ({n_params:,d} parameters) B="
        f"{settings[0].batch_size}: " + ", ".join(
            f"[{k}] T={settings[k].temperature:g} seed={settings[k].seed} "
            f"E={settings[k].epochs}" for k in todo))

    def checkpoint(j):
        k, st = todo[j], states[j]
        save_state(ckpts[k], models[j].state_dict(),
                   {"key": keys[k], "epoch": st.epoch, "history": st.history,
                    "status": st.status, "wall_seconds": st.wall_seconds, "momentum": 0})

    finished = set()

    def on_finish(j):
        k = todo[j]
        finished.add(j)
        finish(cells[k]["settings"], settings[k], states[j], ds, models[j],
               cells[k]["out_weights"], cells[k]["out_record"], ckpts[k], cells[k].get("init"),
               extra={"pack": {"key": keys[k], "size": len(todo)}})
        if jobs[k] is not None:
            staging.write_key(*jobs[k])  # its own job takes these over

    x, y = ds.tensors("train", dtype=torch.float32)
    evals = any(settings[k].eval_every > 0 for k in todo)
    fit_packed(models, x, y, [settings[k] for k in todo], states, checkpoint, on_finish,
               Progress(), stop, ds.tensors("test", dtype=torch.float32) if evals else None)
    for j, st in enumerate(states):
        if st.status in ("ok", "diverged") and j not in finished:
            on_finish(j)  # its budget was met on entry (a checkpoint at its last epoch)
    left = [(k, st) for k, st in zip(todo, states, strict=True) if st.interrupted is not None]
    for k, st in left:
        where = (f"checkpoint written to {ckpts[k]}" if ckpts[k].exists()
                 else "no checkpoint (no epoch finished)")
        print(f"shiftcurv train-pack: cell {k} interrupted by {st.interrupted} at epoch "
              f"{st.epoch}/{settings[k].epochs}; {where}; rerun to resume", file=sys.stderr,
              flush=True)
    if left:
        return EXIT_INTERRUPTED
    return finish_steps(args, cells, dict(zip(todo, states, strict=True)), stop,
                        ds.n_train // settings[0].batch_size * settings[0].batch_size)


def finish_steps(args, cells, states: dict, stop, samples_per_epoch: int = 0) -> int:
    """The cells' later steps, then the pack's record (not when a signal stopped them)."""
    steps, rc = staging.run_steps(cells, stop, args.threads)
    if rc:
        print("shiftcurv train-pack: interrupted by a stop signal between the cells' steps; "
              "rerun to go on", file=sys.stderr, flush=True)
        return rc
    write_pack_record(args, cells, states, steps, samples_per_epoch)
    return 0


def write_pack_record(args, cells: list[dict], states: dict, steps: dict,
                      samples_per_epoch: int = 0) -> None:
    """The pack's record: every cell's record path, and for those trained here their status,
    epochs, share of the wall time and work (sample-steps, what the cost model fits); skipped
    cells are listed as such; the later steps run here with their exit status and seconds."""
    from shiftcurv.commands._common import provenance
    from shiftcurv.io import write_json

    if not args.out_record:
        return
    write_json(args.out_record, {
        "cells": [{"record": c["out_record"], **({"status": states[k].status,
                                                  "epochs": states[k].epoch,
                                                  "work": states[k].epoch * samples_per_epoch,
                                                  "wall_seconds": states[k].wall_seconds}
                                                 if k in states else {"skipped": True}),
                   **({"steps": steps[k]} if k in steps else {})}
                  for k, c in enumerate(cells)],
        "trained": len(states), "provenance": provenance()})
