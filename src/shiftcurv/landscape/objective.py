"""The objective U(θ) of a network over a fixed dataset, as a function of a flat parameter vector.

    U(θ)   = (1/N) Σ_i ℓ(f(x_i; θ), y_i)              the plain loss (cross-entropy, mean)
    U_α(θ) = U(θ) + (α/2) ‖θ‖²                          the L2 objective

α multiplies ½‖θ‖² over *all* parameters (weights and biases), so α is exactly PyTorch's SGD
`weight_decay` (its gradient is α·θ). The paper's L2_REG = 1e-5 is read as this α.

Everything here is full-batch but computed in chunks of at most `chunk_size` samples, each chunk's
contribution weighted by its size (Σ over chunks of chunk-sums, divided by N), so memory is bounded
and the result does not depend on the chunking. Batch norm is evaluated in eval mode (running
statistics), so U is a deterministic function of θ.

The one objective of `shiftcurv.landscape`: minima, line measures, the Hessian operator and the
sharpness measures all evaluate U through it. Besides the full-data passes (`value_and_grad`,
`hvp`, `loss_and_accuracy`) it offers the loss as plain functions of a flat θ for `torch.func`
and autograd (`logits`, `loss_sum` of a chunk, `sample_loss` of one sample, `chunks` over all or
some samples), and the same objective computed in another dtype (`in_dtype`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call

DEFAULT_CHUNK = 2048  # samples per chunk (measured on CPU: 1024-4096 within 16 %, 2048 best)


class Objective:
    """U_α(θ) of `model` on (x, y); θ is a flat vector in the order of `model.parameters()`."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, l2: float = 0.0,
                 chunk_size: int | None = None, dtype: torch.dtype | None = None):
        model = copy.deepcopy(model)
        if dtype is not None:
            model = model.to(dtype)
        self.model = model.eval()
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.x = x.to(device=self.device, dtype=self.dtype)
        self.y = y.to(self.device)
        self.l2 = float(l2)
        self.chunk_size = int(chunk_size or DEFAULT_CHUNK)
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.numels = [p.numel() for _, p in model.named_parameters()]
        self.buffers = dict(model.named_buffers())
        self.n = len(self.y)
        self.evaluations = {"value": 0, "grad": 0, "hvp": 0}  # full-data passes, by kind

    # -- parameter vectors ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return sum(self.numels)

    def theta_of(self, model: torch.nn.Module | None = None) -> torch.Tensor:
        """The flat θ of `model` (default: the objective's own copy), in this objective's dtype."""
        m = self.model if model is None else model
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()]).to(self.device,
                                                                                self.dtype)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.numels),
                                                self.shapes, strict=True)}

    def state_dict(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """A model state dict (parameters from θ, buffers as they are) for saving."""
        out = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        out.update({k: v.detach().clone() for k, v in self.unflatten(theta).items()})
        return out

    def subset(self, start: int, stop: int) -> Objective:
        """The same objective on samples [start, stop) (shares the model; for minibatch descent)."""
        sub = copy.copy(self)
        sub.x, sub.y = self.x[start:stop], self.y[start:stop]
        sub.n = len(sub.y)
        sub.evaluations = self.evaluations  # counted together with the parent
        return sub

    def in_dtype(self, dtype: torch.dtype | None) -> Objective:
        """The same objective computed in `dtype` (None or the objective's own: itself).

        A view: x and the floating buffers are cast, θ is cast by the caller (`cast`); the model
        is shared and serves only as the template of `functional_call` (every parameter comes
        from θ, every buffer from `buffers`), so it is not copied. Evaluations are counted with
        the parent's. Unlike `Objective(model, ..., dtype=...)`, which casts a copy of the
        model, this costs one copy of x (and `state_dict` keeps the model's own buffers)."""
        if dtype is None or dtype == self.dtype:
            return self
        view = copy.copy(self)
        view.dtype = dtype
        view.x = self.x.to(dtype)
        view.buffers = {k: (b.to(dtype) if b.is_floating_point() else b)
                        for k, b in self.buffers.items()}
        view.evaluations = self.evaluations
        return view

    def cast(self, t: torch.Tensor) -> torch.Tensor:
        """`t` detached, on this objective's device and in its dtype."""
        return t.detach().to(device=self.device, dtype=self.dtype)

    # -- the loss as functions of θ ------------------------------------------------------------
    def chunks(self, chunk_size: int | None = None, index: torch.Tensor | None = None):
        """Yield (x_c, y_c) over all samples in order, or over the samples `index`, in chunks of
        at most `chunk_size` (default: the objective's)."""
        chunk_size = self.chunk_size if chunk_size is None else int(chunk_size)
        n = self.n if index is None else len(index)
        for i in range(0, n, chunk_size):
            if index is None:
                yield self.x[i:i + chunk_size], self.y[i:i + chunk_size]
            else:
                j = index[i:i + chunk_size]
                yield self.x[j], self.y[j]

    def logits(self, theta: torch.Tensor, xc: torch.Tensor) -> torch.Tensor:
        """f(x_c; θ): the network at flat θ in eval mode, by `functional_call`."""
        return functional_call(self.model, (self.unflatten(theta), self.buffers), (xc,))

    def loss_sum(self, theta: torch.Tensor, xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        """Σ_{i ∈ c} ℓ(f(x_i; θ), y_i) over one chunk (no L2): chunk sums add up to N·U(θ)."""
        return F.cross_entropy(self.logits(theta, xc), yc, reduction="sum")

    def sample_loss(self, theta: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        """ℓ_i(θ) = ℓ(f(x_i; θ), y_i) of one sample (unbatched xi, yi; no L2): the function to
        vmap over samples."""
        return F.cross_entropy(self.logits(theta, xi.unsqueeze(0)), yi.unsqueeze(0))

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def loss_and_accuracy(self, theta: torch.Tensor) -> tuple[float, float]:
        """The plain loss U(θ) (no L2) and the accuracy, over the whole set."""
        total, correct = 0.0, 0
        for xc, yc in self.chunks():
            logits = self.logits(theta, xc)
            total += float(F.cross_entropy(logits, yc, reduction="sum"))
            correct += int((logits.argmax(1) == yc).sum())
        self.evaluations["value"] += 1
        return total / self.n, correct / self.n

    def l2_term(self, theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.l2 * theta.dot(theta)

    def value_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """U_α(θ) and ∇U_α(θ), over chunks c of the data (L_c(θ) = `loss_sum` of chunk c):

            U_α(θ) = (1/N) Σ_c L_c(θ) + (α/2)‖θ‖²,   ∇U_α(θ) = (1/N) Σ_c ∇L_c(θ) + αθ."""
        theta = theta.detach()
        value, grad = 0.0, torch.zeros_like(theta)
        for xc, yc in self.chunks():
            t = theta.requires_grad_(True)
            loss = self.loss_sum(t, xc, yc)
            (g,) = torch.autograd.grad(loss, t)
            value += float(loss.detach())
            grad += g
            theta = theta.detach()
        self.evaluations["grad"] += 1
        value = value / self.n + float(self.l2_term(theta))
        return value, grad.div_(self.n).add_(theta, alpha=self.l2)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """∇²U_α(θ) v by double backward, chunk by chunk (chunk sums, divided by N):

            ∇²U_α(θ) v = (1/N) Σ_c ∇_θ(∇L_c(θ) · v) + αv.

        One HVP with no state kept; for many HVPs at one θ use
        `shiftcurv.landscape.hessian.HessianOperator`."""
        theta, v = theta.detach(), v.detach().to(theta)
        out = torch.zeros_like(theta)
        for xc, yc in self.chunks():
            t = theta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.loss_sum(t, xc, yc), t, create_graph=True)
            (hv,) = torch.autograd.grad(g.dot(v), t)
            out += hv
        self.evaluations["hvp"] += 1
        return out.div_(self.n).add_(v, alpha=self.l2)

    def directional_curvature(self, theta: torch.Tensor, direction: torch.Tensor) -> float:
        """dᵀ∇²U_α(θ)d / ‖d‖²: the exact second derivative of U_α along the line θ + r·d/‖d‖."""
        d = direction.to(theta)
        return float(d.dot(self.hvp(theta, d)) / d.dot(d))
