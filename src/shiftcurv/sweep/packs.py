"""Packs: which cells train together in one `shiftcurv train-pack` job (config `pack: K`).

No torch here: the Snakefile forms the packs at parse time.

How packs are formed. Only cells whose training outputs are missing when the DAG is built join
a pack: per (dataset, arch, B), in config order, K at a time. A pack is named by a hash of its
members' directories, and the assignment is *sticky*: it is recorded in `results/packs/
index.json` (cell directory -> pack record) by the Snakemake process that plans the run (not
by a dry run, not inside cluster jobs, which read it), and a cell keeps its pack for good. So
adding a seed or a temperature forms new packs from the new cells only: no finished cell's pack
changes, and no finished cell is retrained or re-dated. Cells trained before packing was on
(or with `pack: 1`) stay unpacked: their `train` job keeps the inputs it had.

The workflow: the pack job (`train_pack`) trains its members into staging files in each cell
directory (`STAGED`, not Snakemake outputs, so a rerun of the pack never deletes them; its
checkpoints are `PACKED_CKPT`) and writes the pack record (its one output). Each cell's `train`
job, whose input is its pack's record (`ancient`: a rerun pack does not re-date finished
cells), takes its staged files over (`shiftcurv train` renames them into place when their key
matches its settings; otherwise it trains the cell itself). Keep `results/packs/` with the
cells: deleting it makes Snakemake see changed inputs and retrain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from pathlib import Path

from shiftcurv.staging import staged
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
RECORD_NAME = re.compile(r"pack~[0-9a-f]{10}\.json")  # beside it: .log, .benchmark.tsv, .cells.json
MAX_PACK = 128  # cells per pack job: its --cells argument stays under Linux's 128 KiB per word
PACKED_CKPT = "theta_sgd.packed.ckpt"
# a packed run's resume key is "packed:" + its settings' key: the unpacked trainer never resumes
# a pack's checkpoint (their kernels may differ in the last bits), nor adopts other settings'
KEY_PREFIX = "packed:"


STAGED = {k: staged(v) for k, v in TRAIN_OUT.items()}


def pack_size(config: dict) -> int:
    return int(config.get("pack", 1))


def record_path(cell: Cell, members: list[Cell]) -> str:
    """The pack record of `members` (all of `cell`'s dataset, arch and B)."""
    digest = hashlib.sha1("\n".join(c.dir for c in members).encode()).hexdigest()[:10]
    return f"{RESULTS}/packs/{cell.dataset}/{cell.arch}/B~{cell.batch_size}/pack~{digest}.json"


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
    out: dict[Cell, str] = {}
    new: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells(config):
        record = index.get(c.dir)
        if record is not None:
            out[c] = record
        elif k > 1 and not trained(c, root):
            new[(c.dataset, c.arch, c.batch_size)].append(c)
    for members in new.values():
        for i in range(0, len(members), k):
            chunk = members[i:i + k]
            for c in chunk:
                out[c] = record_path(chunk[0], chunk)
    return out, bool(new)


def save_index(assignment: dict[Cell, str], root: str = ".") -> None:
    """Add `assignment` to the index (atomically; entries of cells outside this config stay)."""
    path = Path(root) / INDEX
    index = load_index(root) | {c.dir: r for c, r in assignment.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=0, sort_keys=True) + "\n")
    os.replace(tmp, path)


def members(assignment: dict[Cell, str], record: str) -> list[Cell]:
    return [c for c, r in assignment.items() if r == record]


def cells_argument(config: dict, assignment: dict[Cell, str], record: str) -> list[dict]:
    """The pack job's `shiftcurv train-pack --cells`: each member's settings, staging outputs,
    checkpoint, its final outputs (a member that has them is skipped) and its later steps."""
    from shiftcurv.sweep.settings import train_settings

    return [{"settings": train_settings(config, c),
             "out_weights": f"{c.dir}/{STAGED['weights']}",
             "out_record": f"{c.dir}/{STAGED['record']}",
             "checkpoint": f"{c.dir}/{PACKED_CKPT}",
             "done_if": [f"{c.dir}/{f}" for f in TRAIN_OUT.values()],
             "steps": cell_steps(config, c)}
            for c in members(assignment, record)]


def cell_steps(config: dict, cell: Cell) -> list[dict]:
    """A cell's steps after training, as the command lines of its own jobs (the rules
    min_train, min_test, measure and sample in workflow/rules/): the pack runs them in its
    process, staged, and each job takes its result over when its command line is this one
    (shiftcurv.staging; tests/test_packing.py checks that every job of a packed sweep does)."""
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
    if cell in set(eq4_cells(config)):
        steps += [{"name": f"sample_{chain}", "argv": [
            "sample", *after, "--settings", as_json(eq4_settings(config, cell, chain)),
            "--out", f"{d}/{EQ4_OUT.format(chain=chain)}"]} for chain in eq4_chains(config)]
    return steps
