"""Draw the Fig. 5 figures from results/fig5.nc only: fig5.png (final train and test loss vs T
coloured by B, mean ± sd over seeds; the shuffle and sample-size experiments) and fig5_bn.png (the
stage-2 start: BN statistics learned at the stage-1 batch size, used at small B).

Example:  shiftcurv fig5-plot --fig5 results/fig5.nc --outdir results/figures
"""

from __future__ import annotations

from pathlib import Path

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import log

HELP = "draw the Fig. 5 figures from fig5.nc"


def add_arguments(p):
    p.add_argument("--fig5", default="results/fig5.nc", help="gathered netCDF (%(default)s)")
    p.add_argument("--outdir", default="results/figures", help="where PNGs go (%(default)s)")


def run(args) -> int:
    import xarray as xr

    from shiftcurv.fig5_plots import plot_all

    path = Path(args.fig5)
    if not path.exists():
        raise ShiftcurvError(f"Fig. 5 dataset not found: {path} (run `shiftcurv fig5-gather`)")
    try:
        ds = xr.open_dataset(path, engine="netcdf4").load()
    except (OSError, ValueError) as e:
        raise ShiftcurvError(f"Fig. 5 dataset is truncated or unreadable: {path} ({e})") from None
    for p in plot_all(ds, args.outdir):
        log(f"wrote {p}")
    return 0
