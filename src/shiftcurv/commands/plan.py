"""Print the compute plan of a sweep before (or while) it runs: per dataset x arch the cells
total / done / left, the jobs per rule, the SLURM submissions after grouping, and the GPU- and
CPU-hours left, from a cost model calibrated on the benchmark files finished jobs left (see
shiftcurv.sweep.cost). With no finished job it says it is uncalibrated; with some, it reports its
own error on them. Reads only the config and the results directory; fast (10 000 cells < 2 s).

Examples:
  shiftcurv plan                                   # config.yaml, results/ of this directory
  shiftcurv plan --config configs/tiny.yaml --group-components 8
  shiftcurv plan --group-components cell=8 fig5_stage2=2   # as in the profile's group-components
  shiftcurv plan --summary                         # one line (the workflow prints it at start)
  shiftcurv plan --json
"""

from __future__ import annotations

import json
import os
import sys

from shiftcurv import ShiftcurvError

HELP = "how many jobs and GPU/CPU-hours a sweep has left (cost model from benchmarks)"


def add_arguments(p):
    p.add_argument("--config", default=None,
                   help="the sweep config (default: config.yaml in --directory)")
    p.add_argument("-d", "--directory", default=".",
                   help="the sweep's working directory, holding results/ (default .)")
    p.add_argument("--group-components", nargs="+", default=[], metavar="[GROUP=]K",
                   help="runs per SLURM submission, as snakemake --group-components: K or "
                        "cell=K for the cells (default 1), fig5_stage1=K, fig5_stage2=K, "
                        "fig5_shift=K for Fig. 5 (default: what fits in a day at "
                        "fig5.runtime, as profiles/slurm sets)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--summary", action="store_true", help="print one line")
    out.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args) -> int:
    from shiftcurv.config import load_config
    from shiftcurv.sweep import capped_lines, capped_temperatures, cost

    groups = parse_group_components(args.group_components)
    if not os.path.isdir(args.directory):
        raise ShiftcurvError(f"directory not found: {args.directory}")
    config = load_config(args.config or os.path.join(args.directory, "config.yaml"))
    cell = groups.pop("cell", 1)
    p = cost.plan(config, args.directory, cell, groups)
    capped = capped_temperatures(config)
    if args.json:
        print(json.dumps(p.as_dict() | {"capped_temperatures": {
            t: {"epochs": run, "epochs_budget": want} for t, (run, want) in capped.items()}},
            indent=1))
        return 0
    for line in capped_lines(config):  # a capped E*T budget is never silent
        print(line, file=sys.stderr)
    print(cost.summary_line(p) if args.summary else cost.format_plan(p))
    return 0


def parse_group_components(items: list[str]) -> dict[str, int]:
    """{group: K} from `K` (the cells) or `GROUP=K` items; groups: cell and the Fig. 5 ones."""
    from shiftcurv.sweep.cost import FIG5_RULES

    out = {}
    for item in items:
        group, _, k = item.rpartition("=")
        group = group or "cell"
        if group not in ("cell", *FIG5_RULES):
            raise ShiftcurvError(f"--group-components: unknown group {group!r} (known: cell, "
                                 f"{', '.join(FIG5_RULES)})")
        try:
            out[group] = int(k)
        except ValueError:
            raise ShiftcurvError(f"--group-components: {item!r} is not [GROUP=]K") from None
        if out[group] < 1:
            raise ShiftcurvError(f"--group-components must be >= 1, got {item}")
    return out
