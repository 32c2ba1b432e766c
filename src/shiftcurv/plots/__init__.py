"""Figures that read only the gathered netCDF files: the paper's Fig. 1-3 and the Hessian measures
(`sweep`), Fig. 5 (`fig5`), the synthetic basins (`synthetic`). Torch-free; matplotlib and
seaborn are imported inside the drawing functions, so `figure_names` is cheap at parse time."""
