"""Every curvature measure against the dense Hessian, case by case: tiny mlp, cnn1d, vgg9 and
resnet10, each with and without batch norm, in float64.

Dense truth: `torch.func.hessian` of the mean cross-entropy of `functional_call` on the whole
set at once (written here, independently of `shiftcurv.landscape.hessian`, which works in
chunks), and numpy's `eigvalsh` of it. The L2 objective's truth is that Hessian plus α·I (α½‖θ‖²
has Hessian αI exactly). BN nets are measured in eval mode with running statistics taken on *other*
inputs (so they differ from any batch statistics of the data: a library that evaluated BN in train
mode would fail here), with random affine parameters. Objectives use a chunk size that does not
divide the sample count, so the chunk-sum/N weighting is tested too.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from shiftcurv import ShiftcurvError, models
from shiftcurv.landscape import batchnorm, eigen, hessian, measures, trace
from shiftcurv.landscape.objective import Objective

N = 24  # samples
CHUNK = 10  # chunks of 10, 10, 4
N_CLASSES = 3
L2 = 0.05  # α of the L2 objective
IMAGE = (3, 8, 8)

# name -> (builder spec without batch_norm, input shape)
ARCHS = {
    "mlp": ({"type": "mlp", "widths": [12, 12]}, (8,)),
    "cnn1d": ({"type": "cnn1d", "channels": [4, 6, 6]}, (16,)),
    "vgg9": ({"type": "vgg9", "channels": [2, 2, 3], "dense_width": 6}, IMAGE),
    # one block per group: an identity-shortcut block (group 1) and a projection one (group 2)
    "resnet10": ({"type": "resnet10", "channels": [2, 4], "blocks_per_group": 1}, IMAGE),
}
# parameter counts (without BN, with BN), by hand, so that a change of the tiny nets shows:
# mlp 8→12→12→3: 108 + 156 + 39; BN 2·24.   cnn1d 1→4→6→6 (k 3, length 16→2), 12→3: 16 + 78 +
# 114 + 39; BN 2·16.   vgg9 convs 3→2→2→2→2→3→3→3: 56 + 3·38 + 57 + 2·84, dense 3→6→3: 24 + 21;
# BN 2·(17 + 6).   resnet10 stem 3→2: 56, block 2→2: 2·38, block 2→4 (+1x1 projection): 76 +
# 148 + 12, dense 4→3: 15; BN 2·(2 + 2·2 + 3·4).
COUNTS = {"mlp": (303, 351), "cnn1d": (247, 279), "vgg9": (440, 486), "resnet10": (383, 419)}
CASES = [f"{arch}{'-bn' if bn else ''}" for arch in ARCHS for bn in (False, True)]


def _dense_hessian(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """θ (the flat parameters of `model`) and ∇²U(θ) of the plain loss (no L2): all samples in
    one batch, eval mode, the model's own buffers."""
    assert not model.training
    names, params = zip(*model.named_parameters(), strict=True)
    buffers = dict(model.named_buffers())
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def u(t):
        ps = {n: c.view(p.shape) for n, c, p in zip(
            names, t.split([p.numel() for p in params]), params, strict=True)}
        return F.cross_entropy(functional_call(model, (ps, buffers), (x,)), y)
    return theta, torch.func.hessian(u)(theta)


