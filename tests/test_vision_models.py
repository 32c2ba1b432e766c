"""The CIFAR-10 networks (vgg16, resnet10, vgg9): shapes, exact parameter counts, the BN switch,
one-line shape errors, float64 double-backward HVPs, and registry/config plumbing."""

import copy
import pickle

import pytest
import torch
import torch.nn as nn

from shiftcurv import ShiftcurvError, models
from shiftcurv.config.checks import option_problems
from shiftcurv.models import vision

CIFAR = (3, 32, 32)
ARCHS = ("vgg16", "resnet10", "vgg9")


def conv(c_in, c_out, k=3):  # weights + bias
    return c_in * c_out * k * k + c_out


def dense(d_in, d_out):
    return d_in * d_out + d_out


# VGG16: 13 convs, then 512·1·1 → 512 → 512 → 10.
VGG16_CONVS = (conv(3, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128) + conv(128, 256)
               + 2 * conv(256, 256) + conv(256, 512) + 5 * conv(512, 512))
#   = 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2·590,080 + 1,180,160 + 5·2,359,808
#   = 14,714,688
VGG16 = VGG16_CONVS + dense(512, 512) + dense(512, 512) + dense(512, 10)
#   = 14,714,688 + 262,656 + 262,656 + 5,130 = 15,245,130
# BN: (γ, β) per channel: 2·(64+64+128+128+3·256+6·512) = 2·4,224 = 8,448 (BatchNorm2d)
#     + 2·(512+512) = 2,048 (BatchNorm1d)                                → 10,496
VGG16_BN = VGG16 + 2 * (2 * 64 + 2 * 128 + 3 * 256 + 6 * 512) + 2 * (512 + 512)

# VGG9: 7 convs, then 256·4·4 = 4,096 → 256 → 10.
VGG9 = (conv(3, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128) + conv(128, 256)
        + 2 * conv(256, 256) + dense(256 * 4 * 4, 256) + dense(256, 10))
#   = 1,735,488 + 1,048,832 + 2,570 = 2,786,890
VGG9_BN = VGG9 + 2 * (2 * 64 + 2 * 128 + 3 * 256) + 2 * 256  # + 2,304 + 512 = 2,789,706

# ResNet10 (default: channels (64, 128), 2 blocks per group): stem 3→64; group 1: two blocks
# 64→64 (identity shortcuts); group 2: block 64→128 stride 2 with a 1x1 projection, block
# 128→128; global average pooling; dense 128→10.
RESNET10 = (conv(3, 64)                                                  # 1,792
            + 2 * (conv(64, 64) + conv(64, 64))                          # 147,712
            + conv(64, 128) + conv(128, 128) + conv(64, 128, k=1)        # 229,760
            + 2 * conv(128, 128)                                         # 295,168
            + dense(128, 10))                                            # 1,290
#   = 675,722
# BN: stem 64, group 1: 4·64, group 2: 4·128 + projection 128 → 960 channels, 1,920 params.
RESNET10_BN = RESNET10 + 2 * (64 + 4 * 64 + 4 * 128 + 128)

COUNTS = {("vgg16", False): 15_245_130, ("vgg16", True): 15_255_626,
          ("vgg9", False): 2_786_890, ("vgg9", True): 2_789_706,
          ("resnet10", False): 675_722, ("resnet10", True): 677_642}


def build(arch, batch_norm, dtype=torch.float32, **opts):
    torch.manual_seed(0)
    return models.build({"type": arch, "batch_norm": batch_norm, **opts}, CIFAR, 10).to(dtype)


def norm_layers(model):
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) or "Norm" in type(m).__name__]


def test_hand_counts_agree_with_the_table():
    assert (VGG16, VGG16_BN, VGG9, VGG9_BN, RESNET10, RESNET10_BN) == (
        COUNTS["vgg16", False], COUNTS["vgg16", True], COUNTS["vgg9", False],
        COUNTS["vgg9", True], COUNTS["resnet10", False], COUNTS["resnet10", True])


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_shape_count_and_bn_switch(arch, batch_norm):
    model = build(arch, batch_norm)
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)
    assert models.n_params(model) == COUNTS[arch, batch_norm]
    norms = norm_layers(model)
    if batch_norm:
        assert norms and all(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in norms)
    else:
        assert norms == []
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_bn_placement():
    # one BatchNorm2d per conv on the main path (+ one per projection), one BatchNorm1d per
    # hidden dense layer
    def kinds(model):
        return (sum(isinstance(m, nn.Conv2d) for m in model.modules()),
                sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()),
                sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()))

    assert kinds(build("vgg16", True)) == (13, 13, 2)
    assert kinds(build("vgg9", True)) == (7, 7, 1)
    assert kinds(build("resnet10", True)) == (10, 10, 0)  # 9 main-path convs + 1 projection


