"""Filter-normalised loss landscapes around a point θ (Li, Xu, Taylor, Studer & Goldstein 2018).

A random Gaussian direction d is rescaled filter by filter to the norm of the weights it
perturbs, d_f ← d_f/‖d_f‖ · ‖θ_f‖ (a filter: one output unit of a Linear layer, one output
channel of a conv, i.e. a slice along dim 0), so that the plot is unchanged by the per-filter
rescalings that leave a ReLU network's function unchanged (the Dinh et al. 2017 objection to
raw flatness). One-dimensional parameters (biases, batch-norm weights) get d = 0 (Li et al.'s
`ignore='biasbn'`, the default of their plots) or d = θ (`ignore=None`). The loss is the plain
loss of the Objective (no L2), in eval mode. Plain arrays out; plotting is elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch

from shiftcurv import ShiftcurvError


def filter_normalized_direction(objective, theta: torch.Tensor, *, seed: int = 0,
                                ignore: str | None = "biasbn") -> torch.Tensor:
    """A flat random direction, filter-normalised to θ (see module docstring)."""
    if ignore not in ("biasbn", None):
        raise ShiftcurvError(f"ignore must be 'biasbn' or None, got {ignore!r}")
    theta = theta.detach().to(objective.dtype)
    g = torch.Generator().manual_seed(int(seed))
    d = torch.randn(theta.numel(), generator=g, dtype=torch.float64).to(theta)
    for dp, wp in zip(objective.unflatten(d).values(), objective.unflatten(theta).values(),
                      strict=True):
        if dp.dim() <= 1:
            if ignore == "biasbn":
                dp.zero_()
            else:
                dp.copy_(wp)
            continue
        df, wf = dp.reshape(dp.shape[0], -1), wp.reshape(wp.shape[0], -1)
        df.mul_(wf.norm(dim=1, keepdim=True) / (df.norm(dim=1, keepdim=True) + 1e-10))
    return d


def landscape_1d(objective, theta: torch.Tensor, *, direction: torch.Tensor | None = None,
                 span: tuple[float, float] = (-1.0, 1.0), steps: int = 51, seed: int = 0,
                 ignore: str | None = "biasbn") -> dict:
    """U(θ + a·d) for a on a uniform grid over `span` (d: filter-normalised random direction
    unless given). Returns {"alpha", "loss", "accuracy", "direction"} (numpy arrays, d a tensor)."""
    theta = theta.detach().to(objective.dtype)
    d = (filter_normalized_direction(objective, theta, seed=seed, ignore=ignore)
         if direction is None else direction.to(theta))
    alphas = np.linspace(span[0], span[1], int(steps))
    loss, acc = np.empty(len(alphas)), np.empty(len(alphas))
    for i, a in enumerate(alphas):
        loss[i], acc[i] = objective.loss_and_accuracy(theta + float(a) * d)
    return {"alpha": alphas, "loss": loss, "accuracy": acc, "direction": d}


def landscape_2d(objective, theta: torch.Tensor, *,
                 directions: tuple[torch.Tensor, torch.Tensor] | None = None,
                 span: tuple[float, float] = (-1.0, 1.0), steps: int = 21, seed: int = 0,
                 ignore: str | None = "biasbn") -> dict:
    """U(θ + a·d₁ + b·d₂) on a steps×steps grid (d₁, d₂ independent filter-normalised random
    directions, seeds `seed` and `seed + 1`, unless given). loss[i, j] is at (alpha[i], beta[j]).
    Returns {"alpha", "beta", "loss", "accuracy", "directions"}."""
    theta = theta.detach().to(objective.dtype)
    if directions is None:
        directions = tuple(filter_normalized_direction(objective, theta, seed=seed + k,
                                                       ignore=ignore) for k in (0, 1))
    d1, d2 = (d.to(theta) for d in directions)
    grid = np.linspace(span[0], span[1], int(steps))
    loss = np.empty((len(grid), len(grid)))
    acc = np.empty_like(loss)
    for i, a in enumerate(grid):
        for j, b in enumerate(grid):
            loss[i, j], acc[i, j] = objective.loss_and_accuracy(theta + float(a) * d1
                                                                + float(b) * d2)
    return {"alpha": grid, "beta": grid.copy(), "loss": loss, "accuracy": acc,
            "directions": (d1, d2)}
