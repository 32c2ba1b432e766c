"""The Hessian operator and its measures against dense ground truth (tiny MLP, float64).

Dense truth: `torch.func.hessian` of the flattened objective, written here independently of
`shiftcurv.landscape.hessian` (mean cross-entropy of functional_call plus the L2 term).
"""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from shiftcurv import ShiftcurvError, data, models
from shiftcurv.landscape import batchnorm, eigen, hessian, measures, trace
from shiftcurv.landscape import filter_normalised as landscape
from shiftcurv.landscape.objective import Objective


def _dense_hessian(obj, theta):
    def u(t):
        logits = functional_call(obj.model, (obj.unflatten(t), obj.buffers), (obj.x,))
        return F.cross_entropy(logits, obj.y) + 0.5 * obj.l2 * t.dot(t)
    return torch.func.hessian(u)(theta)


def _trained(widths=(8, 8), batch_norm=False, l2=1e-3, steps=200, seed=0):
    torch.manual_seed(seed)
    ds = data.build("gaussian-teacher", seed=seed)
    x, y = ds.tensors("train", dtype=torch.float64)
    model = models.build({"type": "mlp", "widths": list(widths), "batch_norm": batch_norm},
                         ds.in_shape, ds.n_classes).double()
    obj = Objective(model, x, y, l2=l2)
    theta = obj.theta_of()
    for _ in range(steps):  # full-batch GD: a point with a non-trivial Hessian
        _, g = obj.value_and_grad(theta)
        theta = theta - 0.5 * g
    return obj, theta


@pytest.fixture(scope="module")
def point():
    obj, theta = _trained()
    H = _dense_hessian(obj, theta)
    return obj, theta, H, torch.linalg.eigvalsh(H)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("backend", hessian.BACKENDS)
def test_hvp_backends_match_dense(point, backend):
    obj, theta, H, _ = point
    op = hessian.HessianOperator(obj, theta, backend=backend)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(obj.dim, generator=g, dtype=torch.float64)
        assert _rel(op(v), H @ v) < 1e-10
    assert op.n_hvp == 3


def test_auto_backend_and_objective_hvp_agree(point):
    obj, theta, H, _ = point
    op = hessian.HessianOperator(obj, theta)
    assert op.backend == "kept-graph"  # tiny: the graph fits
    small = hessian.HessianOperator(obj, theta, graph_memory=1)
    assert small.backend == "double-backward"
    v = torch.randn(obj.dim, dtype=torch.float64)
    assert _rel(op(v), obj.hvp(theta, v)) < 1e-12
    assert _rel(small(v), H @ v) < 1e-10


def test_chunking_invariance(point):
    obj, theta, _, _ = point
    v = torch.randn(obj.dim, dtype=torch.float64)
    whole = hessian.HessianOperator(obj, theta, chunk_size=obj.n)(v)
    for backend in ("kept-graph", "double-backward"):
        chunked = hessian.HessianOperator(obj, theta, chunk_size=7, backend=backend)(v)
        assert _rel(chunked, whole) < 1e-12


def test_linear_operator_is_the_same_matrix(point):
    obj, theta, H, _ = point
    lin = hessian.HessianOperator(obj, theta).linear_operator()
    V = np.random.default_rng(0).normal(size=(obj.dim, 2))
    np.testing.assert_allclose(lin @ V, H.numpy() @ V, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin.rmatvec(V[:, 0]), H.numpy() @ V[:, 0], rtol=1e-10)


def test_dense_from_operator(point):
    obj, theta, H, _ = point
    assert _rel(hessian.HessianOperator(obj, theta).dense(), H) < 1e-10


def test_lanczos_extreme_eigenvalues(point):
    obj, theta, _, ev = point
    op = hessian.HessianOperator(obj, theta)
    top = eigen.lambda_max(op, tol=1e-10)
    bottom = eigen.lambda_min(op, tol=1e-10)
    assert top.converged and bottom.converged
    assert abs(top.eigenvalues[0] - ev[-1]) <= 1e-8 * abs(ev[-1])
    assert abs(bottom.eigenvalues[0] - ev[0]) <= 1e-8 * abs(ev[0])
    assert ev[0] < 0  # the point has negative curvature: λ_min is informative
    assert top.n_matvec < 25
    # the default tolerance (1e-8 in f64) holds for λ_max
    r = eigen.lambda_max(op)
    assert abs(r.eigenvalues[0] - ev[-1]) <= 1e-8 * abs(ev[-1])


