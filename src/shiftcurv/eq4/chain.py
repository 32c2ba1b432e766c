"""SGD continued from θ_SGD at the cell's own lr, B and α: a chain that samples SGD's steady state.

Two samplers (../shared/notes/eq4-design.md, finding 2):
- `rr` (random reshuffling): training's own minibatch order, continued — epoch k of the chain is
  epoch E_train + k of training, the permutation a pure function of (seed, epoch), so the rr chain
  is exactly the training run carried on. Modes that barely move within an epoch (λ·c·n_batches
  ≲ 1) see noise that cancels over the epoch: Σ ∝ λ³ there, not the paper's diffusion.
- `wr` (with replacement): every step draws B indices independently, seeded by (seed, epoch):
  the noise the paper's SDE models (Σ ∝ λ), and the one where Yaida's fluctuation–dissipation
  relation E[(θ − θ_tr)·∇U_α] = (λ/2)E‖g_B‖² holds exactly at steady state.

The update is training's: torch.optim.SGD(lr = T·B, momentum 0, weight_decay = α) on the model in
train mode. Batch-norm running statistics the chain accumulates are its own and are discarded:
every loss of the measurement is taken with SGD's statistics (docs/measures.md).

Lightning is not used here: the chain is the inner loop of one Lightning "batch" of training
(`shiftcurv.train.sgd`) with nothing around it; it checkpoints itself at sample batches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from shiftcurv.sweep.temperature import steps_per_epoch
from shiftcurv.train.order import epoch_permutation

SAMPLERS = ("rr", "wr")


def wr_generator(seed: int, epoch: int) -> torch.Generator:
    """The with-replacement draws of (seed, epoch), a stream apart from training's permutations."""
    state = np.random.SeedSequence([int(seed), int(epoch), 0x77]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


class NetworkChain:
    """Plain SGD on `model` (in place) over (x, y) at `lr`, `batch_size`, weight decay `l2`."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float,
                 batch_size: int, l2: float, seed: int, sampler: str, first_epoch: int):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        self.model, self.x, self.y = model.train(), x, y
        self.lr, self.batch_size, self.l2 = float(lr), int(batch_size), float(l2)
        self.seed, self.sampler, self.epoch = int(seed), sampler, int(first_epoch)
        self.opt = torch.optim.SGD(model.parameters(), lr=self.lr, weight_decay=self.l2)
        self.steps = 0
        self.grad_sq_sum = 0.0  # Σ ‖g_B + αθ‖² over steps since the last `take_grad_sq`
        self.grad_sq_steps = 0

    def batches(self) -> torch.Tensor:
        n = len(self.y)
        k = steps_per_epoch(n, self.batch_size)
        if self.sampler == "rr":
            perm = epoch_permutation(self.seed, self.epoch, n)
            return perm[: k * self.batch_size].view(k, self.batch_size)
        return torch.randint(n, (k, self.batch_size), generator=wr_generator(self.seed,
                                                                             self.epoch))

    def run_epoch(self) -> float:
        """One epoch of SGD; returns the mean minibatch loss (NaN/inf: the chain diverged)."""
        model, opt, x, y = self.model, self.opt, self.x, self.y
        params = list(model.parameters())
        losses, sq = [], []
        for idx in self.batches().to(x.device):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # the step's direction g_B + αθ, for the FDR check
                sq.append(sum((p.grad + self.l2 * p).pow(2).sum() for p in params))
            opt.step()
            losses.append(loss.detach())
        self.epoch += 1
        self.steps += len(losses)
        self.grad_sq_sum += float(torch.stack(sq).sum())
        self.grad_sq_steps += len(sq)
        mean = float(torch.stack(losses).mean())
        return mean if math.isfinite(mean) and math.isfinite(self.grad_sq_sum) else math.nan

    def take_grad_sq(self) -> float:
        """Mean ‖g_B + αθ‖² over the steps since the last call."""
        out = self.grad_sq_sum / max(self.grad_sq_steps, 1)
        self.grad_sq_sum, self.grad_sq_steps = 0.0, 0
        return out

    def theta(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"model.{k}": v.detach().cpu().clone()
                   for k, v in self.model.state_dict().items()}
        return tensors, {"epoch": self.epoch, "steps": self.steps,
                         "grad_sq_sum": self.grad_sq_sum, "grad_sq_steps": self.grad_sq_steps}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items()
                                    if k.startswith("model.")})
        self.epoch, self.steps = int(meta["epoch"]), int(meta["steps"])
        self.grad_sq_sum = float(meta["grad_sq_sum"])
        self.grad_sq_steps = int(meta["grad_sq_steps"])