class Case:
    """One model at one point: the plain objective, the L2 one, θ, H (plain) and its spectrum."""

    def __init__(self, name: str):
        arch, bn = name.removesuffix("-bn"), name.endswith("-bn")
        spec, in_shape = ARCHS[arch]
        self.name = name
        seed = CASES.index(name)
        torch.manual_seed(seed)
        model = models.build({**spec, "batch_norm": bn}, in_shape, N_CLASSES).double().eval()
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.randn(N, *in_shape, generator=g, dtype=torch.float64)
        teacher = torch.randn(math.prod(in_shape), N_CLASSES, generator=g, dtype=torch.float64)
        y = (x.reshape(N, -1) @ teacher).argmax(1)  # labels with structure
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert bool(bns) == bn
        if bn:
            with torch.no_grad():
                for m in bns:
                    m.weight.uniform_(0.5, 1.5, generator=g)
                    m.bias.normal_(0.0, 0.2, generator=g)
            other = 1.5 * torch.randn(2 * N, *in_shape, generator=g, dtype=torch.float64) + 0.3
            batchnorm.recompute_bn_stats(model, other)
            assert not model.training  # it keeps the mode
            # the running statistics matter: train mode (batch statistics) gives another loss
            with torch.no_grad():
                train_mode = float(F.cross_entropy(copy.deepcopy(model).train()(x), y))
                eval_mode = float(F.cross_entropy(model(x), y))
            assert abs(train_mode - eval_mode) > 1e-3
        self.obj = Objective(model, x, y, chunk_size=CHUNK)
        self.obj_l2 = Objective(model, x, y, l2=L2, chunk_size=CHUNK)
        self.theta, self.H = _dense_hessian(model, x, y)
        assert torch.equal(self.theta, self.obj.theta_of())
        self.dim = self.obj.dim
        self.ev, vecs = np.linalg.eigh(self.H.numpy())
        self.top = torch.from_numpy(vecs[:, -1].copy())

    def truth(self, obj: Objective) -> torch.Tensor:
        return self.H + obj.l2 * torch.eye(self.dim, dtype=self.H.dtype)

    def objectives(self):
        return (self.obj, self.obj_l2)


@pytest.fixture(scope="module", params=CASES)
def case(request) -> Case:
    return Case(request.param)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _vectors(dim: int, k: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(k)]


def test_case_sizes(case):
    arch, bn = case.name.removesuffix("-bn"), case.name.endswith("-bn")
    assert case.dim == COUNTS[arch][bn]
    assert case.H.shape == (case.dim, case.dim)
    torch.testing.assert_close(case.H, case.H.T, rtol=0, atol=1e-12)
    # a non-trivial point: curvature of both signs, well above rounding
    assert case.ev[-1] > 1e-2 and case.ev[0] < -1e-6 * case.ev[-1]


def test_vgg9_width_options():
    """vgg9's channels/dense_width (used above for a tiny vgg9): the defaults are the paper's
    layout, bad values are a one-line error."""
    torch.manual_seed(0)
    default = models.build({"type": "vgg9"}, (3, 32, 32), 10)
    explicit = models.build({"type": "vgg9", "channels": [64, 128, 256], "dense_width": 256},
                            (3, 32, 32), 10)
    assert [p.shape for p in default.parameters()] == [p.shape for p in explicit.parameters()]
    assert models.n_params(default) == 2_789_706
    for bad in ({"channels": [4, 4]}, {"channels": [4, 0, 4]}, {"dense_width": 0}):
        with pytest.raises(ShiftcurvError, match="vgg9 needs 3 stage channels"):
            models.build({"type": "vgg9", **bad}, IMAGE, N_CLASSES)


@pytest.mark.parametrize("backend", hessian.BACKENDS)
def test_hvp_backends(case, backend):
    for obj in case.objectives():
        H = case.truth(obj)
        op = hessian.HessianOperator(obj, case.theta, backend=backend)
        assert op.chunk_size == CHUNK and op.backend == backend
        for v in _vectors(case.dim):
            assert _rel(op(v), H @ v) < 1e-10, (obj.l2, backend)
        assert op.n_hvp == 2


def test_objective_hvp_and_auto_operator(case):
    for obj in case.objectives():
        H = case.truth(obj)
        op = hessian.HessianOperator(obj, case.theta)  # "auto"
        for v in _vectors(case.dim, seed=1):
            assert _rel(obj.hvp(case.theta, v), H @ v) < 1e-10
            assert _rel(op(v), H @ v) < 1e-10


