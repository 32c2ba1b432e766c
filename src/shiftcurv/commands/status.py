"""Print where every cell of the sweep stands: done, diverged, running, stalled, interrupted,
failed (with the failing step's last log line) or missing, and a summary line with the counts.

Reads only the results directory (one listing per cell, a second one and a log tail only for
unfinished cells) and Snakemake's started-job markers in .snakemake/incomplete, so it is fast
for 10 000 cells and safe to run while a sweep runs. --check also reads every result file whole
(JSON parses, safetensors as long as its header says) and reports the truncated or unreadable
ones; --set-aside renames those to <file>.bad so that nothing reads them, and the command to
redo them is printed (`snakemake ... --forcerun FILE...`: the steps that make them, and all that
depends on them). Exit status: 0, or 1 when --check found damaged files.

Example:  shiftcurv status --config config.yaml --problems
"""

from __future__ import annotations

import shlex
import sys

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import add_config_arguments, load_config_arguments

HELP = "per-cell status of the sweep (done/running/failed/diverged/missing)"


def add_arguments(p):
    add_config_arguments(p)
    p.add_argument("-d", "--directory", default=".",
                   help="the workflow directory holding results/ (default: .)")
    p.add_argument("--problems", action="store_true",
                   help="list only cells that are not done (the summary still counts all)")
    p.add_argument("--only", metavar="STATUS[,STATUS]",
                   help="list only cells with these statuses, e.g. failed,stalled")
    p.add_argument("--stale-seconds", type=float, default=600.0,
                   help="a started step whose log and checkpoint have not changed for this long "
                        "is reported stalled, not running (default %(default)g)")
    p.add_argument("--check", action="store_true",
                   help="read every result file whole and report truncated/unreadable ones")
    p.add_argument("--set-aside", action="store_true",
                   help="with --check: rename damaged files to <file>.bad (then rerun "
                        "snakemake with the --forcerun FILE... printed)")


def run(args) -> int:
    from shiftcurv.sweep import cells, eq4_cells, eq4_chains
    from shiftcurv.sweep.status import STATUSES, set_aside, summary, sweep_status

    if args.set_aside and not args.check:
        raise ShiftcurvError("--set-aside needs --check")
    config = load_config_arguments(args)
    only = None
    if args.only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = only - set(STATUSES)
        if unknown:
            raise ShiftcurvError(f"--only: unknown status {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(STATUSES)})")
    chains = tuple(eq4_chains(config))
    statuses = sweep_status(cells(config), args.directory, args.stale_seconds, args.check,
                            eq4={c: chains for c in eq4_cells(config)})
    out = sys.stdout
    rows = [s for s in statuses if (only is None or s.status in only)
            and not (args.problems and s.status == "done")]
    if rows:
        out.write("dataset\tarch\ttemperature\tbatch_size\tseed\tstatus\tstep\tdetail\n")
        out.writelines(f"{s.cell.dataset}\t{s.cell.arch}\t{s.cell.temperature}\t"
                       f"{s.cell.batch_size}\t{s.cell.seed}\t{s.status}\t{s.step}\t{s.detail}\n"
                       for s in rows)
    out.write(summary(statuses) + "\n")
    damaged = [s for s in statuses if s.bad_file]
    if args.set_aside:
        for path in set_aside(damaged):
            out.write(f"set aside {path}\n")
    if damaged:
        # Snakemake does not remake a missing intermediate file whose downstream outputs are up
        # to date: --forcerun FILE redoes the step that makes it and everything downstream
        files = " ".join(shlex.quote(s.bad_file) for s in damaged)
        out.write(f"{len(damaged)} damaged result file(s): redo them (and what depends on them) "
                  f"by rerunning your snakemake command with --forcerun {files}\n")
    return 1 if damaged else 0
