"""Gathered results: every cell's records into one xarray.Dataset, `results/sweep.nc` (`gather`),
and the Fig. 5 records into `results/fig5.nc` (`fig5`). Torch-free: numpy, xarray, netCDF4 and
`shiftcurv.sweep`."""