def test_resnet10_layout_is_ten_weight_layers():
    model = build("resnet10", False)
    blocks = [m for m in model.modules() if isinstance(m, vision.BasicBlock)]
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    main_convs = 1 + 2 * len(blocks)
    dense_layers = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert (len(blocks), len(projections), main_convs + dense_layers) == (4, 1, 10)


def test_resnet10_logits_are_tame_at_init_without_bn():
    model = build("resnet10", False, channels=[64, 128, 256, 512])
    with torch.no_grad():
        y = model(torch.randn(64, *CIFAR))
    assert torch.isfinite(y).all() and y.std() < 10


@pytest.mark.parametrize("arch,shape", [("vgg16", (3, 48, 40)), ("vgg9", (3, 12, 16)),
                                        ("resnet10", (3, 31, 32)), ("vgg9", (3, 32)),
                                        ("vgg16", (40,))])
def test_bad_input_shape_is_one_line_naming_the_arch(arch, shape):
    with pytest.raises(ShiftcurvError) as e:
        models.build({"type": arch}, shape, 10)
    msg = str(e.value)
    assert msg.startswith(arch + " ") and str(tuple(shape)) in msg and "\n" not in msg


def test_other_sizes_work():
    torch.manual_seed(0)
    assert models.build({"type": "vgg9"}, (1, 16, 24), 3)(torch.randn(2, 1, 16, 24)).shape == (2, 3)
    assert models.build({"type": "vgg16", "dense_width": 64}, (3, 64, 32), 5)(
        torch.randn(2, 3, 64, 32)).shape == (2, 5)
    net = models.build({"type": "resnet10", "channels": [8, 16, 32], "blocks_per_group": 1},
                       (3, 12, 12), 4)
    assert net(torch.randn(2, 3, 12, 12)).shape == (2, 4)
    with pytest.raises(ShiftcurvError, match="^resnet10 .*blocks_per_group 0"):
        models.build({"type": "resnet10", "blocks_per_group": 0}, CIFAR, 10)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_float64_double_backward_hvp(arch, batch_norm):
    model = build(arch, batch_norm, dtype=torch.float64)
    params = [p for p in model.parameters()]
    x = torch.randn(2, *CIFAR, dtype=torch.float64)
    y = torch.tensor([1, 7])
    loss = nn.functional.cross_entropy(model(x), y)
    assert loss.dtype == torch.float64
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(p) for p in params]
    hv = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v, strict=True)), params)
    assert all(h.dtype == torch.float64 and h.shape == p.shape for h, p in zip(hv, params,
                                                                               strict=True))
    assert all(torch.isfinite(h).all() for h in hv)
    assert sum(float(h.abs().sum()) for h in hv) > 0


def test_registry_holds_the_builders_and_builds_vgg9():
    assert models.ARCHITECTURES["vgg16"] is vision.vgg16
    assert models.ARCHITECTURES["resnet10"] is vision.resnet10
    assert models.ARCHITECTURES["vgg9"] is vision.vgg9
    torch.manual_seed(0)
    model = models.build({"type": "vgg9"}, CIFAR, 10)
    assert norm_layers(model)  # BN on by default
    assert models.n_params(model) == VGG9_BN


def test_option_problems_accepts_resnet_options_and_rejects_unknown():
    fn, skip = models.ARCHITECTURES["resnet10"], ("type", "in_shape", "n_classes")
    good = {"type": "resnet10", "channels": [16, 32], "blocks_per_group": 2}
    assert option_problems("archs.r", fn, good, skip=skip) == []
    bad = option_problems("archs.r", fn, {"type": "resnet10", "depth": 10}, skip=skip)
    assert len(bad) == 1 and "'depth'" in bad[0] and "blocks_per_group" in bad[0]
    assert option_problems("archs.r", fn, {"blocks_per_group": 2.5}, skip=skip)
    assert option_problems("archs.v", models.ARCHITECTURES["vgg16"],
                                 {"dense_width": 256, "batch_norm": True}, skip=skip) == []
    assert option_problems("archs.v", models.ARCHITECTURES["vgg9"],
                                 {"batch_norm": "yes"}, skip=skip)


def test_resnet_copies_and_pickles():
    torch.manual_seed(0)
    model = models.build({"type": "resnet10", "channels": [4, 8]}, (3, 8, 8), 2)
    x = torch.randn(2, 3, 8, 8)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert torch.equal(other(x), model(x))
