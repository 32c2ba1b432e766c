"""Models: a registry of small networks, each with a `batch_norm` switch.

An architecture is a spec dict from the config, e.g. {"type": "mlp", "widths": [100, 100]}.
Initialisation is PyTorch's default, drawn from the global torch RNG: seed it before `build`.
"""

from __future__ import annotations

from collections.abc import Sequence

from shiftcurv import ShiftcurvError
from shiftcurv.models.vision import resnet10, vgg9, vgg16  # CIFAR-10 nets; torch-free at import


def mlp(in_shape: Sequence[int], n_classes: int, widths: Sequence[int] = (100, 100),
        batch_norm: bool = False):
    """Fully connected ReLU network: in → widths... → n_classes (BN before each ReLU if on)."""
    import torch.nn as nn

    layers: list[nn.Module] = [nn.Flatten()]
    d = 1
    for s in in_shape:
        d *= int(s)
    for w in widths:
        layers.append(nn.Linear(d, int(w)))
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(w)))
        layers.append(nn.ReLU())
        d = int(w)
    layers.append(nn.Linear(d, n_classes))
    return nn.Sequential(*layers)


def cnn1d(in_shape: Sequence[int], n_classes: int, channels: Sequence[int] = (16, 16, 16),
          kernel_size: int = 3, batch_norm: bool = False):
    """1-D conv net for sequences like MNIST-1D: stride-2 conv+ReLU blocks, then a linear head."""
    import torch.nn as nn

    if len(in_shape) != 1:
        raise ShiftcurvError(f"cnn1d needs 1-D inputs, got input shape {tuple(in_shape)}")
    length = int(in_shape[0])
    layers: list[nn.Module] = [nn.Unflatten(1, (1, length))]
    c_in = 1
    for c in channels:
        layers.append(nn.Conv1d(c_in, int(c), kernel_size, stride=2, padding=kernel_size // 2))
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(c)))
        layers.append(nn.ReLU())
        length = (length + 2 * (kernel_size // 2) - kernel_size) // 2 + 1
        c_in = int(c)
    layers += [nn.Flatten(), nn.Linear(c_in * length, n_classes)]
    return nn.Sequential(*layers)


ARCHITECTURES = {"mlp": mlp, "cnn1d": cnn1d, "vgg16": vgg16, "resnet10": resnet10, "vgg9": vgg9}


def known() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def build(spec: dict, in_shape: Sequence[int], n_classes: int):
    """Build the network described by `spec` ({"type": ..., **options})."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in ARCHITECTURES:
        raise ShiftcurvError(f"unknown architecture type {kind!r}; known: {known()}")
    try:
        return ARCHITECTURES[kind](in_shape, n_classes, **spec)
    except TypeError as e:
        raise ShiftcurvError(f"bad options for architecture {kind!r}: {e}") from None


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
