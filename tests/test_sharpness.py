"""ε-sharpness, Wu–Ma–E non-uniformity and stability, SGD noise, coherence: exact answers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from shiftcurv import ShiftcurvError, data, models
from shiftcurv.landscape import sharpness
from shiftcurv.landscape.objective import Objective


def _trained(l2=1e-3, steps=200, seed=0):
    torch.manual_seed(seed)
    ds = data.build("gaussian-teacher", seed=seed)
    x, y = ds.tensors("train", dtype=torch.float64)
    model = models.build({"type": "mlp", "widths": [8, 8]}, ds.in_shape, ds.n_classes).double()
    obj = Objective(model, x, y, l2=l2)
    theta = obj.theta_of()
    for _ in range(steps):
        _, g = obj.value_and_grad(theta)
        theta = theta - 0.5 * g
    return obj, theta


@pytest.fixture(scope="module")
def point():
    return _trained()


def _sample_loss(obj):
    def loss(t, i):
        logits = functional_call(obj.model, (obj.unflatten(t), obj.buffers), (obj.x[i:i + 1],))
        return F.cross_entropy(logits, obj.y[i:i + 1])
    return loss


# -- ε-sharpness ----------------------------------------------------------------------------------
class Quadratic:
    """U(θ) = u0 + ½ Σ h_i (θ_i − c_i)², separable, so its box maximum is known in closed form:
    per coordinate, the farther end of the box if h_i > 0, the clamped vertex c_i if h_i < 0."""

    def __init__(self, h, c, u0=0.3):
        self.h, self.c, self.u0 = h, c, u0

    def value_and_grad(self, theta):
        d = theta - self.c
        return float(self.u0 + 0.5 * (self.h * d * d).sum()), self.h * d

    def box_max(self, theta, eps):
        r = eps * (theta.abs() + 1)
        d = theta - self.c
        far = d.abs() + r  # convex coordinates: the far end
        near = torch.clamp(d.abs() - r, min=0.0)  # concave coordinates: as close to c as allowed
        best = torch.where(self.h > 0, self.h * far**2, self.h * near**2)
        return float(self.u0 + 0.5 * best.sum())


@pytest.mark.parametrize("eps", [1e-3, 5e-4, 0.05])
def test_eps_sharpness_quadratic_box_maximum(eps):
    g = torch.Generator().manual_seed(0)
    p = 40
    h = torch.randn(p, generator=g, dtype=torch.float64) * 3
    c = torch.randn(p, generator=g, dtype=torch.float64)
    theta = c + 0.01 * torch.randn(p, generator=g, dtype=torch.float64)
    q = Quadratic(h, c)
    u = q.value_and_grad(theta)[0]
    r = sharpness.eps_sharpness(q.value_and_grad, theta, eps, maxiter=100)
    expected = 100 * (q.box_max(theta, eps) - u) / (1 + u)
    assert r["eps_sharpness"] == pytest.approx(expected, rel=1e-9)
    assert r["maxiter"] == 100 and 0 < r["iterations"] <= 100 and r["restarts"] == 0


def test_eps_sharpness_at_exact_stationary_point_restarts():
    # θ = c: the gradient is zero, ascent from δ = 0 has no direction; the random restart finds
    # a vertex, and for a convex separable quadratic centred at θ every vertex is the maximum.
    h = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    c = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    q = Quadratic(h, c)
    r = sharpness.eps_sharpness(q.value_and_grad, c.clone(), 0.01, maxiter=50)
    expected = 100 * (q.box_max(c, 0.01) - q.u0) / (1 + q.u0)
    assert r["restarts"] == 1
    assert r["eps_sharpness"] == pytest.approx(expected, rel=1e-9)


def test_eps_sharpness_of_a_network(point):
    obj, theta = point
    small = sharpness.eps_sharpness(obj.value_and_grad, theta, 5e-4, maxiter=30)
    big = sharpness.eps_sharpness(obj.value_and_grad, theta, 1e-3, maxiter=30)
    assert 0 < small["eps_sharpness"] < big["eps_sharpness"]
    assert big["evaluations"] >= big["iterations"] > 0


# -- Wu, Ma & E -----------------------------------------------------------------------------------
def test_nonuniformity_against_dense_per_sample_hessians(point):
    obj, theta = point
    idx = sharpness.subsample(obj.n, 24, seed=0)
    loss = _sample_loss(obj)
    Hs = torch.stack([torch.func.hessian(loss)(theta, int(i)) for i in idx])
    Hbar = Hs.mean(0)
    Sigma = (Hs @ Hs).mean(0) - Hbar @ Hbar
    op = sharpness.NonuniformityOperator(obj, theta, idx, chunk_size=5)
    v = torch.randn(obj.dim, dtype=torch.float64)
    assert float((op(v) - Sigma @ v).norm() / (Sigma @ v).norm()) < 1e-10
    r = sharpness.nonuniformity(obj, theta, indices=idx, tol=1e-10)
    lam = float(torch.linalg.eigvalsh(Sigma)[-1])
    assert r["lambda_sigma"] == pytest.approx(lam, rel=1e-8)
    assert r["nonuniformity"] == pytest.approx(math.sqrt(lam), rel=1e-8)
    assert r["n_samples"] == 24 and r["converged"]


def test_subsample_is_seeded_and_without_replacement():
    a = sharpness.subsample(100, 30, seed=4)
    assert torch.equal(a, sharpness.subsample(100, 30, seed=4))
    assert len(set(a.tolist())) == 30
    assert torch.equal(sharpness.subsample(10, 30, seed=0), torch.arange(10))


def test_wu_ma_e_stability_conditions():
    # η a ≤ 2 and s ≤ (1/η) √(B(n−1)/(n−B))
    n, B, eta = 1001, 10, 0.1
    bound = (1 / eta) * math.sqrt(B * (n - 1) / (n - B))
    v = sharpness.wu_ma_e_stability(19.0, 0.99 * bound, lr=eta, batch_size=B, n=n)
    assert v["eta_a"] == pytest.approx(1.9) and v["s_bound"] == pytest.approx(bound)
    assert v["gd_stable"] and v["sgd_stable"]
    assert not sharpness.wu_ma_e_stability(19.0, 1.01 * bound, lr=eta, batch_size=B,
                                           n=n)["sgd_stable"]
    assert not sharpness.wu_ma_e_stability(21.0, 0.0, lr=eta, batch_size=B, n=n)["gd_stable"]
    full = sharpness.wu_ma_e_stability(19.0, 1e9, lr=eta, batch_size=n, n=n)  # GD: no noise
    assert full["s_bound"] == math.inf and full["sgd_stable"]


# -- SGD noise ------------------------------------------------------------------------------------
def _dense_per_sample_grads(obj, theta, idx):
    loss = _sample_loss(obj)
    return torch.stack([torch.func.grad(loss)(theta, int(i)) for i in idx])


def test_grad_noise_trace_against_dense_covariance(point):
    obj, theta = point
    G = _dense_per_sample_grads(obj, theta, range(obj.n))
    D = torch.cov(G.T, correction=0)  # (1/n) Σ (g_i − ḡ)(g_i − ḡ)ᵀ
    r = sharpness.grad_noise_trace(obj, theta, batch_size=32, chunk_size=100)
    assert r["trace"] == pytest.approx(float(D.trace()), rel=1e-10)
    assert r["mean_grad_norm_sq"] == pytest.approx(float(G.mean(0).norm() ** 2), rel=1e-10)
    n = obj.n
    assert r["trace_batch"] == pytest.approx(r["trace"] * (n - 32) / (32 * (n - 1)))
    # a subsample: the unbiased finite-population estimate from exactly those samples
    sub = sharpness.grad_noise_trace(obj, theta, n_samples=100, seed=2)
    idx = sharpness.subsample(n, 100, seed=2)
    Ds = torch.cov(G[idx].T, correction=1)
    assert sub["trace"] == pytest.approx(float(Ds.trace()) * (n - 1) / n, rel=1e-10)
    assert sub["n_samples"] == 100


def test_grad_coherence_against_direct_computation(point):
    obj, theta = point
    B, pairs = 32, 3
    r = sharpness.grad_coherence(obj, theta, B, n_pairs=pairs, seed=5)
    vals = []
    for i1, i2 in sharpness.minibatch_pairs(obj.n, B, pairs, seed=5):
        g1 = Objective(obj.model, obj.x[i1], obj.y[i1], l2=obj.l2).value_and_grad(theta)[1]
        g2 = Objective(obj.model, obj.x[i2], obj.y[i2], l2=obj.l2).value_and_grad(theta)[1]
        cos = float(g1.dot(g2) / (g1.norm() * g2.norm()))
        vals.append(0.5 * (float(g1.norm()) + float(g2.norm())) * (1 - cos))
        assert len(set(i1.tolist()) & set(i2.tolist())) == 0
    assert r["coherence"] == pytest.approx(sum(vals) / pairs, rel=1e-10)
    assert r["n_pairs"] == pairs and r["stderr"] > 0 and -1 <= r["cosine"] <= 1
    with pytest.raises(ShiftcurvError, match="disjoint"):
        sharpness.grad_coherence(obj, theta, obj.n, n_pairs=1)
