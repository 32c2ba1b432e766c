"""Where every cell of a sweep stands, read from the results directory alone (no torch, no
Snakemake import), fast enough for 10 000 cells.

Per cell: one listing of its directory; only cells that are not finished get a second listing
(their `logs/`) and a read of the last line of one log. A finished cell's status (`ok` →
`done`, or `diverged`, ...) is read from the top-level `"status"` line of its measure.json
without parsing the whole file. Snakemake's own "this job has started" markers
(`.snakemake/incomplete/`, one file per output of a running job, named by the output path in
URL-safe base64) tell a running job from a dead one; they are read with one directory walk.

Statuses:
  done         measure.json says ok
  diverged     measure.json says diverged (non-finite loss in SGD or minimum finding)
  unconverged  measure.json says unconverged: a minimum stopped at its step cap or stalled
               before reaching its flow time (measured, but masked in the figures)
  running      a step of the cell has started (Snakemake marker, or a fresh log) and not ended
  stalled      Snakemake marks a step as started but its log has not moved for a while: the
               controller or the node was probably killed (`snakemake --unlock`, then rerun)
  interrupted  a training step stopped on a signal; its checkpoint makes the rerun resume
  failed       a step's log exists but its outputs do not: the log's last line says why; or
               (with `check`) a result file is truncated or unreadable
  missing      nothing of the cell (or of its next step) has run yet
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from shiftcurv.sweep.cells import EQ4_OUT, MEASURE_OUT, MIN_OUT, TRAIN_OUT, Cell

# the per-cell steps in order, each with the outputs that say it is done
STEPS: dict[str, tuple[str, ...]] = {
    "train": (TRAIN_OUT["weights"], TRAIN_OUT["record"]),
    "min_train": (MIN_OUT["train"]["weights"], MIN_OUT["train"]["record"]),
    "min_test": (MIN_OUT["test"]["weights"], MIN_OUT["test"]["record"]),
    "measure": (MEASURE_OUT,),
}
CHECKPOINT = TRAIN_OUT["weights"] + ".ckpt"
STATUSES = ("done", "diverged", "unconverged", "running", "stalled", "interrupted", "failed",
            "missing")
_TOP_STATUS = re.compile(rb'^[{ ]"status": "([^"]*)"', re.M)  # write_json's indent=1


@dataclass
class CellStatus:
    cell: Cell
    status: str
    step: str = ""  # the step it is at (or failed in)
    detail: str = ""  # the failure's last log line, the problem file, ...
    bad_file: str = ""  # a truncated or unreadable result file, when that is the problem


def incomplete_outputs(root: str | Path = ".") -> set[str] | None:
    """Outputs that Snakemake marked as started and not finished (paths as in the rules), or
    None when this directory has no Snakemake state (markers unavailable)."""
    top = Path(root) / ".snakemake" / "incomplete"
    if not top.is_dir():
        return None
    out = set()
    for dirpath, _, files in os.walk(top):
        rel = Path(dirpath).relative_to(top).parts
        for name in files:
            if name == "migration_underway":
                continue
            parts = [p.lstrip("@") for p in (*rel, name)]
            try:
                out.add(base64.urlsafe_b64decode("".join(parts)).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return out


def last_line(path: str | Path, max_bytes: int = 4096) -> str:
    """The last non-empty line of a text file (reading at most its last `max_bytes`)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            tail = f.read()
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.decode(errors="replace").replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


def record_status(path: str | Path) -> str | None:
    """The top-level "status" of a JSON record, from its first 64 KiB when the line is there,
    else by parsing the whole file; None when it is unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            m = _TOP_STATUS.search(head)
            if m:
                return m.group(1).decode()
            rest = f.read()
        rec = json.loads(head + rest)
        return str(rec["status"]) if isinstance(rec, dict) and "status" in rec else None
    except (OSError, ValueError, KeyError):
        return None


def file_problem(path: str | Path) -> str | None:
    """Why a result file cannot be used (truncated, unreadable), or None when it reads whole:
    JSON parses; a safetensors header parses and the file is as long as the header says."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            json.loads(path.read_bytes())
            return None
        if path.suffix == ".safetensors":
            with open(path, "rb") as f:
                raw = f.read(8)
                if len(raw) < 8:
                    return f"truncated or unreadable: {path} (no header)"
                n = int.from_bytes(raw, "little")
                if n > 100_000_000:
                    return f"truncated or unreadable: {path} (bad header length)"
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                      default=0)
            if path.stat().st_size != 8 + n + end:
                return f"truncated or unreadable: {path} ({path.stat().st_size} bytes, " \
                       f"expected {8 + n + end})"
            return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return f"truncated or unreadable: {path} ({str(e).splitlines()[0][:120]})"
    return None


