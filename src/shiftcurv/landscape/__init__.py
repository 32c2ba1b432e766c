"""The loss landscape around the minima SGD finds, the paper's science as plain functions:
`objective` (U_α(θ) over a dataset, the one Objective everything here uses), `minima` (gradient
flow and the paper's protocol), `line` (measures along θ_tr + u·s, Eq. 3, App. F), `curvature`
(Hessian operator, Lanczos, trace estimators, BN statistics, reparametrization, measure_point),
`sharpness` (ε-sharpness, non-uniformity, gradient noise) and `filter_normalised` (Li et al.'s
landscapes). May import torch, numpy, scipy; never the sweep, config or plots."""
