"""Eq. 4 on networks (paper Section 3): sample SGD's steady state at the cell's own temperature
(`chain`, `sampling`) and measure the covariance-, bias- and shift-curvature terms with their
jackknife standard errors (`statistics`). May import torch, `shiftcurv.sweep.temperature` and
`shiftcurv.train.order` (training's minibatch order, without Lightning)."""
