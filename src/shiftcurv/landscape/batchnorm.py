"""Batch-norm running statistics recomputed at the weights measured.

Curvature, sharpness and the line measures evaluate the network in eval mode, where each
batch-norm layer normalises with its running statistics, so U is a function of θ alone. After
training these are SGD's exponential averages over past weights; `recompute_bn_stats` replaces
them by the statistics of the data at the current weights, for each BN input z_i (i = 1…n):

    running_mean = (1/n) Σ_i z_i,     running_var = (1/(n−1)) Σ_i (z_i − running_mean)².

The pipeline does not call it (docs/measures.md: θ_tr and θ_test keep θ_SGD's statistics so that
both are minima of one function); it is there for one's own analyses.
"""

from __future__ import annotations

import torch


def recompute_bn_stats(model: torch.nn.Module, x: torch.Tensor,
                       batch_size: int | None = None) -> torch.nn.Module:
    """Recompute every batch-norm layer's running statistics at the model's current weights, in
    place, and return the model (in the mode it was in).

    Why: the running statistics left by training are an exponential average over past weights,
    not the statistics at the point measured; curvature is measured in eval mode (fixed
    statistics, so U is a function of θ alone and `torch.func` applies), and these may be wanted
    as the statistics of θ itself. The sweep does not call it (docs/measures.md: θ_tr and θ_test
    keep θ_SGD's statistics so that both are minima of one function). How: reset,
    momentum=None (PyTorch's cumulative average of the batch statistics), one pass over x in
    train mode under no_grad, momentum restored. With batch_size=None the pass is one batch, so
    running_mean is the exact data mean and running_var the exact (unbiased) data variance of
    each BN input; with batches, the averages of the per-batch statistics.

    One batch: mean (1 + 2 + 6)/3 = 3, unbiased variance (4 + 1 + 9)/2 = 7.

    >>> bn = torch.nn.BatchNorm1d(1)
    >>> _ = recompute_bn_stats(bn, torch.tensor([[1.0], [2.0], [6.0]]))
    >>> bn.running_mean.tolist(), bn.running_var.tolist(), bn.momentum, bn.training
    ([3.0], [7.0], 0.1, True)
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    was_training = model.training
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        p = next(model.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        step = len(x) if batch_size is None else int(batch_size)
        with torch.no_grad():
            for i in range(0, len(x), step):
                model(x[i:i + step])
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)
    return model

