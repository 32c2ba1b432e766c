"""Staged outputs: a pack job runs a cell's later steps and a cell's own job takes them over.

A pack job (`shiftcurv train-pack`, docs/packing.md) trains K cells in one process and then runs
each cell's minimum finding, measures and Eq. 4 chains in that same process, so that torch, the
data and the code are loaded once per pack, not once per step. It cannot write the steps' real
outputs: they belong to the cells' own Snakemake jobs (Snakemake deletes a job's outputs before
it runs it, and a finished cell must never be redone because its pack was). So a step run by a
pack writes its outputs under staging names (`theta_train.safetensors` ->
`theta_train.packed.safetensors`) plus a key file, and the cell's own job (`shiftcurv minimize`,
`measure`, `sample`: the same command line as ever) renames them into place, before importing
torch, when the key matches its own.

The key is what the step's result depends on: the command, its arguments (settings, paths;
not --threads) and the content (SHA-256) of its input files. A staged result made from other
settings or other inputs is therefore never taken: the job computes its own (and says why).

A command joins in by naming its file arguments: `INPUTS` and `OUTPUTS` (argparse dests) in its
module. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from shiftcurv.sweep.packs import staged  # the naming, shared with the planner (torch-free)

NOT_KEYED = ("threads", "command", "_module", "checkpoint")  # do not change what a step computes


def key_file(outputs: list[str]) -> Path:
    """Where a staged step keeps its key: next to its first output."""
    first = Path(outputs[0])
    return first.with_name(first.name.rpartition(".")[0] + ".packed.key")


def _paths(args, names) -> list[str]:
    out = []
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            out.extend(value if isinstance(value, list) else [value])
    return out


def outputs_of(args) -> list[str]:
    return _paths(args, getattr(args._module, "OUTPUTS", ()))


def inputs_of(args) -> list[str]:
    return _paths(args, getattr(args._module, "INPUTS", ()))


_SHA256: dict[tuple, str] = {}  # (path, size, mtime_ns) -> digest: a pack keys every step
#                                  of every cell on the same data file (180 MB for CIFAR-10)


def file_sha256(path: str) -> str:
    """SHA-256 of a file's content, computed once per process for an unchanged file."""
    st = os.stat(path)
    memo = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if memo not in _SHA256:
        with open(path, "rb") as f:
            _SHA256[memo] = hashlib.file_digest(f, "sha256").hexdigest()
    return _SHA256[memo]


def step_key(args, read_as: dict[str, str] | None = None) -> str:
    """The key of a step (its command line, as parsed, and its inputs' content). `read_as` maps
    an input path to the file that holds its content now (a pack reads its own staged files)."""
    read_as = read_as or {}
    arguments = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_KEYED}
    content = {p: file_sha256(read_as.get(p, p)) for p in inputs_of(args)}
    text = json.dumps({"command": args.command, "arguments": arguments, "inputs": content},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def staged_key(outputs: list[str]) -> str | None:
    """The key of the staged result of these outputs, None when there is none (complete)."""
    path = key_file(outputs)
    try:
        key = json.loads(path.read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return key if all(os.path.exists(staged(o)) for o in outputs) else None


def write_key(outputs: list[str], key: str) -> None:
    path = key_file(outputs)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "outputs": outputs}) + "\n")
    os.replace(tmp, path)


def discard(outputs: list[str]) -> None:
    """Remove a step's staged result (a failed or foreign one)."""
    key_file(outputs).unlink(missing_ok=True)
    for o in outputs:
        Path(staged(o)).unlink(missing_ok=True)


def adopt(args, log) -> bool:
    """Take over a pack's staged result for this very step (rename into place), or False."""
    outputs = outputs_of(args)
    if not outputs:
        return False
    key = staged_key(outputs)
    if key is None:
        return False
    try:
        mine = step_key(args)
    except OSError as e:  # an input is missing: the command itself says so
        log(f"not adopting the staged {Path(staged(outputs[0])).name}: {e}")
        return False
    if key != mine:
        log(f"not adopting the staged {Path(staged(outputs[0])).name}: made from other "
            f"settings or inputs; computing here")
        discard(outputs)  # no job's command line can take it now
        return False
    for o in outputs:
        os.replace(staged(o), o)
    key_file(outputs).unlink(missing_ok=True)
    log(f"adopted the pack's {', '.join(Path(staged(o)).name for o in outputs)}")
    return True


