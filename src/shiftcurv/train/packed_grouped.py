"""Grouped kernels for the plain small nets: K cells' Flatten / Unflatten / Conv1d / Linear /
ReLU stacks as batched matmuls and grouped convolutions, without vmap.

For an `nn.Sequential` of only these layers (the registry's `mlp` and `cnn1d` without batch
norm), `losses_fn` gives each cell's minibatch loss and logits from the stacked weights: one
`baddbmm` per Linear (activations cells-first, (K, B, F)) and one grouped `conv1d` per Conv1d
(activations batch-first with the cells folded into the channels, (B, K·C, L), groups = K; the
bias added after the convolution, and the input made contiguous: with the bias fused, or a
strided input, the grouped kernel's results changed in the last bits with K; measured).

Measured (MNIST-1D, B = 100, one thread, 2026-12-02), per cell and SGD step:
- MLP 40-100-100-10: 0.42 / 0.28 / 0.21 ms at K = 1 / 3 / 12, against 2.0 / 0.53 / 0.28
  through vmap (its per-call dispatch is ~1.5 ms a step) and 0.45-0.56 unpacked: the MLP is
  compute-bound on a CPU, so the lean path is what makes packing pay beyond the start-up;
- 1-D CNN 16-16-16: 0.75-0.80 / 0.56 / 0.58-0.62 ms at K = 3 / 6 / 12, against 1.13 / 0.85 /
  0.78 through vmap and 1.4 unpacked (the convolutions are 64 % of it; as unfold + batched
  matmul instead: 0.89 / 1.06 / 0.86, dropped).
Each cell's slice of a batched matmul is computed alone (the same bits at K = 1, 3 and 12). A
grouped convolution with one group is the plain kernel, whose weight gradient differs in the last
bits from the grouped one: nets with a convolution keep a ghost slot (`needs_ghost`, see
`packed_model`). Every other architecture (batch norm, 2-D convolutions, residual blocks) takes
the vmap path of `packed_model`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def plan(model: torch.nn.Module) -> list[tuple[str, str, torch.nn.Module]] | None:
    """The layers as (kind, name, module) when `model` is a Sequential of the supported layers
    (the first a Flatten or Unflatten of dim 1), else None."""
    nn = torch.nn
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        return None
    ops = []
    for i, (name, m) in enumerate(model.named_children()):
        if type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            ops.append(("flatten", name, m))
        elif type(m) is nn.Unflatten and m.dim == 1 and i == 0:
            ops.append(("unflatten", name, m))
        elif type(m) is nn.Linear and i > 0:
            ops.append(("linear", name, m))
        elif type(m) is nn.Conv1d and i > 0 and m.groups == 1 and m.padding_mode == "zeros" \
                and not isinstance(m.padding, str):
            ops.append(("conv1d", name, m))
        elif type(m) is nn.ReLU and i > 0:
            ops.append(("relu", name, m))
        else:
            return None
    if ops[0][0] not in ("flatten", "unflatten"):
        return None
    return ops


def needs_ghost(ops) -> bool:
    """A convolution with one group is not the grouped kernel: keep at least two slots."""
    return any(kind == "conv1d" for kind, _, _ in ops)


def losses_fn(ops):
    """(params, buffers, x (K, B, ...), y (K, B)) -> (per-cell mean cross-entropy (K,),
    logits (K, B, classes)), params being the stacked weights by state-dict name."""

    def losses(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor):
        k, n = y.shape
        h, folded = x, False  # folded: (B, K·C, L) for the convolutions
        for kind, name, m in ops:
            if kind == "flatten":
                h = h.reshape(n, k, -1).transpose(0, 1) if folded else h.flatten(2)
                folded = False
            elif kind == "unflatten":
                h = h.unflatten(2, m.unflattened_size)
            elif kind == "relu":
                h = torch.relu(h)
            elif kind == "linear":
                w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
                h = torch.bmm(h, w.transpose(1, 2)) if b is None else \
                    torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            else:  # conv1d, groups = cells
                if not folded:
                    h = h.transpose(0, 1).reshape(n, -1, h.shape[-1])
                    folded = True
                w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
                h = F.conv1d(h.contiguous(), w.reshape(-1, *w.shape[2:]), None, m.stride,
                             m.padding, m.dilation, groups=k)
                if b is not None:
                    h = h + b.reshape(1, -1, 1)
        if folded:
            raise ValueError("a grouped net must end in Linear layers")
        c = h.shape[-1]
        per_sample = F.cross_entropy(h.reshape(k * n, c), y.reshape(k * n), reduction="none")
        return per_sample.view(k, n).mean(1), h

    return losses