def cell_status(cell: Cell, root: Path, incomplete: set[str] | None, now: float,
                stale_seconds: float = 600.0, check: bool = False,
                chains: tuple[str, ...] = ()) -> CellStatus:
    """The status of one cell; at most two directory listings (the cell's, and its logs/ when
    the cell is unfinished). `chains`: the Eq. 4 records the cell must also have."""
    d = root / cell.dir
    try:
        names = set(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return CellStatus(cell, "missing", "train")
    if check:
        for step, outputs in STEPS.items():
            for name in outputs:
                if name in names:
                    problem = file_problem(d / name)
                    if problem:
                        return CellStatus(cell, "failed", step, problem, str(d / name))
    if MEASURE_OUT in names:
        st = record_status(d / MEASURE_OUT)
        if st is None:
            return CellStatus(cell, "failed", "measure",
                              f"truncated or unreadable: {d / MEASURE_OUT}", str(d / MEASURE_OUT))
        if st == "ok":  # done once the Eq. 4 records of its samplers are there too
            for chain in chains:
                record = EQ4_OUT.format(chain=chain)
                if record not in names:
                    return unfinished(cell, d, names, f"sample_{chain}", (record,),
                                      incomplete, now, stale_seconds)
        return CellStatus(cell, {"ok": "done"}.get(st, st), "measure",
                          "" if st == "ok" else f"measure.json status {st}")
    step = next(s for s, outputs in STEPS.items() if not all(n in names for n in outputs))
    return unfinished(cell, d, names, step, STEPS[step], incomplete, now, stale_seconds)


def unfinished(cell: Cell, d: Path, names: set[str], step: str, outputs: tuple[str, ...],
               incomplete: set[str] | None, now: float, stale_seconds: float) -> CellStatus:
    """running, stalled, interrupted, failed or missing: a step whose outputs are not all there,
    told apart by Snakemake's markers, the step's log and its checkpoint."""
    try:
        logs = {e.name: e for e in os.scandir(d / "logs")}
    except (FileNotFoundError, NotADirectoryError):
        logs = {}
    log = logs.get(f"{step}.log")
    changed = log.stat().st_mtime if log is not None else None
    if step == "train" and CHECKPOINT in names:
        ckpt_time = os.stat(d / CHECKPOINT).st_mtime
        changed = ckpt_time if changed is None else max(changed, ckpt_time)
    fresh = changed is not None and now - changed < stale_seconds
    line = last_line(d / "logs" / f"{step}.log") if log is not None else ""
    started = (None if incomplete is None
               else any(f"{cell.dir}/{n}" in incomplete for n in outputs))
    if started or (started is None and fresh):
        if not fresh and log is not None:
            return CellStatus(cell, "stalled", step,
                              f"no progress for {now - changed:.0f} s: killed? last: {line}")
        return CellStatus(cell, "running", step, line if log is not None else "no log yet")
    if log is not None:
        if "interrupted" in line:
            return CellStatus(cell, "interrupted", step, line)
        return CellStatus(cell, "failed", step, line or f"empty log {d / 'logs' / log.name}")
    if step == "train" and CHECKPOINT in names:
        return CellStatus(cell, "interrupted", step, f"checkpoint {d / CHECKPOINT}, no log")
    return CellStatus(cell, "missing", step, "" if step == "train" else "not started")


def sweep_status(cells: list[Cell], root: str | Path = ".", stale_seconds: float = 600.0,
                 check: bool = False, eq4: dict[Cell, tuple[str, ...]] | None = None
                 ) -> list[CellStatus]:
    """Every cell's status; `eq4`: {cell: its Eq. 4 chains} (a cell is done with their
    records, `sample_<chain>` is its last step)."""
    root = Path(root)
    incomplete = incomplete_outputs(root)
    now = time.time()
    eq4 = eq4 or {}
    return [cell_status(c, root, incomplete, now, stale_seconds, check, eq4.get(c, ()))
            for c in cells]


def summary(statuses: list[CellStatus]) -> str:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    order = [s for s in STATUSES if s in counts] + sorted(set(counts) - set(STATUSES))
    return f"{len(statuses)} cells: " + ", ".join(f"{counts[k]} {k}" for k in order)


def set_aside(statuses: list[CellStatus]) -> list[Path]:
    """Rename the truncated/unreadable files that `check` found to <file>.bad, so that no step
    reads them; `snakemake --forcerun FILE...` then redoes them and what depends on them."""
    moved = []
    for s in statuses:
        if s.bad_file:
            path = Path(s.bad_file)
            if path.exists():
                aside = path.with_name(path.name + ".bad")
                os.replace(path, aside)
                moved.append(aside)
    return moved
