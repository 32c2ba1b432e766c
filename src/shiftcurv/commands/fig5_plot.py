"""Draw the Fig. 5 figures from results/fig5.nc only: fig5.png (final train and test loss vs T
coloured by B, mean ± sd over seeds; the shuffle and sample-size experiments) and fig5_bn.png (the
stage-2 start: BN statistics learned at the stage-1 batch size, used at small B).

Example:  shiftcurv fig5-plot --fig5 results/fig5.nc --outdir results/figures
"""

from __future__ import annotations

from shiftcurv.commands._common import log, open_netcdf

HELP = "draw the Fig. 5 figures from fig5.nc"


def add_arguments(p):
    p.add_argument("--fig5", default="results/fig5.nc", help="gathered netCDF (%(default)s)")
    p.add_argument("--outdir", default="results/figures", help="where PNGs go (%(default)s)")


def run(args) -> int:
    from shiftcurv.plots.fig5 import plot_all

    ds = open_netcdf(args.fig5, "Fig. 5 dataset", "fig5-gather")
    for p in plot_all(ds, args.outdir):
        log(f"wrote {p}")
    return 0
