"""The loss landscape around the minima SGD finds, the paper's science as plain functions:

- `objective`: U_α(θ) over a dataset, the one Objective everything here uses (full-data value,
  gradient and HVP; the loss of a chunk or a sample as functions of flat θ; `in_dtype` views)
- `minima`: gradient flow and the paper's protocol, from θ_SGD to θ_tr and θ_test
- `line`: measures along θ_tr + u·s (Eq. 3, App. F); numpy only
- `hessian`: the Hessian operator H = ∇²U_α(θ) (HessianOperator and its HVP backends, `hvp`,
  `directional_curvature`)
- `eigen`: extreme eigenvalues by Lanczos or ARPACK (lanczos, eigsh, lambda_max, lambda_min)
- `trace`: tr H by Hutchinson and Hutch++
- `batchnorm`: batch-norm running statistics recomputed at θ
- `reparametrization`: Dinh et al.'s θ ↦ Aθ (alpha_scale; App. C)
- `sharpness`: ε-sharpness, non-uniformity and linear stability, gradient noise, coherence
- `measures`: measure_point, the named curvature and sharpness measures at a point
- `filter_normalised`: Li et al.'s filter-normalised landscapes

Imports run one way: objective ← hessian ← eigen ← {minima, sharpness} ← measures (trace,
batchnorm, reparametrization and line stand alone or on objective). May import torch, numpy,
scipy and `shiftcurv.config` (the measures' names and default options); never the sweep or
plots."""