def test_lanczos_top_k_and_vectors(point):
    obj, theta, H, ev = point
    op = hessian.HessianOperator(obj, theta)
    r = eigen.lanczos(op, op.dim, k=3, tol=1e-10, return_vectors=True)
    np.testing.assert_allclose(r.eigenvalues, ev.numpy()[::-1][:3], rtol=1e-8)
    for i in range(3):  # vectors converge like the square root of the values: residual ~1e-5
        v = r.eigenvectors[:, i]
        assert _rel(H @ v, r.eigenvalues[i] * v) < 1e-4


def test_eigsh_cross_check(point):
    obj, theta, _, ev = point
    op = hessian.HessianOperator(obj, theta)
    top = eigen.lambda_max(op, tol=1e-10, method="eigsh")
    assert abs(top.eigenvalues[0] - ev[-1]) <= 1e-8 * abs(ev[-1])
    assert top.n_matvec > 0


def test_trace_estimators(point):
    obj, theta, H, _ = point
    exact = float(H.trace())
    op = hessian.HessianOperator(obj, theta)
    h = trace.hutchinson(op, op.dim, n_probes=90, seed=3)
    pp = trace.hutchpp(op, op.dim, n_matvec=90, seed=3)
    assert h.n_matvec == pp.n_matvec == 90
    assert abs(h.trace - exact) <= 3 * h.stderr
    assert abs(pp.trace - exact) <= 3 * pp.stderr
    assert pp.stderr < h.stderr / 3  # same budget, much tighter
    assert abs(pp.trace - exact) < abs(h.trace - exact)


def test_directional_curvature_exact(point):
    obj, theta, H, _ = point
    d = torch.randn(obj.dim, dtype=torch.float64)
    exact = float(d @ H @ d / d.dot(d))
    op = hessian.HessianOperator(obj, theta)
    assert hessian.directional_curvature(op, d) == pytest.approx(exact, rel=1e-10)
    assert obj.directional_curvature(theta, d) == pytest.approx(exact, rel=1e-10)


def test_float32_operator(point):
    obj, theta, H, ev = point
    op = hessian.HessianOperator(obj, theta, dtype=torch.float32)
    v = torch.randn(obj.dim, dtype=torch.float64)
    assert op(v).dtype == torch.float32
    assert _rel(op(v).double(), H @ v) < 1e-5
    top = eigen.lambda_max(op)  # default tolerance 1e-5 in f32
    assert abs(top.eigenvalues[0] - ev[-1]) <= 1e-4 * abs(ev[-1])


def test_batch_norm_model_in_eval_mode():
    obj, theta = _trained(widths=(6,), batch_norm=True, steps=50)
    H = _dense_hessian(obj, theta)
    op = hessian.HessianOperator(obj, theta)
    v = torch.randn(obj.dim, dtype=torch.float64)
    assert _rel(op(v), H @ v) < 1e-10


def test_recompute_bn_stats():
    torch.manual_seed(0)
    model = models.build({"type": "mlp", "widths": [5], "batch_norm": True}, (4,), 3).double()
    x = torch.randn(64, 4, dtype=torch.float64)
    bn = model[2]
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(9.0)
    model.eval()
    batchnorm.recompute_bn_stats(model, x)
    pre = model[1](model[0](x))  # the BN input
    torch.testing.assert_close(bn.running_mean, pre.mean(0))
    torch.testing.assert_close(bn.running_var, pre.var(0, unbiased=True))
    assert not model.training and bn.momentum == 0.1
    # in batches: the average of per-batch statistics; the mean is still exact for equal batches
    batchnorm.recompute_bn_stats(model, x, batch_size=16)
    torch.testing.assert_close(bn.running_mean, pre.mean(0))


def test_measure_point(point):
    obj, theta, H, ev = point
    names = list(measures.MEASURES)
    out = measures.measure_point(obj, theta, names, lr=0.1, batch_size=32, seed=0,
                                 options={"nonuniformity_samples": 48, "coherence_pairs": 4,
                                          "eps_maxiter": 20, "trace_matvecs": 30})
    assert all(isinstance(v, float) and not math.isnan(v) for v in out.values()), out
    assert out["lambda_max"] == pytest.approx(float(ev[-1]), rel=1e-8)
    assert out["lambda_min"] == pytest.approx(float(ev[0]), abs=1e-7 * float(ev[-1]))
    assert out["wme_sharpness"] == out["lambda_max"]
    assert out["wme_eta_a"] == pytest.approx(0.1 * out["lambda_max"])
    assert abs(out["hessian_trace"] - float(H.trace())) <= 3 * out["hessian_trace_stderr"]
    for eps in (1e-3, 5e-4):
        assert out[f"eps_sharpness_{eps:g}"] > 0
        assert out[f"eps_sharpness_{eps:g}_maxiter"] == 20
    assert out["eps_sharpness_0.001"] > out["eps_sharpness_0.0005"]
    assert out["grad_noise_trace"] > 0 and out["grad_coherence"] > 0
    assert {f"{m}_seconds" for m in names} <= set(out)