def test_extreme_eigenvalues(case):
    ev = case.ev
    scale = max(abs(ev[0]), abs(ev[-1]))  # λ_min's tolerance is relative to the spectral radius
    for obj in case.objectives():
        lo, hi = ev[0] + obj.l2, ev[-1] + obj.l2
        op = hessian.HessianOperator(obj, case.theta)
        top = eigen.lambda_max(op, tol=1e-10, max_iter=case.dim)
        bottom = eigen.lambda_min(op, tol=1e-10, max_iter=case.dim)
        assert top.converged and bottom.converged
        assert abs(top.eigenvalues[0] - hi) <= 1e-9 * abs(hi)
        assert abs(bottom.eigenvalues[0] - lo) <= 1e-9 * scale
        # the default tolerance (1e-8 in float64) holds too
        top = eigen.lambda_max(op, max_iter=case.dim)
        bottom = eigen.lambda_min(op, max_iter=case.dim)
        assert abs(top.eigenvalues[0] - hi) <= 1e-8 * abs(hi)
        assert abs(bottom.eigenvalues[0] - lo) <= 1e-8 * scale
    # the ARPACK cross-check
    op = hessian.HessianOperator(case.obj, case.theta)
    assert eigen.lambda_max(op, method="eigsh").eigenvalues[0] == pytest.approx(
        ev[-1], rel=1e-8)
    assert eigen.lambda_min(op, method="eigsh").eigenvalues[0] == pytest.approx(
        ev[0], abs=1e-8 * scale)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_estimators(case, method):
    """Unbiased estimates within 4 of their own standard errors (60 HVPs, seeded; over seeds
    0-299 no case exceeded 4 with 60 HVPs, while 45 did), and Hutchinson's standard error near
    its exact value √(2(‖H‖_F² − Σ H_ii²)/n) for Rademacher probes."""
    n = 60
    for obj in case.objectives():
        H = case.truth(obj)
        exact = float(H.trace())
        op = hessian.HessianOperator(obj, case.theta)
        if method == "hutchinson":
            t = trace.hutchinson(op, op.dim, n_probes=n, seed=7)
            sd = math.sqrt(2 * float(H.pow(2).sum() - H.diagonal().pow(2).sum()) / n)
            assert 0.5 * sd < t.stderr < 2 * sd
        else:
            t = trace.hutchpp(op, op.dim, n_matvec=n, seed=7)
        assert t.n_matvec == op.n_hvp == n
        assert 0 < t.stderr < math.inf
        assert abs(t.trace - exact) <= 4 * t.stderr, (obj.l2, t, exact)


def test_measure_point(case):
    """The measure step's Hessian measures (defaults but the trace's HVP count) on U_α."""
    ev, obj = case.ev, case.obj_l2
    out = measures.measure_point(obj, case.theta, ["lambda_max", "lambda_min", "hessian_trace"],
                                 lr=0.1, batch_size=8, options={"trace_matvecs": 60})
    scale = max(abs(ev[0]), abs(ev[-1]))
    assert out["lambda_max"] == pytest.approx(ev[-1] + obj.l2, rel=1e-8)
    assert out["lambda_min"] == pytest.approx(ev[0] + obj.l2, abs=1e-8 * scale)
    assert out["lambda_max_converged"] == out["lambda_min_converged"] == 1.0
    exact = float(case.H.trace()) + obj.l2 * case.dim
    assert abs(out["hessian_trace"] - exact) <= 4 * out["hessian_trace_stderr"]


def test_directional_curvature(case):
    """c_train_hvp / c_test_hvp of the measure step, `Objective.directional_curvature(θ, s)`,
    and `hessian.directional_curvature`, against sᵀHs/‖s‖²: for a shift s = θ' − θ, and along
    the top eigenvector (where it is λ_max)."""
    g = torch.Generator().manual_seed(2)
    theta_other = case.theta + 0.1 * torch.randn(case.dim, generator=g, dtype=torch.float64)
    tol = 1e-12 * max(abs(case.ev[0]), abs(case.ev[-1]))
    for obj in case.objectives():
        H = case.truth(obj)
        op = hessian.HessianOperator(obj, case.theta)
        for s in (theta_other - case.theta, 3.0 * case.top):
            exact = float(s @ H @ s / s.dot(s))
            assert obj.directional_curvature(case.theta, s) == pytest.approx(
                exact, rel=1e-10, abs=tol)
            assert hessian.directional_curvature(op, s) == pytest.approx(
                exact, rel=1e-10, abs=tol)
        assert obj.directional_curvature(case.theta, 3.0 * case.top) == pytest.approx(
            case.ev[-1] + obj.l2, rel=1e-10)
