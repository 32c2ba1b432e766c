"""Grouped kernels for plain MLPs: K cells' Flatten / Linear / ReLU stacks as batched matmuls.

For an `nn.Sequential` of exactly these layers (the registry's `mlp` without batch norm),
`losses_fn` gives each cell's minibatch loss and logits from the stacked weights with one
`baddbmm` per layer, no vmap. Measured on the default MLP (40-100-100-10, B = 100, one thread,
2026-12-02, benchmarks/bench_packing.py's setting): 0.42 / 0.28 / 0.21 ms per cell and step at
K = 1 / 3 / 12, against 2.0 / 0.53 / 0.28 through vmap (its per-call dispatch is ~1.5 ms a step)
and 0.45-0.56 for the unpacked loop; the MLP is compute-bound on a CPU, so the grouped path is
what makes packing pay beyond sharing the start-up. Each cell's slice of a batched matmul is
computed alone (bit for bit the same at K = 1, 3 and 12), so no ghost slot is needed here.
Every other architecture takes the vmap path (`packed_model`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def plan(model: torch.nn.Module) -> list[tuple[str, str | None]] | None:
    """The layers as (kind, name) when `model` is Flatten, then only Linear and ReLU; else None."""
    nn = torch.nn
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        return None
    ops: list[tuple[str, str | None]] = []
    for i, (name, m) in enumerate(model.named_children()):
        if i == 0:
            if not (type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1):
                return None
            ops.append(("flatten", None))
        elif type(m) is nn.Linear:
            ops.append(("linear", name))
        elif type(m) is nn.ReLU:
            ops.append(("relu", None))
        else:
            return None
    return ops


def losses_fn(ops: list[tuple[str, str | None]]):
    """(params, buffers, x (K, B, ...), y (K, B)) -> (per-cell mean cross-entropy (K,),
    logits (K, B, classes)), params being the stacked weights by state-dict name."""

    def losses(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor):
        h = x
        for kind, name in ops:
            if kind == "flatten":
                h = h.flatten(2)
            elif kind == "relu":
                h = torch.relu(h)
            else:
                w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
                h = torch.bmm(h, w.transpose(1, 2)) if b is None else \
                    torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        k, n, c = h.shape
        per_sample = F.cross_entropy(h.reshape(k * n, c), y.reshape(k * n), reduction="none")
        return per_sample.view(k, n).mean(1), h

    return losses
