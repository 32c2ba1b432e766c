"""Gather the Fig. 5 runs (two-stage temperature collapse, shuffle and sample-size experiments)
into one netCDF file, results/fig5.nc (layout: docs/fig5.md), and write the numbers that test the
paper's claims (collapse spreads, shuffled-minus-default test loss, sample-size trend) to a JSON
summary and to the dataset's `summary` attribute.

Without --partial a missing or unreadable record is an error naming the file; with --partial the
run is NaN with status "missing".

Example:  shiftcurv fig5-gather --config config.yaml --out results/fig5.nc --partial
"""

from __future__ import annotations

import json
import sys

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import git_revision, log

HELP = "gather the Fig. 5 runs into results/fig5.nc"


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the sweep config (YAML), validated")
    src.add_argument("--fig5-json", help="the resolved `fig5` section as JSON (what Snakemake "
                                         "passes: its change alone reruns the gather)")
    p.add_argument("--out", default="results/fig5.nc", help="netCDF output (%(default)s)")
    p.add_argument("--summary", help="also write the summary numbers here (JSON)")
    p.add_argument("--partial", action="store_true",
                   help="gather whatever runs are done; the rest are NaN with status 'missing'")


def run(args) -> int:
    import yaml

    from shiftcurv.io import read_json, write_json
    from shiftcurv.results.fig5 import build_dataset, summary
    from shiftcurv.results.gather import write_netcdf
    from shiftcurv.sweep import fig5

    if args.config:
        from shiftcurv.config import load_config

        config = load_config(args.config)
    else:
        try:
            config = {"fig5": json.loads(args.fig5_json) or None}
        except json.JSONDecodeError as e:
            raise ShiftcurvError(f"--fig5-json is not valid JSON: {e}") from None
    if fig5.section(config) is None:
        raise ShiftcurvError("the config has no `fig5` section: nothing to gather")
    records = {}
    for path in fig5.record_files(config):
        try:
            records[path] = read_json(path, what="Fig. 5 record")
        except ShiftcurvError:
            if not args.partial:
                raise
            records[path] = None
    ds = build_dataset(config, records, yaml.safe_dump(config, sort_keys=False), git_revision())
    numbers = summary(ds)
    ds.attrs["summary"] = json.dumps(numbers, sort_keys=True)
    write_netcdf(ds, args.out)
    if args.summary:
        write_json(args.summary, numbers)
    done = sum(r is not None for r in records.values())
    log(f"gathered {done}/{len(records)} Fig. 5 runs into {args.out}")
    for key in ("collapse_test", "shuffle_minus_default_test"):
        if key in numbers:
            log(f"{key}: {json.dumps(numbers[key])}")
    print(args.out, file=sys.stdout)
    return 0
