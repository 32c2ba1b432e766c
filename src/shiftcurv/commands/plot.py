"""Draw the paper's figures from the gathered dataset (results/sweep.nc) only.

Example:  shiftcurv plot --sweep results/sweep.nc --outdir results/figures
"""

from __future__ import annotations

from shiftcurv.commands._common import log, open_netcdf

HELP = "draw Fig. 1 and Fig. 2/3 from sweep.nc"


def add_arguments(p):
    p.add_argument("--sweep", default="results/sweep.nc", help="gathered netCDF (%(default)s)")
    p.add_argument("--outdir", default="results/figures", help="where PNGs go (%(default)s)")


def run(args) -> int:
    from shiftcurv.plots.sweep import plot_all

    ds = open_netcdf(args.sweep, "gathered dataset", "gather")
    for p in plot_all(ds, args.outdir):
        log(f"wrote {p}")
    return 0
