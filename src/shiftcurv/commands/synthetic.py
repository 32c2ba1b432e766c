"""Synthetic 1-D basins (paper Fig. 4 and Fig. 6): exact SGD steady state, approximations, and
a simulation of the SGD diffusion, swept over temperature.

Builds results/synthetic.nc (dims basin_set, temperature, theta, basin, theta_bin) and the
figures synthetic_{basin_set}.png and synthetic_checks.png. --settings is the config's
`synthetic` section (keys in docs/synthetic.md), checked against
workflow/schemas/synthetic.schema.yaml; absent keys take its defaults: the four Appendix G tables
plus one low-barrier example set, 36 temperatures from 1e-3 to 3, a θ grid of 4801 points on
[-3, 3], 3000 walkers.

Example:  shiftcurv synthetic --settings '{"paper_sets": ["fig4_left"], "basin_sets": {}}'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from shiftcurv import ShiftcurvError

HELP = "synthetic basins (Fig. 4/6): steady state, approximations, simulation"


def add_arguments(p):
    p.add_argument("--settings", default="{}", metavar="JSON|@FILE",
                   help="the config's `synthetic` section as JSON, or @path to a JSON/YAML file "
                        "(a whole config with a `synthetic` key also works); default: {}")
    p.add_argument("--out", default="results/synthetic.nc",
                   help="netCDF output (default %(default)s)")
    p.add_argument("--figures", default="results/figures",
                   help="folder for the PNGs (default %(default)s)")
    p.add_argument("--no-figures", action="store_true", help="write the dataset only")
    p.add_argument("--log", metavar="FILE", help="also append progress lines to FILE")


def _settings(text: str) -> dict:
    from shiftcurv.commands._common import parse_settings

    value = parse_settings(text)
    if not isinstance(value, dict):
        raise ShiftcurvError("--settings must be a mapping (the config's synthetic section)")
    if isinstance(value.get("synthetic"), dict):
        value = value["synthetic"]
    return value


def run(args) -> int:
    from shiftcurv.commands._common import git_revision
    from shiftcurv.synthetic.dataset import sweep, write_netcdf
    from shiftcurv.synthetic.settings import figure_names, resolve_settings

    log_file = Path(args.log) if args.log else None

    def progress(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "a") as f:
                f.write(line + "\n")

    settings = _settings(args.settings)
    resolved = resolve_settings(settings)   # the schema's checks and defaults; errors name the key
    t0 = time.time()
    ds = sweep(resolved, progress=progress)
    ds.attrs["git_revision"] = git_revision()
    ds.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_netcdf(ds, args.out)
    for name in ds["basin_set"].values:
        sub = ds.sel(basin_set=name)
        n_sim = int(sub["simulated"].sum())
        progress(f"{name}: optimal T = {float(sub['optimal_temperature']):.3g}, "
                 f"{n_sim} temperature(s) simulated")
    progress(f"wrote {args.out} in {time.time() - t0:.1f} s")
    print(args.out)
    if not args.no_figures:
        from shiftcurv.plots.synthetic import plot_all

        for p in plot_all(args.out, args.figures):
            print(p)
        expected = figure_names(settings, args.figures)
        missing = [p for p in expected if not Path(p).exists()]
        if missing:   # the Snakemake rule lists exactly these
            raise ShiftcurvError(f"figure not written: {missing[0]}")
        progress(f"figures in {args.figures}: {json.dumps([Path(p).name for p in expected])}")
    return 0
