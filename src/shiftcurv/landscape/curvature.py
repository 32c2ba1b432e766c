"""Curvature of U_α(θ) at a point: Hessian operator, extreme eigenvalues, trace, reparametrization.

    H = ∇²U_α(θ) = (1/N) Σ_i ∇²ℓ_i(θ) + α I            (U_α as in `shiftcurv.landscape.objective`)

Everything is exact up to floating point where it can be: Hessian-vector products (HVPs) are
exact, chunked over the data with chunk *sums* divided by N (some public tools sum per-batch
means, which scales every eigenvalue by the number of batches), and the network is evaluated in
eval mode (batch norm uses the running statistics the model holds: the pipeline keeps SGD's,
docs/measures.md says why; `recompute_bn_stats` is there for one's own analyses).

The operator (`HessianOperator`) is a torch function (`op(v)`) and a
`scipy.sparse.linalg.LinearOperator` (`op.linear_operator()`), so scipy's solvers apply. Its HVP
backend was chosen by measurement (benchmarks/bench_hessian.py, 15k-parameter MLP, 4000 samples,
CPU, HVP time over gradient time at the same chunking): double backward through a first-order
graph built once per point and kept (retain_graph) 1.5–1.8; rebuilding that graph for every HVP
2.6–3.2; torch.func forward-over-reverse (jvp of grad) 3.3–4.2; reverse-over-forward (grad of
jvp) 2.8–3.3. So the default keeps the graph when its estimated memory fits `graph_memory`, else
recomputes; on CPU it also caps the chunk for cache (default operator: 1.3–1.7 times
`Objective.value_and_grad`).

Measures: `lanczos` (λ_max, λ_min; our own Lanczos with full reorthogonalisation, which stops on
an a-posteriori error estimate and so needs fewer HVPs than ARPACK for the same accuracy;
`eigsh` is offered as the cross-check), `hutchinson` and `hutchpp` (trace, with standard errors),
`directional_curvature`, `recompute_bn_stats`, `alpha_scale` (Dinh et al. 2017), and
`measure_point`, which computes a list of named measures (this module's and
`shiftcurv.landscape.sharpness`'s) as flat scalars.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from shiftcurv import ShiftcurvError
from shiftcurv.config.measure_options import DEFAULT_OPTIONS, MEASURES

BACKENDS = ("kept-graph", "double-backward", "forward-over-reverse", "reverse-over-forward")


# -- the loss of an Objective, as plain functions of θ ---------------------------------------------
class ObjectiveFunctions:
    """The per-chunk and per-sample loss of an `Objective` as functions of a flat θ, optionally in
    another dtype (x, θ and floating buffers are cast; the module itself is only a template for
    `functional_call`). The loss is the Objective's: cross-entropy, eval mode."""

    def __init__(self, objective, dtype: torch.dtype | None = None):
        self.objective = objective
        self.dtype = dtype or objective.dtype
        self.device = objective.device
        self.model = objective.model
        self.buffers = {k: (b.to(self.dtype) if b.is_floating_point() else b)
                        for k, b in objective.buffers.items()}
        self.x = objective.x.to(self.dtype)
        self.y = objective.y
        self.n = objective.n
        self.l2 = objective.l2
        self.dim = objective.dim

    def logits(self, theta: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (self.objective.unflatten(theta), self.buffers), (xc,))

    def loss_sum(self, theta: torch.Tensor, xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(theta, xc), yc, reduction="sum")

    def sample_loss(self, theta: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        """ℓ_i(θ) of one sample (unbatched xi, yi): the function to vmap over samples."""
        return F.cross_entropy(self.logits(theta, xi.unsqueeze(0)), yi.unsqueeze(0))

    def chunks(self, chunk_size: int, index: torch.Tensor | None = None):
        n = self.n if index is None else len(index)
        for i in range(0, n, chunk_size):
            if index is None:
                yield self.x[i:i + chunk_size], self.y[i:i + chunk_size]
            else:
                j = index[i:i + chunk_size]
                yield self.x[j], self.y[j]

    def cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=self.dtype)


