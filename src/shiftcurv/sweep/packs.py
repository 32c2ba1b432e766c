"""Packs: which cells (and Fig. 5 runs) run together in one pack job (config `pack: K`).

No torch here: the Snakefile forms the packs at parse time.

How packs are formed. Only cells whose training outputs are missing when the DAG is built join
a pack: per (dataset, arch, B), in config order, K at a time (Fig. 5 runs: per stage, stage 2
per B). A pack is named by a hash of its members' directories, and the assignment is *sticky*:
it is recorded in `results/packs/index.json` (directory -> pack record) by the Snakemake
process that plans the run (not by a dry run, not inside cluster jobs, which read it), and a
cell keeps its pack for good. So adding a seed or a temperature forms new packs from the new
cells only: no finished cell's pack changes, and no finished cell is retrained or re-dated.
Cells trained before packing was on (or with `pack: 1`) stay unpacked: their jobs keep the
inputs they had.

The workflow: the pack job (`train_pack`) trains its members, then runs their later steps,
writing everything under staging names (`staged`: not Snakemake outputs, so a rerun of the
pack never deletes them; its checkpoints are `PACKED_CKPT`) and the pack record (its one
output). Each of a cell's own jobs (their command lines: `train_job_argv`, `cell_steps`)
takes its staged result over when the result's key is its own (shiftcurv.commands._staging);
the cell's `train` job has the pack's record as an input (`ancient`: a rerun pack does not
re-date finished cells). Keep `results/packs/` with the cells: deleting it makes Snakemake see
changed inputs and retrain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from pathlib import Path

from shiftcurv.sweep.cells import (
    DATA_FILE,
    EQ4_OUT,
    MEASURE_OUT,
    MIN_OUT,
    RESULTS,
    TRAIN_OUT,
    Cell,
    cells,
)

INDEX = f"{RESULTS}/packs/index.json"
# Snakemake priorities of the pack jobs: on few cores, the jobs that gate others (stage 1 gates
# the stage-2 packs) and the longest (a cell pack trains, minimizes and measures K cells) first,
# so that the shorter ones fill the end. Measured on the default sweep (2 cores): the synthetic
# basins (45 s) first and the CNN cell pack (130 s) last ended the run 60 s after the rest.
PRIORITY = {"fig5_stage1": 3, "cells": 2, "fig5_stage2": 1, "fig5_shift": 1}


def fig5_priority(stage: str) -> int:
    return PRIORITY[f"fig5_{stage}"]


RECORD_NAME = re.compile(r"pack~[0-9a-f]{10}\.json")  # beside it: .log, .benchmark.tsv, .cells.json
PACKED_CKPT = "theta_sgd.packed.ckpt"
# a packed run's resume key is "packed:" + its settings' key: the unpacked trainer never resumes
# a pack's checkpoint (their kernels may differ in the last bits), nor adopts other settings'
KEY_PREFIX = "packed:"


def staged(name: str) -> str:
    """The staging name of an output: theta_sgd.safetensors -> theta_sgd.packed.safetensors
    (what a pack writes for a cell's job to take over, shiftcurv.commands._staging).

    >>> staged("train.json")
    'train.packed.json'
    >>> staged("results/runs/a/measure.json")
    'results/runs/a/measure.packed.json'
    """
    head, sep, name = name.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    return head + sep + (f"{stem}.packed.{ext}" if dot else f"{name}.packed")


STAGED = {k: staged(v) for k, v in TRAIN_OUT.items()}


def pack_size(config: dict) -> int:
    return int(config.get("pack", 1))


def record_path(group_dir: str, member_dirs: list[str]) -> str:
    """The pack record of these members (of one group: `group_dir`), named by their hash."""
    digest = hashlib.sha1("\n".join(member_dirs).encode()).hexdigest()[:10]
    return f"{group_dir}/pack~{digest}.json"


def form(units: list[tuple[str, str]], k: int, index: dict[str, str],
         done) -> tuple[dict[str, str], bool]:
    """{unit dir: pack record} for `units` ((dir, group dir) in order): a unit in the index
    keeps its pack; the others whose outputs are missing (`done(dir)` false) join new packs of
    their group, K at a time. Also whether new packs were formed."""
    out: dict[str, str] = {}
    new: dict[str, list[str]] = defaultdict(list)
    for d, group in units:
        record = index.get(d)
        if record is not None:
            out[d] = record
        elif k > 1 and not done(d):
            new[group].append(d)
    for group, dirs in new.items():
        for i in range(0, len(dirs), k):
            chunk = dirs[i:i + k]
            out.update(dict.fromkeys(chunk, record_path(group, chunk)))
    return out, bool(new)


def trained(cell: Cell, root: str = ".") -> bool:
    return all(os.path.exists(os.path.join(root, cell.dir, f)) for f in TRAIN_OUT.values())


def load_index(root: str = ".") -> dict[str, str]:
    path = Path(root) / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"pack index {path} is unreadable ({e}); it maps cells to the packs "
                         f"that trained them: restore it, or delete it with the cells") from None
    return {str(k): str(v) for k, v in index.items()}


def assign(config: dict, root: str = ".") -> tuple[dict[Cell, str], bool]:
    """{cell: its pack record} for the packed cells of this config, and whether new packs were
    formed (then `save_index` records them). Empty when `pack` <= 1 and nothing was packed."""
    index = load_index(root)
    k = pack_size(config)
    if k <= 1 and not index:
        return {}, False  # never packed: nothing to look up
    by_dir = {c.dir: c for c in cells(config)}
    units = [(d, f"{RESULTS}/packs/{c.dataset}/{c.arch}/B~{c.batch_size}")
             for d, c in by_dir.items()]
    out, new = form(units, k, index, lambda d: trained(by_dir[d], root))
    return {by_dir[d]: r for d, r in out.items()}, new


def save_index(assignment: dict, root: str = ".") -> None:
    """Add `assignment` ({cell or run directory: record}) to the index (atomically; entries of
    cells outside this config stay)."""
    path = Path(root) / INDEX
    index = load_index(root) | {getattr(c, "dir", c): r for c, r in assignment.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=0, sort_keys=True) + "\n")
    os.replace(tmp, path)


def members(assignment: dict[Cell, str], record: str) -> list[Cell]:
    return [c for c, r in assignment.items() if r == record]


def by_record(assignment: dict) -> dict[str, list]:
    """{pack record: its members}, in assignment order (one pass, for many packs)."""
    out: dict[str, list] = defaultdict(list)
    for c, r in assignment.items():
        out[r].append(c)
    return dict(out)


def cells_argument(config: dict, assignment: dict[Cell, str], record: str,
                   members_of: dict[str, list[Cell]] | None = None) -> list[dict]:
    """The pack job's `shiftcurv train-pack --cells`: each member's settings, its `train` job's
    command line (whose outputs, staged, it writes), checkpoint, its final outputs (a member
    that has them is skipped) and its later steps. `members_of`: `by_record(assignment)`, when
    the caller has it."""
    from shiftcurv.sweep.settings import eq4_cells, train_settings

    chosen = (members_of or {}).get(record) or members(assignment, record)
    sampled = set(eq4_cells(config))
    return [{"settings": train_settings(config, c), "job_argv": train_job_argv(config, c),
             "out_weights": f"{c.dir}/{STAGED['weights']}",
             "out_record": f"{c.dir}/{STAGED['record']}",
             "checkpoint": f"{c.dir}/{PACKED_CKPT}",
             "done_if": [f"{c.dir}/{f}" for f in TRAIN_OUT.values()],
             "steps": cell_steps(config, c, c in sampled)}
            for c in chosen]


def train_job_argv(config: dict, cell: Cell) -> list[str]:
    """The command line of a cell's `train` job (workflow/rules/train.smk), --threads aside."""
    from shiftcurv.sweep.settings import as_json, train_settings

    return ["train", "--data", DATA_FILE.format(dataset=cell.dataset),
            "--settings", as_json(train_settings(config, cell)),
            "--out-weights", f"{cell.dir}/{TRAIN_OUT['weights']}",
            "--out-record", f"{cell.dir}/{TRAIN_OUT['record']}"]


def cell_steps(config: dict, cell: Cell, sampled: bool | None = None) -> list[dict]:
    """A cell's steps after training, as the command lines of its own jobs (the rules
    min_train, min_test, measure and sample in workflow/rules/): the pack runs them in its
    process, staged, and each job takes its result over when its command line is this one
    (commands._staging; tests/test_packing.py checks that every job of a packed sweep does).
    `sampled`: whether the cell runs Eq. 4 chains (looked up when None)."""
    from shiftcurv.sweep.settings import (
        as_json,
        eq4_cells,
        eq4_chains,
        eq4_settings,
        measure_settings,
        minimize_settings,
    )

    d = cell.dir
    data = DATA_FILE.format(dataset=cell.dataset)
    sgd = {k: f"{d}/{v}" for k, v in TRAIN_OUT.items()}
    mins = {split: {k: f"{d}/{v}" for k, v in out.items()} for split, out in MIN_OUT.items()}
    steps = [{"name": f"min_{split}", "argv": [
        "minimize", "--data", data, "--init", sgd["weights"], "--init-record", sgd["record"],
        "--settings", as_json(minimize_settings(config, cell, split=split)),
        "--out-weights", mins[split]["weights"], "--out-record", mins[split]["record"]]}
        for split in ("train", "test")]
    after = ["--data", data, "--theta-sgd", sgd["weights"], "--theta-train",
             mins["train"]["weights"], "--theta-test", mins["test"]["weights"],
             "--train-record", sgd["record"], "--min-records", mins["train"]["record"],
             mins["test"]["record"]]
    steps.append({"name": "measure", "argv": [
        "measure", *after, "--settings", as_json(measure_settings(config, cell)),
        "--out", f"{d}/{MEASURE_OUT}"]})
    if sampled is None:
        sampled = cell in set(eq4_cells(config))
    if sampled:
        steps += [{"name": f"sample_{chain}", "argv": [
            "sample", *after, "--settings", as_json(eq4_settings(config, cell, chain)),
            "--out", f"{d}/{EQ4_OUT.format(chain=chain)}"]} for chain in eq4_chains(config)]
    return steps


# -- Fig. 5 runs (workflow/rules/fig5.smk) ------------------------------------------------------
# Stage 2 (plain SGD from given weights) packs per batch size and trains vectorized
# (`shiftcurv train-pack`, rule fig5_train_pack); stage 1 (momentum) and the shift runs
# (each its own data) run one after the other in one process (`shiftcurv run-steps`, rule
# fig5_pack).
FIG5_PACKED_CKPT = "theta.packed.ckpt"


def fig5_runs(config: dict) -> list[dict]:
    """Every Fig. 5 run of the config: {dir, stage, group, settings, argv, init} with argv the
    command line of the run's own job (rules fig5_stage1, fig5_stage2, fig5_shift), group the
    pack directory it joins, and for stage 2 its `init`."""
    from shiftcurv.sweep import fig5 as f5
    from shiftcurv.sweep.settings import as_json

    f = f5.section(config)
    if f is None:
        return []
    w = f5.wildcards(config)
    data = DATA_FILE.format(dataset=f["dataset"])
    root = f"{RESULTS}/packs/fig5/{f['dataset']}/{f['arch']}"

    def run(stage, d, settings, init=None):
        argv = ["train", "--data", data, *(["--init", init] if init else []),
                "--settings", as_json(settings), "--out-weights", f"{d}/{f5.WEIGHTS}",
                "--out-record", f"{d}/{f5.RECORD}"]
        group = f"{root}/{stage}" + (f"/B~{settings['batch_size']}" if init else "")
        return {"dir": d, "stage": stage, "group": group, "settings": settings, "argv": argv,
                "init": init}

    out = []
    if "temperature" in f["experiments"]:
        out += [run("stage1", f5.STAGE1_DIR.format(**w, seed=s), f5.stage1_settings(config, s))
                for s in f["seeds"]]
        out += [run("stage2", f5.STAGE2_DIR.format(**w, lr=c.lr, B=c.batch_size, seed=c.seed),
                    f5.stage2_settings(config, c),
                    init=f5.STAGE1_DIR.format(**w, seed=c.seed) + f"/{f5.WEIGHTS}")
                for c in f5.stage2_cells(config)]
    out += [run("shift", f5.SHIFT_DIR.format(**w, split=label, seed=s),
                f5.shift_settings(config, label, s)) for label, s in f5.shift_runs(config)]
    return out


def assign_fig5(config: dict, root: str = ".") -> tuple[dict[str, str], bool]:
    """{Fig. 5 run directory: its pack record}, as `assign` for cells: the runs whose outputs
    are missing when the DAG is built join packs per stage (stage 2: per batch size), K at a
    time, for good."""
    from shiftcurv.sweep import fig5 as f5

    index = load_index(root)
    k = pack_size(config)
    runs = fig5_runs(config)
    if not runs or (k <= 1 and not index):
        return {}, False
    return form([(r["dir"], r["group"]) for r in runs], k, index, lambda d: all(
        os.path.exists(os.path.join(root, d, name)) for name in (f5.WEIGHTS, f5.RECORD)))


def fig5_by_record(config: dict, assignment: dict[str, str]) -> dict[str, list[dict]]:
    """{pack record: its Fig. 5 runs (as `fig5_runs`)}, in one pass."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in fig5_runs(config):
        if r["dir"] in assignment:
            out[assignment[r["dir"]]].append(r)
    return dict(out)


def fig5_pack_steps(runs: list[dict]) -> list[dict]:
    """The `shiftcurv run-steps --steps` of a stage-1 or shift pack: its runs' command lines."""
    return [{"name": r["stage"], "argv": r["argv"]} for r in runs]


def fig5_pack_cells(runs: list[dict]) -> list[dict]:
    """The `shiftcurv train-pack --cells` of a stage-2 pack: each run's settings and init, its
    job's command line and outputs under their staging names (its job takes them over)."""
    from shiftcurv.sweep import fig5 as f5

    return [{"settings": r["settings"], "init": r["init"], "job_argv": r["argv"],
             "out_weights": staged(f"{r['dir']}/{f5.WEIGHTS}"),
             "out_record": staged(f"{r['dir']}/{f5.RECORD}"),
             "checkpoint": f"{r['dir']}/{FIG5_PACKED_CKPT}",
             "done_if": [f"{r['dir']}/{f5.WEIGHTS}", f"{r['dir']}/{f5.RECORD}"]}
            for r in runs]


def fig5_pack_inputs(runs: list[dict]) -> list[str]:
    """What a Fig. 5 pack reads besides the data: its stage-2 runs' stage-1 weights."""
    return list(dict.fromkeys(r["init"] for r in runs if r["init"]))
