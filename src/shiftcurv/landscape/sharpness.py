"""Sharpness and SGD-noise measures at a point θ: ε-sharpness (Keskar et al. 2017), sharpness and
non-uniformity with the SGD linear-stability conditions (Wu, Ma & E 2018), the trace of the SGD
noise covariance, and the minibatch regret/coherence of the flatness blog post (seed 003).

Per-sample quantities use `torch.func.vmap` over the Objective's `sample_loss` (`functional_call`
of its model in eval mode: batch norm with running statistics, so per-sample functions are well
defined, which train-mode BN is not), in another dtype through `Objective.in_dtype`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.func import grad, jvp, vjp, vmap

from shiftcurv import ShiftcurvError
from shiftcurv.landscape.eigen import EigResult, lanczos
from shiftcurv.landscape.objective import Objective


# -- ε-sharpness (Keskar et al. 2017) ------------------------------------------------------------
def eps_sharpness(value_and_grad, theta: torch.Tensor, eps: float = 1e-3, *,
                  maxiter: int = 100, seed: int = 0) -> dict:
    """Keskar et al. (2017, Metric 2.1) ε-sharpness with A = I (the full space):

        φ(θ, ε) = 100 · (max_{δ ∈ C_ε} U(θ + δ) − U(θ)) / (1 + U(θ)),
        C_ε = {δ : |δ_i| ≤ ε (|θ_i| + 1)}.

    `value_and_grad(θ) -> (float, tensor)` is any such callable (`Objective.value_and_grad`, a
    quadratic in tests). The inner maximisation is L-BFGS-B (scipy) on −U with torch gradients,
    started at δ = 0 (Keskar's start: ascent from the point itself), projected-gradient
    tolerance 0 so a tiny gradient at a minimum does not end it at once, at most `maxiter`
    iterations. L-BFGS-B evaluates only feasible points, so the best value over all evaluations
    is used. If that is no increase (e.g. an exact stationary point, where ascent from δ = 0 has
    no direction), it restarts once from a uniform random point of the box (`seed`).
    Returns eps_sharpness, max_increase, value (U(θ)), eps, iterations, evaluations (gradient
    evaluations), maxiter, restarts, converged (scipy's success of the last run)."""
    from scipy.optimize import Bounds, minimize

    theta = theta.detach()
    x0 = theta.to(torch.float64).cpu().numpy()
    r = eps * (np.abs(x0) + 1.0)
    u0, _ = value_and_grad(theta)
    u0 = float(u0)
    best = [u0]

    def f(delta):
        value, g = value_and_grad(theta + torch.from_numpy(delta).to(theta))
        value = float(value)
        best[0] = max(best[0], value)
        return -value, -g.detach().to(torch.float64).cpu().numpy()

    iterations = evaluations = restarts = 0
    success = False
    starts = [np.zeros_like(x0)]
    rng = np.random.default_rng(seed)
    while starts:
        res = minimize(f, starts.pop(), jac=True, method="L-BFGS-B", bounds=Bounds(-r, r),
                       options={"maxiter": int(maxiter), "gtol": 0.0, "ftol": 1e-12,
                                "maxfun": 2 * int(maxiter) + 20})
        iterations += int(res.nit)
        evaluations += int(res.nfev)
        success = bool(res.success)
        if best[0] <= u0 and restarts == 0:
            restarts += 1
            starts.append(rng.uniform(-r, r))
    increase = best[0] - u0
    return {"eps_sharpness": 100.0 * increase / (1.0 + u0), "max_increase": increase,
            "value": u0, "eps": float(eps), "iterations": iterations,
            "evaluations": evaluations + 1, "maxiter": int(maxiter), "restarts": restarts,
            "converged": success}


# -- Wu, Ma & E (2018): sharpness, non-uniformity, linear stability -------------------------------
def _chunk_for(dim: int, chunk_size: int | None, cap: int, floats: int = 2**24) -> int:
    """Samples per vmap chunk: per-sample tensors are chunk × p, so keep chunk·p ≤ `floats`."""
    return int(chunk_size) if chunk_size else max(1, min(cap, floats // max(dim, 1)))


def subsample(n: int, n_samples: int | None, seed: int) -> torch.Tensor:
    """Indices of a seeded subsample without replacement (all n, in order, if n_samples ≥ n)."""
    if n_samples is None or n_samples >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=g)[:int(n_samples)].sort().values


class NonuniformityOperator:
    """Σ = (1/m) Σ_i H_i² − H̄², H̄ = (1/m) Σ_i H_i, over a subsample of m training samples, as
    a matvec (Wu, Ma & E 2018, Sec. 2.3: the matrix whose λ_max is s², s the non-uniformity).

    Σ v = (1/m) Σ_i H_i (H_i v) − H̄ (H̄ v): per chunk, u_i = H_i v for every sample i by
    forward-over-reverse of the vmapped per-sample gradient, then Σ_i H_i u_i by one vjp of that
    same function (H_i is symmetric); H̄(H̄v) is one subsample HVP of ū = mean u_i. The L2 term
    adds αI to every H_i and cancels in Σ. Cost per matvec: about 4–6 gradient passes over the
    m samples; memory: a few chunk × p tensors (chunk_size default: ≤ 64 samples, ≤ 2²⁴ floats).
    The uncentred form loses relative accuracy ~ machine-ε·λ_max(H̄)²/λ_max(Σ): fine in f64,
    and in f32 while s is not much smaller than a."""

    def __init__(self, objective: Objective, theta: torch.Tensor, indices: torch.Tensor, *,
                 dtype: torch.dtype | None = None, chunk_size: int | None = None):
        self.objective = objective.in_dtype(dtype)
        self.theta = self.objective.cast(theta)
        self.indices = indices
        self.m = len(indices)
        self.dim = self.theta.numel()
        self.chunk_size = _chunk_for(self.dim, chunk_size, 64)
        self.n_matvec = 0
        self._per_grad = vmap(grad(self.objective.sample_loss), in_dims=(None, 0, 0))

    def _mean_hvp(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.objective.chunks(self.chunk_size, self.indices):
            t = self.theta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.objective.loss_sum(t, xc, yc), t, create_graph=True)
            out += torch.autograd.grad(g, t, grad_outputs=v)[0]
        return out / self.m

    @torch.enable_grad()
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        v = self.objective.cast(v).reshape(-1)
        sum_hu = torch.zeros_like(self.theta)
        u_sum = torch.zeros_like(self.theta)
        for xc, yc in self.objective.chunks(self.chunk_size, self.indices):
            def per_grad(t, xc=xc, yc=yc):
                return self._per_grad(t, xc, yc)
            _, U = jvp(per_grad, (self.theta,), (v,))
            _, pullback = vjp(per_grad, self.theta)
            sum_hu += pullback(U)[0]
            u_sum += U.sum(0)
        self.n_matvec += 1
        return (sum_hu / self.m - self._mean_hvp(u_sum / self.m)).detach()

    __call__ = matvec

    def dense(self) -> torch.Tensor:
        eye = torch.eye(self.dim, dtype=self.theta.dtype, device=self.theta.device)
        return torch.stack([self.matvec(e) for e in eye], dim=1)


def nonuniformity(objective: Objective, theta: torch.Tensor, *, n_samples: int | None = 256,
                  seed: int = 0, indices: torch.Tensor | None = None, tol: float = 1e-6,
                  max_iter: int = 100, dtype: torch.dtype | None = None,
                  chunk_size: int | None = None) -> dict:
    """Wu, Ma & E's non-uniformity s = √λ_max(Σ) from per-sample Hessians on a seeded subsample
    of `n_samples` training samples (or the given `indices`), λ_max by Lanczos to `tol`.
    Returns nonuniformity (s), lambda_sigma (s²), n_samples, n_matvec, converged, indices."""
    idx = subsample(objective.n, n_samples, seed) if indices is None else indices
    op = NonuniformityOperator(objective, theta, idx, dtype=dtype, chunk_size=chunk_size)
    r: EigResult = lanczos(op, op.dim, which="LA", tol=tol, max_iter=max_iter, seed=seed,
                           device=op.theta.device)
    lam = float(r.eigenvalues[0])
    return {"nonuniformity": math.sqrt(max(lam, 0.0)), "lambda_sigma": lam,
            "n_samples": len(idx), "n_matvec": r.n_matvec, "converged": r.converged,
            "indices": idx}


def wu_ma_e_stability(sharpness: float, nonuniformity: float, *, lr: float, batch_size: int,
                      n: int) -> dict:
    """The SGD linear-stability conditions of Wu, Ma & E (2018) at a minimum, for SGD with
    learning rate η = lr and batch size B drawn without replacement from n samples.

    Their Theorem: the minimum is linearly stable (in mean square) only if
        λ_max{(I − ηH)² + η² κ Σ} ≤ 1,   κ = (n − B) / (B (n − 1)),
    which implies the two necessary conditions implemented here, with a = λ_max(H) (sharpness)
    and s = √λ_max(Σ) (non-uniformity):
        GD/sharpness:      η·a ≤ 2
        non-uniformity:    s ≤ (1/η) √(B (n − 1) / (n − B))     (≈ √B/η for n ≫ B; ∞ if B ≥ n)
    gd_stable is the first, sgd_stable both. Both are necessary, not sufficient; the full matrix
    condition is not evaluated (at a cross-entropy minimum (I−ηH)² has eigenvalue ≈ 1 on the
    whole flat subspace, so its λ_max is decided by rounding there)."""
    eta, B = float(lr), int(batch_size)
    kappa = (n - B) / (B * (n - 1)) if B < n else 0.0
    s_bound = math.inf if kappa == 0.0 else 1.0 / (eta * math.sqrt(kappa))
    gd = eta * sharpness <= 2.0
    return {"eta_a": eta * sharpness, "s_bound": s_bound, "kappa": kappa, "gd_stable": gd,
            "sgd_stable": gd and nonuniformity <= s_bound}


# -- SGD noise ------------------------------------------------------------------------------------
def per_sample_grads(objective: Objective, theta: torch.Tensor,
                     indices: torch.Tensor | None = None, *, chunk_size: int | None = None,
                     dtype: torch.dtype | None = None):
    """Yield per-sample gradients ∇ℓ_i(θ) (no L2) as (chunk, p) tensors, by vmap(grad)
    (chunk_size default: ≤ 256 samples and ≤ 2²⁴ floats per chunk)."""
    objective = objective.in_dtype(dtype)
    theta = objective.cast(theta)
    chunk_size = _chunk_for(objective.dim, chunk_size, 256)
    per_grad = vmap(grad(objective.sample_loss), in_dims=(None, 0, 0))
    for xc, yc in objective.chunks(chunk_size, indices):
        yield per_grad(theta, xc, yc).detach()


def grad_noise_trace(objective: Objective, theta: torch.Tensor, *, n_samples: int | None = None,
                     seed: int = 0, batch_size: int | None = None,
                     chunk_size: int | None = None) -> dict:
    """tr D, D the covariance of per-sample gradients over the training set:
        tr D = (1/n) Σ_i ‖g_i‖² − ‖ḡ‖²,  g_i = ∇ℓ_i(θ), ḡ = mean g_i
    (L2 adds the same αθ to every g_i and cancels). Exact over all samples by default; with a
    subsample of m it is scaled by (m/(m−1))·((n−1)/n), unbiased for the full-set value under
    sampling without replacement. trace_batch = tr D · (n−B)/(B(n−1)): the trace of the
    covariance of one size-B minibatch gradient (SGD's noise per step, without replacement)."""
    n = objective.n
    idx = subsample(n, n_samples, seed)
    m = len(idx)
    sq, total = 0.0, None
    for G in per_sample_grads(objective, theta, None if m == n else idx, chunk_size=chunk_size):
        G = G.to(torch.float64)
        sq += float((G * G).sum())
        total = G.sum(0) if total is None else total + G.sum(0)
    mean = total / m
    mean_sq = float(mean.dot(mean))
    trace = sq / m - mean_sq
    if m < n:
        trace *= (m / (m - 1)) * ((n - 1) / n)
    out = {"trace": trace, "mean_grad_norm_sq": mean_sq, "mean_sq_norm": sq / m,
           "n_samples": m, "trace_batch": math.nan}
    if batch_size is not None:
        B = int(batch_size)
        out["trace_batch"] = trace * (n - B) / (B * (n - 1)) if B < n else 0.0
    return out


def minibatch_pairs(n: int, batch_size: int, n_pairs: int, seed: int):
    """n_pairs pairs of disjoint minibatches: each pair the first 2B entries of a fresh seeded
    permutation (so the two batches of a pair are drawn as SGD draws consecutive batches)."""
    B = int(batch_size)
    if 2 * B > n:
        raise ShiftcurvError(f"grad_coherence needs two disjoint batches: 2·{B} > n = {n}")
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(int(n_pairs)):
        perm = torch.randperm(n, generator=g)
        out.append((perm[:B], perm[B:2 * B]))
    return out


def grad_coherence(objective: Objective, theta: torch.Tensor, batch_size: int, *,
                   n_pairs: int = 32, seed: int = 0) -> dict:
    """The minibatch regret of the flatness blog post (seed 003, "a local measure of
    generalization"): for two independent minibatch losses f₁, f₂ with gradients g₁, g₂ (of the
    minibatch U_α: mean loss over the batch plus the objective's L2 term), the regret of
    stepping by ε along −g₁/‖g₁‖ instead of −g₂/‖g₂‖, per unit ε, is
        R/ε = ‖g₂‖ (1 − cos(g₁, g₂)),
    estimated as the mean over `n_pairs` pairs of disjoint size-B batches, each pair used in both
    orders (the two orders have the same law; averaging them halves the noise). stderr: over
    pairs. Also the mean cosine."""
    theta = objective.cast(theta)

    @torch.enable_grad()
    def batch_grad(idx):
        t = theta.clone().requires_grad_(True)
        loss = objective.loss_sum(t, objective.x[idx], objective.y[idx]) / len(idx)
        (g,) = torch.autograd.grad(loss, t)
        return (g + objective.l2 * theta).to(torch.float64)

    vals, coss = [], []
    for i1, i2 in minibatch_pairs(objective.n, batch_size, n_pairs, seed):
        g1, g2 = batch_grad(i1), batch_grad(i2)
        n1, n2 = float(g1.norm()), float(g2.norm())
        cos = float(g1.dot(g2)) / (n1 * n2)
        vals.append(0.5 * (n1 + n2) * (1.0 - cos))
        coss.append(cos)
    vals = np.array(vals)
    se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else math.inf
    return {"coherence": float(vals.mean()), "stderr": se, "cosine": float(np.mean(coss)),
            "n_pairs": len(vals)}