def _activations_per_sample(model: torch.nn.Module, x1: torch.Tensor, buffers, params) -> int:
    """Numel of every leaf module's output for one sample: the scale of what autograd keeps."""
    total = [0]

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            functional_call(model, (params, buffers), (x1,))
    finally:
        for h in handles:
            h.remove()
    return total[0] + x1.numel()


# -- the Hessian operator --------------------------------------------------------------------------
class HessianOperator:
    """H = ∇²U_α(θ) of `objective` at a fixed θ, as a torch function and a scipy LinearOperator.

    backend: "kept-graph" (each chunk's first-order graph, create_graph=True, built once at θ and
    reused by every HVP with retain_graph), "double-backward" (that graph rebuilt per HVP: memory
    of one gradient), "forward-over-reverse" (torch.func jvp of grad), "reverse-over-forward"
    (torch.func grad of jvp), or "auto": kept-graph when its estimated memory
    (`graph_bytes_estimate`: 6 floats per activation per sample, plus two θ-sized tensors per
    chunk) is at most `graph_memory` bytes, else double-backward.
    dtype: compute in this dtype (default: the objective's). chunk_size: default the objective's,
    on CPU capped so a chunk's activations are ~2^19 floats (cache; see __init__).
    `n_hvp` counts the HVPs done (each one full pass over the data).
    """

    def __init__(self, objective, theta: torch.Tensor, *, backend: str = "auto",
                 dtype: torch.dtype | None = None, chunk_size: int | None = None,
                 graph_memory: float = 2 * 2**30):
        if backend not in BACKENDS + ("auto",):
            raise ShiftcurvError(f"unknown HVP backend {backend!r}; known: auto, "
                                 + ", ".join(BACKENDS))
        self.fn = ObjectiveFunctions(objective, dtype)
        self.dtype = self.fn.dtype
        self.theta = self.fn.cast(theta)
        self.dim = self.theta.numel()
        self.n = self.fn.n
        self.l2 = self.fn.l2
        self._act = _activations_per_sample(self.fn.model, self.fn.x[:1], self.fn.buffers,
                                            self.fn.objective.unflatten(self.theta))
        if chunk_size is None:
            chunk_size = objective.chunk_size
            if self.theta.device.type == "cpu":
                # measured (bench_hessian.py, 15k MLP): on CPU an HVP is 15-30% faster when a
                # chunk's activations fit in cache, ~2^19 floats, than with 4096-sample chunks;
                # on accelerators bigger chunks are better
                chunk_size = min(chunk_size, max(128, 2**19 // self._act))
        self.chunk_size = int(chunk_size)
        self.n_hvp = 0
        self._graph = None
        if backend == "auto":
            backend = ("kept-graph" if self.graph_bytes_estimate() <= graph_memory
                       else "double-backward")
        self.backend = backend

    def graph_bytes_estimate(self) -> int:
        n_chunks = math.ceil(self.n / self.chunk_size)
        item = torch.finfo(self.dtype).bits // 8
        return int((6 * self.n * self._act + 2 * n_chunks * self.dim) * item)

    # -- HVP backends ------------------------------------------------------------------------
    def _kept(self, v):
        if self._graph is None:
            leaf = self.theta.clone().requires_grad_(True)
            g = None
            for xc, yc in self.fn.chunks(self.chunk_size):
                (gc,) = torch.autograd.grad(self.fn.loss_sum(leaf, xc, yc), leaf,
                                            create_graph=True)
                g = gc if g is None else g + gc
            self._graph = (leaf, g)
        leaf, g = self._graph
        (hv,) = torch.autograd.grad(g, leaf, grad_outputs=v, retain_graph=True)
        return hv

    def _double_backward(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.fn.chunks(self.chunk_size):
            t = self.theta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.fn.loss_sum(t, xc, yc), t, create_graph=True)
            (hv,) = torch.autograd.grad(g, t, grad_outputs=v)
            out += hv
        return out

    def _forward_over_reverse(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.fn.chunks(self.chunk_size):
            out += jvp(lambda t, xc=xc, yc=yc: grad(self.fn.loss_sum)(t, xc, yc),
                       (self.theta,), (v,))[1]
        return out

    def _reverse_over_forward(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.fn.chunks(self.chunk_size):
            def directional(t, xc=xc, yc=yc):
                return jvp(lambda u: self.fn.loss_sum(u, xc, yc), (t,), (v,))[1]
            out += grad(directional)(self.theta)
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v (a tensor in the operator's dtype)."""
        v = self.fn.cast(v).reshape(-1)
        with torch.enable_grad():  # also under a caller's no_grad (e.g. a validation loop)
            hv = {"kept-graph": self._kept, "double-backward": self._double_backward,
                  "forward-over-reverse": self._forward_over_reverse,
                  "reverse-over-forward": self._reverse_over_forward}[self.backend](v)
        self.n_hvp += 1
        return hv.detach().div_(self.n).add_(v, alpha=self.l2)

    __call__ = matvec

    def release(self) -> None:
        """Free the kept first-order graph (it is rebuilt on the next HVP)."""
        self._graph = None

    def linear_operator(self):
        """H as a float64 `scipy.sparse.linalg.LinearOperator` (symmetric: rmatvec = matvec)."""
        from scipy.sparse.linalg import LinearOperator

        def mv(v):
            v = np.asarray(v, dtype=np.float64)
            out = self.matvec(torch.from_numpy(v.reshape(-1).copy()))
            return out.to(torch.float64).cpu().numpy().reshape(v.shape)

        return LinearOperator((self.dim, self.dim), matvec=mv, rmatvec=mv, dtype=np.float64)

    def dense(self) -> torch.Tensor:
        """The full p×p matrix, one HVP per column (small models and tests only)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.theta.device)
        return torch.stack([self.matvec(e) for e in eye], dim=1)


def hvp(objective, theta: torch.Tensor, v: torch.Tensor, backend: str = "double-backward"):
    """One HVP ∇²U_α(θ) v (a fresh operator: for many HVPs at one θ keep a `HessianOperator`)."""
    return HessianOperator(objective, theta, backend=backend).matvec(v)


def directional_curvature(op: Callable[[torch.Tensor], torch.Tensor], d: torch.Tensor) -> float:
    """dᵀHd / ‖d‖²: the exact second derivative of U along the unit line through θ along d.
    With d = s = θ_test − θ_tr, times ‖s‖², it is the shift-curvature sᵀC s (paper Eq. 3)."""
    hd = op(d)
    d = d.to(hd)
    return float(d.dot(hd) / d.dot(d))


# -- Lanczos ---------------------------------------------------------------------------------------
@dataclass
class EigResult:
    eigenvalues: np.ndarray  # ascending for "SA", descending for "LA"
    eigenvectors: torch.Tensor | None  # (dim, k), in the basis dtype
    n_matvec: int
    converged: bool
    error_estimate: np.ndarray  # per eigenvalue: min(r, r²/gap), r the Ritz residual norm
    method: str


def _probe_vector(dim: int, seed: int, dtype=torch.float64, device=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, k: int = 1,
            which: str = "LA", tol: float = 1e-8, max_iter: int = 200, seed: int = 0,
            v0: torch.Tensor | None = None, device=None, basis_dtype=torch.float64,
            return_vectors: bool = False) -> EigResult:
    """The k largest ("LA") or smallest ("SA") eigenvalues of a symmetric operator by Lanczos with
    full reorthogonalisation (classical Gram–Schmidt, twice). Memory: one basis vector of
    length p per iteration, in `basis_dtype` (float64; float32 halves it and suits f32 HVPs).

    Stops when, for each wanted Ritz value θ with residual norm r = β_j |e_jᵀ s| (there is an
    eigenvalue within r of θ), the estimate min(r, r²/gap) (gap: distance to the nearest other
    Ritz value; the error of a converged Ritz value is quadratic in r) is at most tol·scale AND θ
    moved by at most tol·scale in the last step (a guard: the Ritz gap can overstate the true
    gap early on). scale = |θ| for "LA" and the largest |Ritz value| for "SA" (smallest
    eigenvalues sit near 0 at a minimum, where a relative error means little). A breakdown
    (β ≈ 0: the Krylov space is invariant) makes the Ritz values exact."""
    if which not in ("LA", "SA"):
        raise ShiftcurvError(f"which must be 'LA' or 'SA', got {which!r}")
    max_iter = int(min(max_iter, dim))
    q = (_probe_vector(dim, seed, device=device, dtype=basis_dtype) if v0 is None
         else v0.detach().to(device=device, dtype=basis_dtype).reshape(-1).clone())
    q /= q.norm()
    cap = min(max_iter, 32)
    Q = torch.empty(cap, dim, dtype=basis_dtype, device=q.device)
    alpha: list[float] = []
    beta: list[float] = []
    prev = None
    converged = False
    est = np.full(k, np.inf)
    theta = s = None
    for j in range(max_iter):
        if j == cap:  # grow the basis buffer geometrically
            cap = min(2 * cap, max_iter)
            Q = torch.cat([Q, torch.empty(cap - j, dim, dtype=Q.dtype, device=Q.device)])
        Q[j] = q
        w = matvec(q).to(basis_dtype).reshape(-1)
        a = float(q.dot(w))
        w = w - a * q - (beta[-1] * Q[j - 1] if j > 0 else 0.0)
        for _ in range(2):
            w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        b = float(w.norm())
        alpha.append(a)
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, s = np.linalg.eigh(T)
        m = j + 1
        idx = np.arange(m)[::-1][:k] if which == "LA" else np.arange(m)[:k]
        scale_all = max(np.abs(theta).max(), np.finfo(float).tiny)
        breakdown = b <= 1e-14 * scale_all * max(1.0, math.sqrt(dim))
        r = b * np.abs(s[-1, idx])
        gaps = np.array([np.min(np.abs(np.delete(theta, i) - theta[i])) if m > 1 else np.inf
                         for i in idx])
        est = np.minimum(r, np.where(gaps > 0, r**2 / np.maximum(gaps, 1e-300), r))
        scale = np.abs(theta[idx]) if which == "LA" else np.full(len(idx), scale_all)
        scale = np.maximum(scale, np.finfo(float).tiny)
        if breakdown:
            est = np.zeros(len(idx))
        if m >= k and (breakdown or (prev is not None and len(prev) == len(idx)
                                     and np.all(est <= tol * scale)
                                     and np.all(np.abs(theta[idx] - prev) <= tol * scale))):
            converged = True
            break
        prev = theta[idx]
        if breakdown:
            break
        beta.append(b)
        q = w / b
    m = len(alpha)
    idx = np.arange(m)[::-1][:k] if which == "LA" else np.arange(m)[:k]
    vecs = None
    if return_vectors:
        vecs = Q[:m].T @ torch.from_numpy(np.ascontiguousarray(s[:, idx])).to(Q)
    return EigResult(theta[idx].copy(), vecs, m, converged, np.asarray(est, dtype=float),
                     "lanczos")


def eigsh(op: HessianOperator, *, k: int = 1, which: str = "LA", tol: float = 1e-8,
          seed: int = 0, ncv: int | None = None, maxiter: int | None = None) -> EigResult:
    """The same by scipy's ARPACK (`scipy.sparse.linalg.eigsh`): the cross-check. ARPACK's tol is
    on the Ritz residual relative to |θ| (0: machine precision)."""
    from scipy.sparse.linalg import eigsh as _eigsh

    start = op.n_hvp
    v0 = _probe_vector(op.dim, seed).numpy()
    vals, vecs = _eigsh(op.linear_operator(), k=k, which=which, tol=tol, v0=v0, ncv=ncv,
                        maxiter=maxiter)
    order = np.argsort(vals)[::-1] if which == "LA" else np.argsort(vals)
    return EigResult(vals[order], torch.from_numpy(vecs[:, order]), op.n_hvp - start, True,
                     np.full(k, np.nan), "eigsh")


def default_tol(dtype: torch.dtype) -> float:
    """Eigenvalue tolerance the HVPs can support: 1e-8 in f64, 1e-5 in f32 (f32 HVPs carry
    ~1e-7 relative rounding noise, below which Lanczos cannot resolve)."""
    return 1e-8 if dtype == torch.float64 else 1e-5


def _basis_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float32, torch.float16, torch.bfloat16) \
        else torch.float64


def lambda_max(op: HessianOperator, *, tol: float | None = None, max_iter: int = 200,
               seed: int = 0, method: str = "lanczos") -> EigResult:
    """The largest Hessian eigenvalue (sharpness)."""
    tol = default_tol(op.dtype) if tol is None else tol
    if method == "eigsh":
        return eigsh(op, which="LA", tol=tol, seed=seed)
    return lanczos(op, op.dim, which="LA", tol=tol, max_iter=max_iter, seed=seed,
                   device=op.theta.device, basis_dtype=_basis_dtype(op.dtype))


def lambda_min(op: HessianOperator, *, tol: float | None = None, max_iter: int = 200,
               seed: int = 0, method: str = "lanczos") -> EigResult:
    """The smallest Hessian eigenvalue (negative curvature in a flat valley); the tolerance is
    relative to the spectral radius estimate, since λ_min is near 0 at a minimum."""
    tol = default_tol(op.dtype) if tol is None else tol
    if method == "eigsh":
        return eigsh(op, which="SA", tol=tol, seed=seed)
    return lanczos(op, op.dim, which="SA", tol=tol, max_iter=max_iter, seed=seed,
                   device=op.theta.device, basis_dtype=_basis_dtype(op.dtype))


# -- trace -----------------------------------------------------------------------------------------
@dataclass
class TraceEstimate:
    trace: float
    stderr: float  # standard error of the stochastic part
    n_matvec: int
    method: str


def _rademacher(dim: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (dim,), generator=gen, dtype=torch.int8).to(torch.float64) \
        .mul_(2).sub_(1)


def hutchinson(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *,
               n_probes: int = 100, seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimator tr H ≈ mean_j z_jᵀ H z_j, z_j Rademacher; stderr = sample std of
    the z_jᵀHz_j over √n_probes (their variance is 2(‖H‖_F² − Σ H_ii²)). Memory: two vectors."""
    gen = torch.Generator().manual_seed(int(seed))
    quad = []
    for _ in range(int(n_probes)):
        z = _rademacher(dim, gen)
        quad.append(float(z.dot(matvec(z).to(torch.float64).cpu())))
    quad = np.array(quad)
    se = float(quad.std(ddof=1) / math.sqrt(n_probes)) if n_probes > 1 else math.inf
    return TraceEstimate(float(quad.mean()), se, int(n_probes), "hutchinson")


def hutchpp(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, n_matvec: int = 99,
            seed: int = 0) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021): with m = n_matvec, sketch Q = orth(H S)
    from m/3 Rademacher probes S, take tr(QᵀHQ) exactly (m/3 HVPs) and Hutchinson on the
    deflated (I−QQᵀ)H(I−QQᵀ) with the remaining probes. stderr is that of the Hutchinson part
    (the low-rank part is exact given Q). Memory: 2·(m/3) vectors of length p (float64)."""
    if n_matvec < 3:
        raise ShiftcurvError("Hutch++ needs at least 3 matrix-vector products")
    k = n_matvec // 3
    gen = torch.Generator().manual_seed(int(seed))

    def mv(z):
        return matvec(z).to(torch.float64).cpu()

    Y = torch.stack([mv(_rademacher(dim, gen)) for _ in range(k)], dim=1)
    Q, _ = torch.linalg.qr(Y)
    del Y
    low_rank = sum(float(q.dot(mv(q))) for q in Q.T)
    quad = []
    for _ in range(n_matvec - 2 * k):
        g = _rademacher(dim, gen)
        g -= Q @ (Q.T @ g)
        quad.append(float(g.dot(mv(g))))
    quad = np.array(quad)
    se = float(quad.std(ddof=1) / math.sqrt(len(quad))) if len(quad) > 1 else math.inf
    return TraceEstimate(low_rank + float(quad.mean()), se, 2 * k + len(quad), "hutch++")


# -- batch norm -----------------------------------------------------------------------------------
def recompute_bn_stats(model: torch.nn.Module, x: torch.Tensor,
                       batch_size: int | None = None) -> torch.nn.Module:
    """Recompute every batch-norm layer's running statistics at the model's current weights, in
    place, and return the model (in the mode it was in).

    Why: the running statistics left by training are an exponential average over past weights,
    not the statistics at the point measured; curvature is measured in eval mode (fixed
    statistics, so U is a function of θ alone and `torch.func` applies), and these may be wanted
    as the statistics of θ itself. The sweep does not call it (docs/measures.md: θ_tr and θ_test
    keep θ_SGD's statistics so that both are minima of one function). How: reset,
    momentum=None (PyTorch's cumulative average of the batch statistics), one pass over x in
    train mode under no_grad, momentum restored. With batch_size=None the pass is one batch, so
    running_mean is the exact data mean and running_var the exact (unbiased) data variance of
    each BN input; with batches, the averages of the per-batch statistics."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    was_training = model.training
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        p = next(model.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        step = len(x) if batch_size is None else int(batch_size)
        with torch.no_grad():
            for i in range(0, len(x), step):
                model(x[i:i + step])
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)
    return model


# -- reparametrization (Dinh et al. 2017; paper Appendix C) ---------------------------------------
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


def alpha_scale_diagonal(objective, layer_pair: Sequence, alpha: float) -> torch.Tensor:
    """The diagonal of A in θ ↦ Aθ: α on layer_pair[0]'s weight and bias, 1/α on layer_pair[1]'s
    weight, 1 elsewhere (flat, in the objective's parameter order)."""
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


def alpha_scale(model_or_theta, layer_pair: Sequence, alpha: float, *, objective=None):
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


# -- the measure step -----------------------------------------------------------------------------


def _flag(b: bool) -> float:
    return 1.0 if b else 0.0


def measure_point(objective, theta: torch.Tensor, measures: Sequence[str], *, lr: float,
                  batch_size: int, seed: int = 0, options: dict | None = None) -> dict[str, float]:
    """Compute the named measures of U_α at θ as flat scalars (NaN never hides a failure: a
    measure that fails raises). `lr`, `batch_size`: the run's SGD (η, B), for Wu–Ma–E's stability
    verdict, the minibatch noise and coherence. Keys per measure (see docs/measures.md):

    lambda_max      lambda_max, lambda_max_hvps, lambda_max_converged, lambda_max_error
    lambda_min      lambda_min, lambda_min_hvps, lambda_min_converged, lambda_min_error
    hessian_trace   hessian_trace, hessian_trace_stderr, hessian_trace_hvps
    eps_sharpness   eps_sharpness_{ε:g}, with _iterations, _evaluations, _maxiter, _restarts
    nonuniformity   wme_sharpness, wme_nonuniformity, wme_nonuniformity_samples, wme_eta_a,
                    wme_s_bound, wme_gd_stable, wme_sgd_stable, wme_nonuniformity_hvps
    grad_noise_trace grad_noise_trace, grad_noise_trace_batch, grad_mean_norm_sq,
                    grad_noise_samples
    grad_coherence  grad_coherence, grad_coherence_stderr, grad_cosine, grad_coherence_pairs
    and {measure}_seconds for each.
    """
    from shiftcurv.landscape import sharpness

    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ShiftcurvError(f"unknown measure(s) {', '.join(map(repr, unknown))}; known: "
                             + ", ".join(MEASURES))
    opts = dict(DEFAULT_OPTIONS)
    bad = [k for k in (options or {}) if k not in opts]
    if bad:
        raise ShiftcurvError(f"unknown measure option(s) {', '.join(map(repr, bad))}; known: "
                             + ", ".join(opts))
    opts.update(options or {})
    dtype = opts["dtype"]
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    theta = theta.detach().to(objective.dtype)
    out: dict[str, float] = {}
    op = None

    def operator():
        nonlocal op
        if op is None:
            op = HessianOperator(objective, theta, backend=opts["backend"], dtype=dtype,
                                 graph_memory=opts["graph_memory"])
        return op

    for name in measures:
        t0 = time.perf_counter()
        if name in ("lambda_max", "lambda_min"):
            h = operator()
            f = lambda_max if name == "lambda_max" else lambda_min
            r = f(h, tol=opts["eig_tol"], max_iter=opts["eig_max_iter"], seed=seed)
            out[name] = float(r.eigenvalues[0])
            out[f"{name}_hvps"] = float(r.n_matvec)
            out[f"{name}_converged"] = _flag(r.converged)
            out[f"{name}_error"] = float(r.error_estimate[0])
        elif name == "hessian_trace":
            h = operator()
            if opts["trace_method"] == "hutchinson":
                t = hutchinson(h, h.dim, n_probes=opts["trace_matvecs"], seed=seed)
            elif opts["trace_method"] == "hutch++":
                t = hutchpp(h, h.dim, n_matvec=opts["trace_matvecs"], seed=seed)
            else:
                raise ShiftcurvError(f"unknown trace_method {opts['trace_method']!r}; known: "
                                     "hutch++, hutchinson")
            out.update(hessian_trace=t.trace, hessian_trace_stderr=t.stderr,
                       hessian_trace_hvps=float(t.n_matvec))
        elif name == "eps_sharpness":
            for eps in opts["eps"]:
                r = sharpness.eps_sharpness(objective.value_and_grad, theta, eps,
                                            maxiter=opts["eps_maxiter"], seed=seed)
                key = f"eps_sharpness_{eps:g}"
                out[key] = r["eps_sharpness"]
                for k in ("iterations", "evaluations", "maxiter", "restarts"):
                    out[f"{key}_{k}"] = float(r[k])
        elif name == "nonuniformity":
            a = out.get("lambda_max")
            if a is None:
                r = lambda_max(operator(), tol=opts["eig_tol"], max_iter=opts["eig_max_iter"],
                               seed=seed)
                a = float(r.eigenvalues[0])
            nu = sharpness.nonuniformity(objective, theta, n_samples=opts["nonuniformity_samples"],
                                         seed=seed, tol=opts["nonuniformity_tol"], dtype=dtype)
            v = sharpness.wu_ma_e_stability(a, nu["nonuniformity"], lr=lr, batch_size=batch_size,
                                            n=objective.n)
            out.update(wme_sharpness=a, wme_nonuniformity=nu["nonuniformity"],
                       wme_nonuniformity_samples=float(nu["n_samples"]),
                       wme_nonuniformity_hvps=float(nu["n_matvec"]),
                       wme_eta_a=v["eta_a"], wme_s_bound=v["s_bound"],
                       wme_gd_stable=_flag(v["gd_stable"]), wme_sgd_stable=_flag(v["sgd_stable"]))
        elif name == "grad_noise_trace":
            r = sharpness.grad_noise_trace(objective, theta, n_samples=opts["noise_samples"],
                                           seed=seed, batch_size=batch_size)
            out.update(grad_noise_trace=r["trace"], grad_noise_trace_batch=r["trace_batch"],
                       grad_mean_norm_sq=r["mean_grad_norm_sq"],
                       grad_noise_samples=float(r["n_samples"]))
        elif name == "grad_coherence":
            r = sharpness.grad_coherence(objective, theta, batch_size,
                                         n_pairs=opts["coherence_pairs"], seed=seed)
            out.update(grad_coherence=r["coherence"], grad_coherence_stderr=r["stderr"],
                       grad_cosine=r["cosine"], grad_coherence_pairs=float(r["n_pairs"]))
        out[f"{name}_seconds"] = time.perf_counter() - t0
    return out
