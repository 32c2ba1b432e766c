"""The Hessian of U_α at a point, as an operator: Hessian-vector products (HVPs).

    H = ∇²U_α(θ) = (1/N) Σ_i ∇²ℓ_i(θ) + α I            (U_α as in `shiftcurv.landscape.objective`)
    H v = (1/N) Σ_c ∇_θ(∇L_c(θ) · v) + α v               (L_c: the loss sum of data chunk c)

HVPs are exact up to floating point, chunked over the data with chunk *sums* divided by N (some
public tools sum per-batch means, which scales every eigenvalue by the number of batches), and
the network is evaluated in eval mode (batch norm uses the running statistics the model holds:
the pipeline keeps SGD's, docs/measures.md says why; `shiftcurv.landscape.batchnorm` recomputes
them for one's own analyses).

The operator (`HessianOperator`) is a torch function (`op(v)`) and a
`scipy.sparse.linalg.LinearOperator` (`op.linear_operator()`), so scipy's solvers apply
(`shiftcurv.landscape.eigen`, `shiftcurv.landscape.trace` take it). Its HVP backend was chosen
by measurement (benchmarks/bench_hessian.py, 15k-parameter MLP, 4000 samples, CPU, HVP time over
gradient time at the same chunking): double backward through a first-order graph built once per
point and kept (retain_graph) 1.5–1.8; rebuilding that graph for every HVP 2.6–3.2; torch.func
forward-over-reverse (jvp of grad) 3.3–4.2; reverse-over-forward (grad of jvp) 2.8–3.3. So the
default keeps the graph when its estimated memory fits `graph_memory`, else recomputes; on CPU it
also caps the chunk for cache (default operator: 1.3–1.7 times `Objective.value_and_grad`).

Also `hvp` (one HVP) and `directional_curvature` (dᵀHd/‖d‖², of any operator).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.func import functional_call, grad, jvp

from shiftcurv import ShiftcurvError
from shiftcurv.landscape.objective import Objective

BACKENDS = ("kept-graph", "double-backward", "forward-over-reverse", "reverse-over-forward")


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


class HessianOperator:
    """H = ∇²U_α(θ) of `objective` at a fixed θ, as a torch function and a scipy LinearOperator:

        H v = (1/N) Σ_c ∇_θ(∇L_c(θ) · v) + α v,     L_c = `Objective.loss_sum` of data chunk c,

    the derivative of ∇L_c · v taken in one of four ways (the same H v, different cost).
    backend: "kept-graph" (each chunk's first-order graph g_c = ∇L_c(θ), create_graph=True, built
    once at θ and reused by every HVP as the vector-Jacobian product vᵀ ∂g/∂θ, retain_graph),
    "double-backward" (that graph rebuilt per HVP: memory of one gradient),
    "forward-over-reverse" (torch.func jvp of grad: d/dr ∇L_c(θ + r v)), "reverse-over-forward"
    (torch.func grad of jvp: ∇_θ d/dr L_c(θ + r v)), or "auto": kept-graph when its estimated
    memory (`graph_bytes_estimate`: 6 floats per activation per sample, plus two θ-sized tensors
    per chunk) is at most `graph_memory` bytes, else double-backward.
    dtype: compute in this dtype (default: the objective's; `objective` is then the objective's
    `in_dtype` view). chunk_size: default the objective's, on CPU capped so a chunk's
    activations are ~2^19 floats (cache; see __init__).
    `n_hvp` counts the HVPs done (each one full pass over the data).
    """

    def __init__(self, objective: Objective, theta: torch.Tensor, *, backend: str = "auto",
                 dtype: torch.dtype | None = None, chunk_size: int | None = None,
                 graph_memory: float = 2 * 2**30):
        if backend not in BACKENDS + ("auto",):
            raise ShiftcurvError(f"unknown HVP backend {backend!r}; known: auto, "
                                 + ", ".join(BACKENDS))
        self.objective = objective.in_dtype(dtype)
        self.dtype = self.objective.dtype
        self.theta = self.objective.cast(theta)
        self.dim = self.theta.numel()
        self.n = self.objective.n
        self.l2 = self.objective.l2
        self._act = _activations_per_sample(self.objective.model, self.objective.x[:1],
                                            self.objective.buffers,
                                            self.objective.unflatten(self.theta))
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
            for xc, yc in self.objective.chunks(self.chunk_size):
                (gc,) = torch.autograd.grad(self.objective.loss_sum(leaf, xc, yc), leaf,
                                            create_graph=True)
                g = gc if g is None else g + gc
            self._graph = (leaf, g)
        leaf, g = self._graph
        (hv,) = torch.autograd.grad(g, leaf, grad_outputs=v, retain_graph=True)
        return hv

    def _double_backward(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.objective.chunks(self.chunk_size):
            t = self.theta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.objective.loss_sum(t, xc, yc), t, create_graph=True)
            (hv,) = torch.autograd.grad(g, t, grad_outputs=v)
            out += hv
        return out

    def _forward_over_reverse(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.objective.chunks(self.chunk_size):
            out += jvp(lambda t, xc=xc, yc=yc: grad(self.objective.loss_sum)(t, xc, yc),
                       (self.theta,), (v,))[1]
        return out

    def _reverse_over_forward(self, v):
        out = torch.zeros_like(self.theta)
        for xc, yc in self.objective.chunks(self.chunk_size):
            def directional(t, xc=xc, yc=yc):
                return jvp(lambda u: self.objective.loss_sum(u, xc, yc), (t,), (v,))[1]
            out += grad(directional)(self.theta)
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v (a tensor in the operator's dtype)."""
        v = self.objective.cast(v).reshape(-1)
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


def hvp(objective: Objective, theta: torch.Tensor, v: torch.Tensor,
        backend: str = "double-backward") -> torch.Tensor:
    """One HVP ∇²U_α(θ) v (a fresh operator: for many HVPs at one θ keep a `HessianOperator`)."""
    return HessianOperator(objective, theta, backend=backend).matvec(v)


def directional_curvature(op: Callable[[torch.Tensor], torch.Tensor], d: torch.Tensor) -> float:
    """The curvature of U along d, from one product H d of any symmetric operator `op`:

        κ(d) = dᵀHd / ‖d‖² = d²/dr² U(θ + r·d/‖d‖) at r = 0,

    the exact second derivative of U along the unit line through θ along d. With
    d = s = θ_test − θ_tr, times ‖s‖², it is the shift-curvature sᵀC s (paper Eq. 3).

    On H = diag(1, 2, 3), d = (1, 1, 0): (1 + 2)/2.

    >>> h = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> directional_curvature(lambda v: h * v, torch.tensor([1.0, 1.0, 0.0]))
    1.5
    """
    hd = op(d)
    d = d.to(hd)
    return float(d.dot(hd) / d.dot(d))
