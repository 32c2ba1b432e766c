"""K networks of one architecture as one vectorized model: stacked weights, a vmapped forward, and
each cell's own plain-SGD step.

`torch.func.stack_module_state` stacks the cells' parameters and buffers along a leading cell
axis; `vmap(functional_call)` runs every cell's minibatch through its own weights in one call per
layer (batched matmuls, grouped convolutions, per-cell batch-norm statistics: the stacked
running-stat buffers are updated in place, per cell); one `autograd.grad` of the summed per-cell
losses gives every cell its own gradient (the cells share no weight, so d(Σ loss_k)/dθ_k is
cell k's gradient, exactly, and a NaN in one cell does not reach another's). The update is
torch.optim.SGD's, per cell: d = g + α·θ; θ ← θ + (−η_k)·d as `addcmul_`, which on CPU gives
the same bits as SGD's `add_(d, alpha=-η)` (measured: `sub_(η·d)` differs in the last bit, and
a last-bit difference grows to O(0.1) weight differences within a few hundred SGD steps).

Measured choices (MNIST-1D, B = 100, 1 thread, shared 2-core machine, 2026-12-02):
- grouped kernels where they apply, vmap everywhere else: the plain MLP and 1-D CNN run
  `packed_grouped` (batched matmuls and grouped convolutions called directly: MLP 0.19-0.28 ms
  per cell and step against 0.28-2.0 through vmap, whose dispatch costs ~1.5 ms a step; CNN
  0.56-0.80 against 0.78-1.13); every other net (batch norm, VGG/ResNet) runs vmap over
  `functional_call`, one code path for all of them.
- `autograd.grad` on stacked leaves rather than `vmap(grad(...))`: 6.3 vs 9.9 ms per step (MLP),
  9.7 vs 9.4 (CNN), 17.3 vs 19.7 (CNN with BN).
- a stack is never narrower than 2 (`MIN_WIDTH`): with one cell, vmap's convolution rule runs
  an ordinary convolution (groups = 1) whose weight gradient differs in the last bits from the
  grouped kernel that runs for 2 or more cells (measured on the 1-D CNN: up to 3e-9 after one
  step; 2, 3 and 12 cells agree bit for bit). A lone cell therefore runs beside a ghost copy of
  itself whose results are dropped, so a cell's numbers never depend on how many pack-mates are
  still training (the grouped path does the same for its convolutions). On the MLP one and many
  agree bit for bit either way, and a lone MLP cell runs alone.
- batch norm on per-cell inputs without a spatial axis ((B, C): the MLP's and the VGG heads'
  BatchNorm1d) runs `row_batch_norm`, not vmap's rule: that rule folds the cells into the
  channel axis and CPU's batch-norm kernel then vectorizes across channels, so a cell's
  statistics changed in the last bits with the number of cells beside it (measured: C = 6 and
  100, 2 vs 3 vs 5 cells). With a spatial axis ((B, C, L), L >= 2: the CNNs) the kernel reduces
  each channel alone and vmap's rule is width-independent (measured), so it is kept.
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from shiftcurv.train import packed_grouped

MIN_WIDTH = 2  # see the module docstring: the ghost copy that keeps kernels width-independent


def row_batch_norm(self, x: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm of one cell's (B, C) input (or (B, C, 1)) as explicit reductions
    over each channel's contiguous row, so that the numbers do not depend on how many cells are
    vmapped beside it (module docstring); otherwise the module's own forward. Same statistics
    and running-stat update as torch's (biased variance to normalise, unbiased to track)."""
    if not (self.training and self.track_running_stats and self.momentum is not None) or \
            x[0, 0].numel() != 1:
        return type(self).forward(self, x)
    shape = x.shape
    x = x.reshape(shape[0], shape[1])
    n = x.shape[0]
    rows = x.t().contiguous()  # (C, B): one contiguous row per channel
    mean, var = rows.mean(1), rows.var(1, correction=0)
    y = (x - mean) * torch.rsqrt(var + self.eps)
    if self.affine:
        y = y * self.weight + self.bias
    with torch.no_grad():
        self.num_batches_tracked.add_(1)
        m = self.momentum
        self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
    return y.reshape(shape)


class StackedCells:
    """The weights of `models` (one architecture) stacked on `device`; `step` runs one SGD step
    of every cell on its own minibatch. `write_back` copies the weights into the models."""

    def __init__(self, models: list[torch.nn.Module], device: torch.device | str):
        if not models:
            raise ValueError("no cells to stack")
        self.models = list(models)
        self.width = len(models)
        grouped = packed_grouped.plan(self.models[0])
        min_width = 1 if grouped and not packed_grouped.needs_ghost(grouped) else MIN_WIDTH
        slots = self.models + [self.models[0]] * max(0, min_width - self.width)
        params, buffers = stack_module_state(slots)  # copies, detached
        self.params = {k: v.to(device).requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.slots = len(slots)
        self.base = copy.deepcopy(self.models[0]).to("meta")  # structure only, no storage
        self.base.train()
        for m in self.base.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.forward = types.MethodType(row_batch_norm, m)

        def loss_of(p, b, xb, yb):
            out = functional_call(self.base, (p, b), (xb,))
            return F.cross_entropy(out, yb), out

        self._losses = packed_grouped.losses_fn(grouped) if grouped else vmap(loss_of)

    def _slot_view(self, values: list[float], like: torch.Tensor) -> torch.Tensor:
        """A per-slot scalar as a (slots, 1, ..., 1) tensor; ghost slots copy cell 0's value."""
        values = list(values) + [values[0]] * (self.slots - len(values))
        t = torch.tensor(values, dtype=like.dtype, device=like.device)
        return t.view(-1, *([1] * (like.dim() - 1)))

    def step(self, x: torch.Tensor, y: torch.Tensor, lrs: list[float], l2: float):
        """One SGD step: x (cells, B, ...) and y (cells, B) are each cell's minibatch, `lrs` each
        cell's learning rate. Returns the detached per-cell losses (cells,) and logits
        (cells, B, classes)."""
        pad = self.slots - self.width
        if pad:
            x = torch.cat([x, x[:1].expand(pad, *x.shape[1:])])
            y = torch.cat([y, y[:1].expand(pad, *y.shape[1:])])
        losses, logits = self._losses(self.params, self.buffers, x, y)
        leaves = list(self.params.values())
        grads = torch.autograd.grad(losses.sum(), leaves)
        with torch.no_grad():
            neg_lr = None
            for p, g in zip(leaves, grads, strict=True):
                if neg_lr is None or neg_lr.dim() != p.dim():
                    neg_lr = self._slot_view([-lr for lr in lrs], p)
                d = g.add(p, alpha=l2)  # torch.optim.SGD's weight decay
                p.addcmul_(neg_lr, d)  # = p.add_(d, alpha=-lr), per cell (module docstring)
        return losses.detach()[: self.width], logits.detach()[: self.width]

    def finite(self) -> list[bool]:
        """Per cell: are all its weights finite?"""
        ok = torch.ones(self.slots, dtype=torch.bool, device=next(iter(self.params.values()))
                        .device)
        for p in self.params.values():
            ok &= torch.isfinite(p.detach()).reshape(self.slots, -1).all(1)
        return [bool(v) for v in ok[: self.width].cpu()]

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy every cell's weights and buffers (BN statistics) into its model."""
        for k, model in enumerate(self.models):
            for name, t in model.named_parameters():
                t.copy_(self.params[name][k])
            for name, t in model.named_buffers():
                t.copy_(self.buffers[name][k])