def test_measure_point_rejects_unknown_names(point):
    obj, theta, _, _ = point
    with pytest.raises(ShiftcurvError, match="unknown measure"):
        measures.measure_point(obj, theta, ["lambda_maxx"], lr=0.1, batch_size=10)
    with pytest.raises(ShiftcurvError, match="unknown measure option"):
        measures.measure_point(obj, theta, ["lambda_max"], lr=0.1, batch_size=10,
                               options={"tol": 1})
    with pytest.raises(ShiftcurvError, match="backend"):
        hessian.HessianOperator(obj, theta, backend="pyhessian")


def test_filter_normalised_landscape(point):
    obj, theta, _, _ = point
    d = landscape.filter_normalized_direction(obj, theta, seed=0)
    for dp, wp in zip(obj.unflatten(d).values(), obj.unflatten(theta).values(), strict=True):
        if dp.dim() == 1:
            assert torch.all(dp == 0)
        else:
            torch.testing.assert_close(dp.norm(dim=1), wp.norm(dim=1))
    one = landscape.landscape_1d(obj, theta, steps=5)
    assert one["loss"][2] == pytest.approx(obj.loss_and_accuracy(theta)[0], rel=1e-12)
    two = landscape.landscape_2d(obj, theta, steps=3)
    assert two["loss"].shape == (3, 3)
    assert two["loss"][1, 1] == pytest.approx(one["loss"][2], rel=1e-12)
    torch.testing.assert_close(two["directions"][0], one["direction"])


def test_curvlinops_oracle(point):
    """An outside oracle: curvlinops' Hessian (PyPI curvlinops-for-pytorch, scripts/setup.sh) of
    the plain mean cross-entropy, fed the data in three uneven batches (it weights each batch's
    mean by its size; tools that sum batch means would be off by the number of batches),
    against our operator minus α·I, column by column, and against the dense truth."""
    # installed by scripts/setup.sh (without torchvision, see there): never skipped silently
    import curvlinops
    obj, theta, H, _ = point
    model = copy.deepcopy(obj.model)  # eval mode, as the objective's
    with torch.no_grad():
        for p, t in zip(model.parameters(), obj.unflatten(theta).values(), strict=True):
            p.copy_(t)
    params = list(model.parameters())  # curvlinops 3: a list of parameters
    cuts = (0, 100, 107, obj.n)
    batches = [(obj.x[i:j], obj.y[i:j]) for i, j in zip(cuts[:-1], cuts[1:], strict=True)]
    H_cl = curvlinops.HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), params, batches)
    eye = torch.eye(obj.dim, dtype=torch.float64)
    theirs = H_cl @ eye  # a torch operator since curvlinops 3
    assert theirs.dtype == torch.float64 and theirs.shape == (obj.dim, obj.dim)
    ours = hessian.HessianOperator(obj, theta, chunk_size=50).dense() - obj.l2 * eye
    assert _rel(theirs, ours) < 1e-10
    assert _rel(theirs, H - obj.l2 * eye) < 1e-10
    assert obj.l2 > 0 and _rel(theirs, H) > 1e-6  # the L2 term is visible at this tolerance


def test_operators_work_under_no_grad(point):
    obj, theta, H, _ = point
    v = torch.randn(obj.dim, dtype=torch.float64)
    with torch.no_grad():
        for backend in hessian.BACKENDS:
            assert _rel(hessian.HessianOperator(obj, theta, backend=backend)(v), H @ v) < 1e-10
        out = measures.measure_point(obj, theta, ["nonuniformity", "grad_noise_trace",
                                                  "grad_coherence"], lr=0.1, batch_size=32,
                                     options={"nonuniformity_samples": 16, "coherence_pairs": 2})
    assert out["wme_nonuniformity"] > 0 and out["grad_coherence"] > 0
