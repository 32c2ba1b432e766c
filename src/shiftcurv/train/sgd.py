"""SGD at temperature T, with PyTorch Lightning as the harness.

Plain SGD (momentum 0), η = T·B, weight decay α (= L2 coefficient on ½‖θ‖², see
`shiftcurv.landscape.objective`) in the training objective only; the loss we evaluate and report
is the plain cross-entropy, as in the paper (L2_AT_EVAL: False).

Speed: the data lives on the device as two tensors. Each Lightning "batch" is one whole epoch: the
module draws that epoch's permutation (a pure function of seed and epoch) and runs all of its
minibatch steps in a tight loop under manual optimisation. Lightning's per-step machinery
(hooks, loop bookkeeping) then runs once per epoch instead of once per step, which is what brings
the harness to within a few percent of a bare PyTorch loop (benchmarks/bench_training.py).

Determinism: the same cell gives bit-identical weights on CPU with the same thread count; a run
resumed from a checkpoint taken at an epoch boundary continues exactly as if uninterrupted,
because SGD without momentum has no state besides θ and the batch order depends only on
(seed, epoch).

Stopping: `fit(..., stop=StopRequest)` (shiftcurv.train.signals) is read once per epoch, at the
epoch boundary. When a stop signal has arrived and epochs remain, the module writes a checkpoint
there and ends the fit with `state.interrupted` set to the signal's name (status stays "running"),
so the caller can exit non-zero and a rerun resumes bit-identically. Lightning's own SIGTERM path
(`SIGTERMException`) is caught and handled the same way; its SLURM auto-requeue is off.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from shiftcurv.sweep.temperature import epoch_budget, learning_rate, steps_per_epoch
from shiftcurv.train.order import epoch_permutation


@torch.no_grad()
def evaluate(model, x, y, x_eval, y_eval) -> dict:
    """Eval-mode (BN running statistics) mean loss and accuracy of `model` on the full train
    and test sets, in chunks (the Fig. 5 protocol's `eval_every`; the packed trainer's too)."""
    out = {}
    model.eval()
    for split, xs, ys in (("train", x, y), ("test", x_eval, y_eval)):
        loss, correct = 0.0, 0
        for i in range(0, len(ys), EVAL_CHUNK):
            logits = model(xs[i:i + EVAL_CHUNK])
            loss += float(F.cross_entropy(logits, ys[i:i + EVAL_CHUNK], reduction="sum"))
            correct += int((logits.argmax(-1) == ys[i:i + EVAL_CHUNK]).sum())
        out[f"eval_{split}_loss"], out[f"eval_{split}_acc"] = loss / len(ys), correct / len(ys)
    model.train()
    return out


@dataclass
class TrainSettings:
    temperature: float
    batch_size: int = 100
    seed: int = 0
    l2: float = 1e-5
    epochs_ref: float = 400
    temperature_ref: float = 5e-5
    max_epochs: int = 400
    checkpoint_every: int = 10
    device: str = "cpu"
    # the paper's Fig. 5 protocol (Li et al.'s training script); the defaults are the plain SGD
    # of the temperature sweep
    momentum: float = 0.0
    lr_milestones: tuple[float, ...] = ()  # fractions of the epochs where lr is x lr_decay
    lr_decay: float = 0.1
    epochs_fixed: int = 0  # > 0: exactly this many epochs instead of the E·T budget
    eval_every: int = 0  # > 0: eval-mode loss on the full train and test sets every k epochs

    @property
    def lr(self) -> float:
        return learning_rate(self.temperature, self.batch_size)

    @property
    def epochs(self) -> int:
        if self.epochs_fixed > 0:
            return int(self.epochs_fixed)
        return epoch_budget(self.temperature, self.epochs_ref, self.temperature_ref,
                            self.max_epochs)

    def lr_at(self, epoch: int) -> float:
        """Step schedule: η·decay^k after the k-th milestone (epoch index ≥ round(m·E))."""
        drops = sum(epoch >= round(m * self.epochs) for m in self.lr_milestones)
        return self.lr * self.lr_decay ** drops


@dataclass
class TrainState:
    """What a checkpoint holds besides θ: enough to continue bit-identically."""

    epoch: int = 0  # epochs completed
    history: dict = field(default_factory=lambda: {"epoch": [], "loss": [], "accuracy": [],
                                                   "seconds": []})
    status: str = "running"
    wall_seconds: float = 0.0
    interrupted: str | None = None  # the stop signal that ended this fit early (not saved)
    momentum_buffers: list | None = None  # SGD momentum state, one tensor per parameter

    def log_epoch(self, loss: float, accuracy: float, seconds: float) -> None:
        """One more epoch done: its mean minibatch loss, accuracy and seconds in the history."""
        self.epoch += 1
        self.wall_seconds += seconds
        for key, value in (("epoch", self.epoch), ("loss", loss), ("accuracy", accuracy),
                           ("seconds", seconds)):
            self.history[key].append(value)


EVAL_CHUNK = 2048  # samples per forward pass in `evaluate`


class SGDModule(pl.LightningModule):
    """Runs one epoch of plain minibatch SGD per Lightning training step."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 settings: TrainSettings, state: TrainState, checkpoint=None, progress=None,
                 stop=None, eval_data=None):
        super().__init__()
        self.model = model
        self.x_cpu, self.y_cpu = x, y
        self.eval_cpu = eval_data  # (x_test, y_test) for eval_every
        self.settings = settings
        self.state = state
        self.checkpoint = checkpoint  # callable(module) at checkpoint epochs
        self.progress = progress or (lambda msg, force=False: None)
        self.stop_request = stop  # shiftcurv.train.signals.StopRequest, read once per epoch
        self.checkpointed_epoch = state.epoch  # the epoch whose state is on disk (or initial)
        self.automatic_optimization = False

    def save_checkpoint(self) -> None:
        if self.checkpoint is not None and self.checkpointed_epoch != self.state.epoch:
            self.checkpoint(self)
            self.checkpointed_epoch = self.state.epoch

    def configure_optimizers(self):
        s = self.settings
        opt = torch.optim.SGD(self.model.parameters(), lr=s.lr, momentum=s.momentum,
                              weight_decay=s.l2)
        if s.momentum and self.state.momentum_buffers is not None:  # resuming
            for p, buf in zip(self.model.parameters(), self.state.momentum_buffers, strict=True):
                opt.state[p]["momentum_buffer"] = buf.to(p.device, p.dtype).clone()
        return opt

    def momentum_buffers(self) -> list | None:
        """The optimizer's momentum state (what a checkpoint must hold to resume exactly)."""
        if not self.settings.momentum or self._trainer is None:
            return None
        opt = self.optimizers().optimizer
        bufs = [opt.state.get(p, {}).get("momentum_buffer") for p in self.model.parameters()]
        return None if any(b is None for b in bufs) else [b.detach().to("cpu", copy=True)
                                                          for b in bufs]

    def on_fit_start(self) -> None:
        self.x = self.x_cpu.to(self.device)
        self.y = self.y_cpu.to(self.device)
        if self.eval_cpu is not None:
            self.x_eval, self.y_eval = (t.to(self.device) for t in self.eval_cpu)

    def evaluate(self) -> dict:
        return evaluate(self.model, self.x, self.y, self.x_eval, self.y_eval)

    def training_step(self, batch, batch_idx):
        s, st = self.settings, self.state
        epoch = st.epoch  # 0-based index of the epoch about to run
        t0 = time.perf_counter()
        opt = self.optimizers().optimizer  # the raw torch optimizer: no per-step wrapper cost
        for group in opt.param_groups:
            group["lr"] = s.lr_at(epoch)
        n_steps = steps_per_epoch(len(self.y), s.batch_size)
        perm = epoch_permutation(s.seed, epoch, len(self.y)).to(self.device)
        batches = perm[: n_steps * s.batch_size].view(n_steps, s.batch_size)
        # bookkeeping without a tensor op per step: keep the detached losses and logits (no graph)
        # and reduce them once per epoch, on the device (no per-step sync)
        losses, logits = [], []
        model, x, y, cross_entropy = self.model, self.x, self.y, F.cross_entropy
        model.train()
        for idx in batches:
            out = model(x[idx])
            loss = cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            logits.append(out.detach())
        loss_sum = torch.stack(losses).sum()
        correct = (torch.stack(logits).argmax(-1) == y[batches]).sum()
        mean_loss = float(loss_sum) / n_steps
        acc = int(correct) / (n_steps * s.batch_size)
        dt = time.perf_counter() - t0
        st.log_epoch(mean_loss, acc, dt)
        h = st.history
        if s.eval_every > 0 and self.eval_cpu is not None and (
                st.epoch % s.eval_every == 0 or st.epoch >= s.epochs):
            h.setdefault("eval_epoch", []).append(st.epoch)
            for k, v in self.evaluate().items():
                h.setdefault(k, []).append(v)
        finite = math.isfinite(mean_loss) and all(
            bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if not finite:
            st.status = "diverged"
            self.progress(f"epoch {st.epoch}/{s.epochs}: loss is not finite at T={s.temperature:g}"
                          f" (lr={s.lr:g}): stopping, status diverged", force=True)
            self.trainer.should_stop = True
            return None
        last = st.epoch >= s.epochs
        stop = self.stop_request
        self.progress(f"epoch {st.epoch}/{s.epochs}  train loss {mean_loss:.5f}  acc {acc:.4f}"
                      f"  ({dt:.2f} s/epoch, {st.wall_seconds:.1f} s)", force=last)
        if stop is not None and stop.signal is not None and not last:
            # at an epoch boundary: the one place whose state resumes bit-identically
            st.interrupted = stop.signal
            self.progress(f"epoch {st.epoch}/{s.epochs}: {stop.signal} received: writing a "
                          f"checkpoint and stopping", force=True)
            self.save_checkpoint()
            self.trainer.should_stop = True
            return None
        if not last and s.checkpoint_every > 0 and st.epoch % s.checkpoint_every == 0:
            self.save_checkpoint()
        return None


def quiet_lightning() -> None:
    """Lightning's banners ("GPU available", tips) are noise in per-cell logs."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def accelerator_of(device: str) -> str:
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu"}[device]


def cluster_environment():
    """Lightning's cluster environment with its SLURM auto-requeue switched off: on a stop signal
    we checkpoint and exit non-zero, and Snakemake's `--retries` resubmits (never both). Off
    SLURM the plain environment, which also skips Lightning's `srun` probe and its warning."""
    from lightning_fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    if os.environ.get("SLURM_NTASKS") and \
            os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*srun")
            try:
                return SLURMEnvironment(auto_requeue=False)
            except RuntimeError:  # inconsistent SLURM_* variables: one device needs none
                pass
    return LightningEnvironment()


@contextlib.contextmanager
def epoch_trainer(epochs: int, device: str):
    """The Trainer of both harnesses (this one and `shiftcurv.train.packed`): `epochs` Lightning
    epochs of one dummy batch each, none of Lightning's own logging, checkpoints or progress,
    and the warnings it prints on every run silenced."""
    # an empty root dir: under SLURM, Lightning would otherwise resume from any
    # `hpc_ckpt_*.ckpt` in the working directory (a pickle, and not our state)
    root = tempfile.TemporaryDirectory(prefix="shiftcurv-lightning-")
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator=accelerator_of(device), devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        use_distributed_sampler=False, deterministic=False, plugins=[cluster_environment()],
        default_root_dir=root.name)
    with root, warnings.catch_warnings():
        # Lightning 2.6 on torch 2.13: a FutureWarning about torch's LeafSpec, per run
        warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
        # Lightning probes SLURM for its own hpc_ckpt resume and warns when `srun` exists
        # but is unused: one device per job needs no srun, and we resume ourselves
        warnings.filterwarnings("ignore", message=".*`srun` command is available")
        # the packed module steps its stacked weights itself (no torch optimizer)
        warnings.filterwarnings("ignore", message=".*configure_optimizers` returned `None`")
        yield trainer


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, settings: TrainSettings,
        state: TrainState | None = None, checkpoint=None, progress=None,
        stop=None, eval_data=None) -> TrainState:
    """Train `model` in place from `state` (a fresh run when None) to the epoch budget or until
    the loss is not finite. Returns the final state (status "ok" or "diverged"). With `stop`
    (a `shiftcurv.train.signals.StopRequest`), a stop signal ends the fit at the next epoch boundary
    after a checkpoint: status stays "running" and `state.interrupted` names the signal.
    `eval_data` (x_test, y_test) is evaluated with the train set every `eval_every` epochs."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    quiet_lightning()
    state = state or TrainState()
    remaining = settings.epochs - state.epoch
    if remaining > 0 and state.status == "running" and stop is not None and stop.requested:
        state.interrupted = stop.signal  # before any work: what is on disk stays the resume point
    elif remaining > 0 and state.status == "running":
        module = SGDModule(model, x, y, settings, state, checkpoint, progress, stop, eval_data)
        # one dummy item per epoch: the module draws its own batches (see module docstring)
        with epoch_trainer(remaining, settings.device) as trainer:
            try:
                trainer.fit(module, train_dataloaders=[0])
            except SIGTERMException:
                # Lightning's SIGTERM handler (chained before ours) ends the fit after the
                # current epoch; the state is at an epoch boundary, so it resumes exactly
                if state.epoch < settings.epochs and state.status == "running":
                    state.interrupted = getattr(stop, "signal", None) or "SIGTERM"
                    module.save_checkpoint()
        model.to("cpu")
    if state.status == "running" and state.interrupted is None:
        state.status = "ok"
    return state


def settings_dict(settings: TrainSettings) -> dict:
    d = asdict(settings)
    d.update(lr=settings.lr, epochs=settings.epochs)
    return d
