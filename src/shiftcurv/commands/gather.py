"""Gather every cell of the sweep into one netCDF file (xarray.Dataset; schema in README.md).

Reads results/runs/.../measure.json for every cell the config defines. Without --partial, a
missing or unreadable record is an error naming the file; with --partial (to look at a sweep
that is still running), such cells are NaN with status "missing".

Example:  shiftcurv gather --config config.yaml --out results/sweep.nc --partial
"""

from __future__ import annotations

import sys
from pathlib import Path

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import (
    add_config_arguments,
    git_revision,
    load_config_arguments,
    log,
)

HELP = "gather all cells into results/sweep.nc"


def add_arguments(p):
    add_config_arguments(p)
    p.add_argument("--out", default="results/sweep.nc", help="netCDF output (default %(default)s)")
    p.add_argument("--status-tsv", help="also write a per-cell status table here")
    p.add_argument("--partial", action="store_true",
                   help="gather whatever cells are done; the rest are NaN with status 'missing'")


def read_records(cells, partial: bool) -> dict:
    from shiftcurv.io import read_json
    from shiftcurv.sweep import MEASURE_OUT

    records = {}
    for cell in cells:
        path = Path(cell.dir) / MEASURE_OUT
        try:
            records[cell] = read_json(path, what="measure record")
        except ShiftcurvError:
            if not partial:
                raise
            records[cell] = None
    return records


def read_eq4_records(cells, chains, partial: bool) -> dict:
    """{cell: {chain: record or None}} of the Eq. 4 step (config `eq4`)."""
    from shiftcurv.io import read_json
    from shiftcurv.sweep import EQ4_OUT

    out = {}
    for cell in cells:
        out[cell] = {}
        for chain in chains:
            path = Path(cell.dir) / EQ4_OUT.format(chain=chain)
            try:
                out[cell][chain] = read_json(path, what="Eq. 4 record")
            except ShiftcurvError:
                if not partial:
                    raise
                out[cell][chain] = None
    return out


def run(args) -> int:
    import yaml

    from shiftcurv.io import atomic_path
    from shiftcurv.results.gather import build_dataset, write_netcdf
    from shiftcurv.sweep import cells, eq4_cells, eq4_chains

    config = load_config_arguments(args)
    sweep_cells = cells(config)
    records = read_records(sweep_cells, args.partial)
    chains = eq4_chains(config)
    eq4 = read_eq4_records(eq4_cells(config), chains, args.partial) if chains else None
    ds = build_dataset(config, records, yaml.safe_dump(config, sort_keys=False), git_revision(),
                       eq4_records=eq4)
    write_netcdf(ds, args.out)
    counts = {}
    for st in ds["status"].values.ravel():
        counts[st] = counts.get(st, 0) + 1
    log(f"gathered {len(sweep_cells)} cells into {args.out}: "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if args.status_tsv:
        with atomic_path(args.status_tsv) as tmp, open(tmp, "w") as f:
            f.write("dataset\tarch\ttemperature\tbatch_size\tseed\tstatus\n")
            for cell, rec in records.items():
                st = "missing" if rec is None else rec.get("status", "failed")
                f.write(f"{cell.dataset}\t{cell.arch}\t{cell.temperature}\t{cell.batch_size}\t"
                        f"{cell.seed}\t{st}\n")
    print(args.out, file=sys.stdout)
    return 0
