"""Synthetic 1-D basins: the paper's Fig. 4 and Fig. 6 (§3.1, Appendix G.2), with a check.

A basin set is a 1-D train loss built from a Gaussian mixture, and a test loss that is the train
loss shifted by a constant s. The SGD steady state (Eq. 5) is computed exactly on a θ grid, its
basin probabilities and expected train/test losses are integrated, compared with the Gaussian-
mixture (Laplace) approximations of Eq. 6, Eq. 4 and Eq. 8, and with an Euler–Maruyama
simulation of the SGD diffusion (Eq. 11). docs/synthetic.md has the reading and the results.

- `settings`: the config's `synthetic` section, validated against (and defaulted by)
  workflow/schemas/synthetic.schema.yaml; the Appendix G tables; the θ and temperature grids;
  the figure names.
- `basins`: the losses U_tr, U_test (the tables' mixture loss, our reading), the noise D(θ),
  `BasinSet`, and `find_basins` (minima of U_tr and the maxima between them).
- `steady_state`: ρ of Eq. 5 on the grid and its integrals (basin probabilities, expected
  losses); the Laplace approximation (Eq. 6 weights, Eq. 25 covariance, bias) and the expected
  losses of Eq. 4 and Eq. 8.
- `simulation`: the SGD diffusion of Eq. 11 (Euler–Maruyama), its relaxation time and plan.
- `dataset`: one basin set analysed over the temperatures, the sweep over all of them as an
  xarray.Dataset (results/synthetic.nc), and its netCDF writer.

`figure_names` is re-exported: the Snakefile (workflow/rules/synthetic.smk) imports it at parse
time (importing numpy; yaml and jsonschema when called).
"""

from shiftcurv.synthetic.settings import figure_names

__all__ = ["figure_names"]
