"""Draw the paper's figures from the gathered dataset (results/sweep.nc) only.

Example:  shiftcurv plot --sweep results/sweep.nc --outdir results/figures
"""

from __future__ import annotations

from pathlib import Path

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import log

HELP = "draw Fig. 1 and Fig. 2/3 from sweep.nc"


def add_arguments(p):
    p.add_argument("--sweep", default="results/sweep.nc", help="gathered netCDF (%(default)s)")
    p.add_argument("--outdir", default="results/figures", help="where PNGs go (%(default)s)")


def run(args) -> int:
    import xarray as xr

    from shiftcurv.plots import plot_all

    path = Path(args.sweep)
    if not path.exists():
        raise ShiftcurvError(f"gathered dataset not found: {path} (run `shiftcurv gather`)")
    try:
        ds = xr.open_dataset(path, engine="netcdf4").load()
    except (OSError, ValueError) as e:
        raise ShiftcurvError(f"gathered dataset is truncated or unreadable: {path} ({e})") from None
    for p in plot_all(ds, args.outdir):
        log(f"wrote {p}")
    return 0
