"""The paper's CIFAR-10 networks (VGG16, ResNet10, VGG9), each with a `batch_norm` switch.

Builders have the registry's signature `fn(in_shape, n_classes, **options)` with in_shape
(C, H, W); they are registered in `shiftcurv.models.ARCHITECTURES`. Plain `nn.Sequential` /
`nn.Module`, no dropout, no in-place ops (Hessian-vector products differentiate twice). Convs and
dense layers keep their bias with or without BN, as `mlp` and `cnn1d` do. torch is imported inside
the functions, so this module (and `shiftcurv.models`) imports without torch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from shiftcurv import ShiftcurvError

VGG16_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
               512, 512, 512, "M")
VGG9_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")  # Li et al., loss-landscape


def _image_shape(arch: str, in_shape: Sequence[int], factor: int) -> tuple[int, int, int]:
    """(C, H, W) as ints, with H and W divisible by the net's total downsampling `factor`."""
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != 3 or min(shape) < 1 or shape[1] % factor or shape[2] % factor:
        raise ShiftcurvError(f"{arch} needs image inputs (C, H, W) with H and W divisible by "
                             f"{factor}, got input shape {shape}")
    return shape


def _conv_stack(cfg, c_in: int, batch_norm: bool) -> list:
    """3x3 conv (pad 1) [+ BatchNorm2d] + ReLU per int in cfg, 2x2 max-pool per "M"."""
    import torch.nn as nn

    layers: list[nn.Module] = []
    for x in cfg:
        if x == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(c_in, x, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(x))
        layers.append(nn.ReLU())
        c_in = x
    return layers


def _dense(d_in: int, d_out: int, batch_norm: bool) -> list:
    """Hidden dense layer: Linear [+ BatchNorm1d] + ReLU."""
    import torch.nn as nn

    return [nn.Linear(d_in, d_out), *([nn.BatchNorm1d(d_out)] if batch_norm else []), nn.ReLU()]


def vgg16(in_shape: Sequence[int], n_classes: int, batch_norm: bool = False,
          dense_width: int = 512):
    """VGG16 for CIFAR-10 as in the paper: 13 convs (3x3, pad 1, ReLU; 5 max-pools 2x2), flatten
    (512·H/32·W/32), dense_width → dense_width → n_classes (Liu & Deng 2015's 512-wide dense
    layers, no adaptive pooling, no dropout). BN: BatchNorm2d after every conv and BatchNorm1d
    after the two hidden dense layers, each before its ReLU."""
    import torch.nn as nn

    c, h, w = _image_shape("vgg16", in_shape, 32)
    d = 512 * (h // 32) * (w // 32)
    width = int(dense_width)
    return nn.Sequential(*_conv_stack(VGG16_CONVS, c, batch_norm), nn.Flatten(),
                         *_dense(d, width, batch_norm), *_dense(width, width, batch_norm),
                         nn.Linear(width, n_classes))


def vgg9(in_shape: Sequence[int], n_classes: int, batch_norm: bool = True,
         channels: Sequence[int] = (64, 128, 256), dense_width: int = 256):
    """VGG9 of Li et al.'s loss-landscape code (cifar10/models/vgg.py): 7 convs (3x3, pad 1,
    [BatchNorm2d,] ReLU; 3 max-pools 2x2), flatten (256·H/8·W/8) → 256 [BatchNorm1d] ReLU →
    n_classes. BN on by default: the paper's Fig. 5 uses VGG9 with BN.

    channels: the widths of the three stages (2, 2 and 3 convs; default 64, 128, 256), and
    dense_width the hidden dense layer's (default 256): the defaults are Li et al.'s layout
    (VGG9_CONVS); smaller ones make tiny nets for tests."""
    import torch.nn as nn

    chans = [int(x) for x in channels]
    if len(chans) != 3 or min(chans) < 1 or int(dense_width) < 1:
        raise ShiftcurvError(f"vgg9 needs 3 stage channels >= 1 and dense_width >= 1, got "
                             f"channels {list(channels)}, dense_width {dense_width}")
    c1, c2, c3 = chans
    cfg = (c1, c1, "M", c2, c2, "M", c3, c3, c3, "M")  # the default is VGG9_CONVS
    c, h, w = _image_shape("vgg9", in_shape, 8)
    d = c3 * (h // 8) * (w // 8)
    width = int(dense_width)
    return nn.Sequential(*_conv_stack(cfg, c, batch_norm), nn.Flatten(),
                         *_dense(d, width, batch_norm), nn.Linear(width, n_classes))


@functools.cache
def _classes() -> dict:
    """The torch module classes, defined on first use (so importing needs no torch). Exposed as
    `shiftcurv.models.vision.BasicBlock` / `.ResNet` (module `__getattr__`), so the models
    pickle."""
    import torch.nn as nn

    class BasicBlock(nn.Module):
        """relu(conv3x3-[BN]-relu-conv3x3-[BN] (x) + shortcut(x)); the shortcut is the identity,
        or a 1x1 conv [+BN] with the block's stride when the shape changes."""

        def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool):
            super().__init__()
            norm = nn.BatchNorm2d if batch_norm else (lambda _c: nn.Identity())
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), norm(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), norm(c_out))
            self.shortcut = nn.Identity()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride),
                                              norm(c_out))
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.body(x) + self.shortcut(x))

    class ResNet(nn.Sequential):
        """Stem, residual groups, global average pooling, linear head (an nn.Sequential)."""

    for cls in (BasicBlock, ResNet):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"BasicBlock": BasicBlock, "ResNet": ResNet}


