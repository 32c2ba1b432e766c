"""Dinh et al. (2017)'s reparametrization θ ↦ Aθ of a ReLU network (paper Appendix C).

A scales one layer's weight and bias by α > 0 and the next layer's weight by 1/α. Across
positively homogeneous modules (ReLU: relu(αz) = α relu(z)) the network's function is unchanged
for every θ, so

    U(Aθ) = U(θ),   ∇U(Aθ) = A⁻¹∇U(θ),   ∇²U(Aθ) = A⁻¹ ∇²U(θ) A⁻¹,

and with the shift mapped the same way (s ↦ As) the shift-curvature is invariant,
(As)ᵀ ∇²U(Aθ) (As) = sᵀ ∇²U(θ) s, while raw Hessian eigenvalues (sharpness) change. The L2
term (α/2)‖θ‖² is not invariant. `alpha_scale` applies A to a model or a flat θ,
`alpha_scale_diagonal` gives A's diagonal.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from shiftcurv import ShiftcurvError
from shiftcurv.landscape.objective import Objective

_HOMOGENEOUS = (torch.nn.ReLU, torch.nn.LeakyReLU, torch.nn.Identity, torch.nn.Flatten,
                torch.nn.Unflatten, torch.nn.Dropout, torch.nn.MaxPool1d, torch.nn.MaxPool2d)


def _layer_names(model: torch.nn.Module, layer_pair: Sequence) -> tuple[str, str]:
    names = [str(n) for n in layer_pair]
    if len(names) != 2:
        raise ShiftcurvError(f"layer_pair must name two layers, got {layer_pair!r}")
    modules = dict(model.named_modules())
    for n in names:
        m = modules.get(n)
        if m is None or not hasattr(m, "weight") or not isinstance(m.weight, torch.Tensor):
            raise ShiftcurvError(f"layer {n!r} is not a layer with weights in this model")
    # ReLU is positively homogeneous: f(αz) = αf(z) for α > 0, which is what makes the scaling
    # invisible. Anything else between the layers (batch norm, tanh, a skip) breaks that.
    children = list(model.named_children())
    keys = [k for k, _ in children]
    if names[0] in keys and names[1] in keys:
        i, j = keys.index(names[0]), keys.index(names[1])
        between = [m for _, m in children[i + 1:j]]
        if j <= i or not all(isinstance(m, _HOMOGENEOUS) for m in between):
            raise ShiftcurvError(
                f"layers {names[0]!r} → {names[1]!r}: α-scaling leaves the function unchanged only "
                "across positively homogeneous modules (ReLU, pooling, flatten); found "
                + ", ".join(type(m).__name__ for m in between))
    else:
        raise ShiftcurvError("alpha_scale needs the two layers as direct children of the model "
                             f"(e.g. indices of an nn.Sequential), got {names!r}")
    return names[0], names[1]


def alpha_scale_diagonal(objective: Objective, layer_pair: Sequence,
                         alpha: float) -> torch.Tensor:
    """The diagonal of A in θ ↦ Aθ: α on layer_pair[0]'s weight and bias, 1/α on layer_pair[1]'s
    weight, 1 elsewhere (flat, in the objective's parameter order).

    Linear(2, 2) → ReLU → Linear(2, 1), α = 2: the first layer's 4 weights and 2 biases × 2, the
    second's 2 weights × ½, its bias × 1; the network computes the same function:

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    >>> obj = Objective(net, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    >>> alpha_scale_diagonal(obj, (0, 2), 2.0).tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.5, 0.5, 1.0]
    >>> x = torch.randn(5, 2)
    >>> torch.allclose(alpha_scale(net, (0, 2), 2.0)(x), net(x))
    True
    """
    if not alpha > 0:
        raise ShiftcurvError(f"alpha must be positive, got {alpha}")
    first, second = _layer_names(objective.model, layer_pair)
    parts = []
    for name, numel in zip(objective.names, objective.numels, strict=True):
        layer, _, kind = name.rpartition(".")
        f = 1.0
        if layer == first and kind in ("weight", "bias"):
            f = alpha
        elif layer == second and kind == "weight":
            f = 1.0 / alpha
        parts.append(torch.full((numel,), f, dtype=objective.dtype, device=objective.device))
    return torch.cat(parts)


def alpha_scale(model_or_theta, layer_pair: Sequence, alpha: float, *,
                objective: Objective | None = None):
    """Dinh et al. (2017)'s reparametrization: scale layer_pair[0]'s weights and bias by α > 0 and
    layer_pair[1]'s weights by 1/α (layers named as in `model.named_modules()`, e.g. (1, 3) for
    the first two Linear layers of `models.mlp`). Across a ReLU the network's function is
    unchanged, for every θ: U(Aθ) = U(θ), so ∇U(Aθ) = A⁻¹∇U(θ) and ∇²U(Aθ) = A⁻¹∇²U(θ)A⁻¹ and,
    with the shift mapped the same way (s ↦ As), (As)ᵀ∇²U(Aθ)(As) = sᵀ∇²U(θ)s exactly, while
    raw eigenvalues change (paper Appendix C). The L2 term α‖θ‖²/2 is not invariant.

    A module: returns a rescaled deep copy. A flat θ: returns Aθ (pass `objective` for the
    layout)."""
    if isinstance(model_or_theta, torch.nn.Module):
        model = copy.deepcopy(model_or_theta)
        first, second = _layer_names(model, layer_pair)
        if not alpha > 0:
            raise ShiftcurvError(f"alpha must be positive, got {alpha}")
        modules = dict(model.named_modules())
        with torch.no_grad():
            modules[first].weight.mul_(alpha)
            if getattr(modules[first], "bias", None) is not None:
                modules[first].bias.mul_(alpha)
            modules[second].weight.mul_(1.0 / alpha)  # as alpha_scale_diagonal, bit for bit
        return model
    if objective is None:
        raise ShiftcurvError("alpha_scale of a flat θ needs the objective (for its layout)")
    return alpha_scale_diagonal(objective, layer_pair, alpha) * model_or_theta.to(objective.dtype)