def steps_problem(steps) -> str | None:
    """What is wrong with a list of steps ([{name, argv}]), None when nothing."""
    if not isinstance(steps, list) or not all(
            isinstance(st, dict) and isinstance(st.get("name"), str) and is_argv(st.get("argv"))
            for st in steps):
        return "must be a list of {name, argv}, argv a non-empty list of strings"
    return None


def is_argv(argv) -> bool:
    return isinstance(argv, list) and bool(argv) and all(isinstance(a, str) for a in argv)


def parse_argv(argv: list[str]):
    """The parsed command line of a step (its module in `_module`)."""
    from shiftcurv.commands._parser import build_parser

    return build_parser(only=argv[0]).parse_args(argv)


def run_staged(argv: list[str], log) -> int | None:
    """Run the step `shiftcurv <argv>` in this process with its outputs staged (for its cell's
    own job to adopt). None when there is nothing to do (its outputs, or a staged result with
    its key, are there); else the step's exit status (0: staged; 75: stopped by a signal, the
    step's own checkpoint is the resume point; 2: it failed, and the cell's own job will run
    it and report why). Inputs that are still staged (a step of this pack made them) are read
    from their staging names."""
    from shiftcurv import ShiftcurvError
    from shiftcurv.train.signals import Abandoned

    args = parse_argv(argv)
    outputs = outputs_of(args)
    if all(os.path.exists(o) for o in outputs):
        return None
    read_as = {p: staged(p) for p in inputs_of(args)
               if not os.path.exists(p) and os.path.exists(staged(p))}
    try:
        key = step_key(args, read_as)
    except OSError as e:
        log(f"{argv[0]} {outputs[0]}: not run here ({e})")
        return 2
    if staged_key(outputs) == key:
        return None
    discard(outputs)
    for name in args._module.INPUTS:  # read this pack's staged inputs where they are
        value = getattr(args, name, None)
        if value is not None:
            setattr(args, name, [read_as.get(v, v) for v in value] if isinstance(value, list)
                    else read_as.get(value, value))
    for name in args._module.OUTPUTS:
        setattr(args, name, staged(getattr(args, name)))
    try:
        rc = int(args._module.run(args) or 0)
    except ShiftcurvError as e:
        log(f"{argv[0]} {outputs[0]}: error: {e} (its own job will run it)")
        rc = 2
    except Abandoned:
        raise  # a second stop signal: the pack stops now
    except Exception as e:  # one cell's failure must not stop its pack-mates' steps
        log(f"{argv[0]} {outputs[0]}: failed: {type(e).__name__}: {e} (its own job will run it)")
        rc = 1
    if rc == 0:
        write_key(outputs, key)
    elif rc != 75:
        discard(outputs)
    return rc


def run_steps(cells: list[dict], stop, threads: int = 1) -> tuple[dict, int]:
    """Each cell's steps (`cell["steps"]`: [{name, argv}]), one cell after the other, in this
    process, staged, with `threads` torch threads. Returns ({cell index: {step name: {rc,
    seconds}}} of the steps run, EXIT_INTERRUPTED when a stop signal came, else 0). A step that
    fails ends its cell's steps here (the later ones need it): the cell's own jobs take over.

    One after the other, not vectorized: a cell's gradient flows take their own adaptive step
    counts and the measures are a few Hessian-vector products; what a separate process per step
    paid, and this saves, is ~1.4 s of imports and set-up per step (minimize and measure spend
    ~0.9-1.1 s computing on the default sweep)."""
    import time

    from shiftcurv.commands._common import log
    from shiftcurv.train.signals import EXIT_INTERRUPTED

    done: dict[int, dict] = {}
    for k, c in enumerate(cells):
        for step in c.get("steps", []):
            if stop.requested:
                return done, EXIT_INTERRUPTED
            t0 = time.perf_counter()
            rc = run_staged([*step["argv"], "--threads", str(threads)], log)
            if rc is None:
                continue
            done.setdefault(k, {})[step["name"]] = {
                "rc": rc, "seconds": round(time.perf_counter() - t0, 3)}
            if rc == EXIT_INTERRUPTED:
                return done, rc
            if rc:
                break  # its later steps need this one: the cell's own jobs take over
    return done, EXIT_INTERRUPTED if stop.requested else 0