def __getattr__(name: str):
    if name in ("BasicBlock", "ResNet"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resnet10(in_shape: Sequence[int], n_classes: int, batch_norm: bool = False,
             channels: Sequence[int] = (64, 128), blocks_per_group: int = 2):
    """The paper's "Resnet10": Shon's haiku ResNet16 with blocks per group cut from 3 to 2 and
    batch norm removed. The original is not public; this is one reading of it.

    Count the weight layers on the main path: stem conv + 2 convs per basic block + final dense
    (the 1x1 projection shortcuts not counted), i.e. L = 2 + 2·G·b for G groups of b blocks.
    haiku's 4-group layout (64, 128, 256, 512) gives 2 + 8b: 26 for b = 3, 18 for b = 2 (that is
    ResNet18), 10 only for b = 1. Since 3 → 2 blocks per group changes L by 2·G, "16 → 10" needs
    2·G = 6, G = 3, and then L(b=3) = 2 + 18 = 20, not 16: no uniform basic-block layout gives
    both names (bottleneck blocks, L = 2 + 3·G·b, fail the same way). The default here is the
    layout that gives 10 with 2 blocks per group: G = 2 groups (haiku's first two, 64 and 128
    channels), L = 2 + 2·2·2 = 10 (with 3 blocks per group it would be 14). Other readings are
    options: e.g. channels [64, 128, 256, 512] with blocks_per_group 1 is the common ResNet10.

    Layout (CIFAR style, no 7x7 conv or max-pool): stem 3x3 conv (stride 1) to channels[0]
    [+BN] + ReLU; group g has `blocks_per_group` basic blocks with channels[g], the first one of
    every group but the first with stride 2 (1x1 conv projection shortcut where the shape
    changes, as in haiku's use_projection=(False, True, True, True)); global average pooling;
    Linear to n_classes. PyTorch's default init, unchanged: without BN the logits at init on
    unit-variance inputs have std ~0.1 (default, 4 groups ~0.02; the default init shrinks the
    residual branches rather than growing them), so the blocks' last convs need no down-scaling.
    """
    import torch.nn as nn

    chans = [int(c) for c in channels]
    blocks = int(blocks_per_group)
    if not chans or min(chans) < 1 or blocks < 1:
        raise ShiftcurvError(f"resnet10 needs at least one group of channels >= 1 and "
                             f"blocks_per_group >= 1, got channels {list(channels)}, "
                             f"blocks_per_group {blocks_per_group}")
    c, _, _ = _image_shape("resnet10", in_shape, 2 ** (len(chans) - 1))
    BasicBlock, ResNet = _classes()["BasicBlock"], _classes()["ResNet"]
    layers: list[nn.Module] = [nn.Conv2d(c, chans[0], 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(chans[0]))
    layers.append(nn.ReLU())
    c_in = chans[0]
    for g, c_out in enumerate(chans):
        for i in range(blocks):
            layers.append(BasicBlock(c_in, c_out, 2 if (g > 0 and i == 0) else 1, batch_norm))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes)]
    return ResNet(*layers)
