"""Packed training: K cells (same data, architecture, batch size, weight decay; their own seeds,
temperatures and epoch budgets) trained in one process as one vectorized model, in the same
Lightning harness as `shiftcurv.train.sgd`.

Each Lightning "batch" is one epoch of every cell still training: each cell draws its own
permutation from (its seed, its epoch) with `sgd.epoch_permutation`, and the cells' minibatch
steps run together through `packed_model.StackedCells` (vmap). Per cell, exactly as the unpacked
trainer:
- lr = T·B (with its own step schedule), its own epoch budget: a cell that has done its epochs
  leaves the stack at that epoch boundary (the stack is rebuilt from the cells still training,
  so finished cells cost nothing) and `on_finish(k)` is called for it there;
- divergence: a cell whose epoch loss or weights are not finite ends `diverged` alone, at that
  boundary; its pack-mates go on;
- checkpoints every `checkpoint_every` of its own epochs (`checkpoint(k)`), and on a stop signal
  every cell still training is checkpointed at the epoch boundary and the fit ends with each
  such cell's `state.interrupted` set (status stays "running"), as `sgd.fit` does for one.

Numbers: a cell's weights do not depend on its pack-mates (bit for bit on CPU, same thread
count: each cell's slice of every batched kernel is computed alone, and the stack is never
narrower than two slots, see `packed_model`). They may differ from the unpacked trainer's in the
last bits where vmap's kernels differ from the plain ones (the 1-D CNN's grouped convolutions);
a resumed pack continues bit-identically (θ and the epoch are all the state of plain SGD).

Eval: a cell with `eval_every` (the Fig. 5 protocol) gets its eval-mode losses on the full train
and test sets at the same epochs as unpacked, computed on its own model (`sgd.evaluate`), one
cell after the other.

Not packed (refused by `check_packable`): momentum, and cells whose batch size, weight decay or
device differ.

Time: `history["seconds"]` and `wall_seconds` of a cell are its share of the pack's epoch time
(the epoch's wall time over the number of cells that trained in it).
"""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch

from shiftcurv.sweep.temperature import steps_per_epoch
from shiftcurv.train.packed_model import StackedCells
from shiftcurv.train.sgd import (
    TrainSettings,
    TrainState,
    epoch_permutation,
    epoch_trainer,
    evaluate,
    quiet_lightning,
)

SHARED = ("batch_size", "l2", "device")  # settings every cell of a pack must share


def check_packable(settings: list[TrainSettings]) -> None:
    """Raise ValueError (one line) when these cells cannot train as one pack."""
    if not settings:
        raise ValueError("a pack needs at least one cell")
    for name in SHARED:
        values = sorted({str(getattr(s, name)) for s in settings})
        if len(values) > 1:
            raise ValueError(f"cells of one pack must share {name}; got {', '.join(values)}")
    for s in settings:
        if s.momentum:
            raise ValueError(f"packed training is plain SGD: momentum {s.momentum} (seed "
                             f"{s.seed}, T {s.temperature:g}) is not packed; train that cell "
                             f"with `shiftcurv train`")


class PackedSGDModule(pl.LightningModule):
    """Runs one epoch of every cell still training per Lightning training step."""

    def __init__(self, models, x, y, settings: list[TrainSettings], states: list[TrainState],
                 checkpoint=None, on_finish=None, progress=None, stop=None, eval_data=None):
        super().__init__()
        self.cells = list(models)  # plain list: the cell models stay on the CPU
        self.x_cpu, self.y_cpu = x, y
        self.eval_cpu = eval_data  # (x_test, y_test) for the cells with eval_every
        self.settings, self.states = settings, states
        self.checkpoint = checkpoint  # callable(k) with cell k's model up to date
        self.on_finish = on_finish or (lambda k: None)  # callable(k) when cell k is done
        self.progress = progress or (lambda msg, force=False: None)
        self.stop_request = stop
        self.checkpointed = [st.epoch for st in states]
        self.stack: StackedCells | None = None
        self.stacked: list[int] = []  # the cells in `stack`, in slot order
        self.automatic_optimization = False

    def running(self) -> list[int]:
        return [k for k, (s, st) in enumerate(zip(self.settings, self.states, strict=True))
                if st.status == "running" and st.epoch < s.epochs]

    def configure_optimizers(self):
        return None  # the step is StackedCells.step (torch.optim.SGD's arithmetic, per cell)

    def on_fit_start(self) -> None:
        self.x = self.x_cpu.to(self.device)
        self.y = self.y_cpu.to(self.device)
        if self.eval_cpu is not None:
            self.x_eval, self.y_eval = (t.to(self.device) for t in self.eval_cpu)

    def evaluate_due(self, cells: list[int]) -> None:
        """Eval-mode losses of the cells whose `eval_every` falls on this epoch (or whose last
        epoch it is), on each cell's own model, into its history (as `sgd.SGDModule`)."""
        due = [k for k in cells if self.settings[k].eval_every > 0 and (
            self.states[k].epoch % self.settings[k].eval_every == 0
            or self.states[k].epoch >= self.settings[k].epochs)]
        if not due or self.eval_cpu is None:
            return
        self.sync()
        for k in due:
            h = self.states[k].history
            h.setdefault("eval_epoch", []).append(self.states[k].epoch)
            for name, v in evaluate(self.cells[k], self.x, self.y, self.x_eval,
                                    self.y_eval).items():
                h.setdefault(name, []).append(v)

    def sync(self) -> None:
        """The stacked weights into the cell models (before anything reads a model)."""
        if self.stack is not None:
            self.stack.write_back()

    def restack(self, cells: list[int]) -> None:
        if cells != self.stacked:
            self.sync()
            self.stack = StackedCells([self.cells[k] for k in cells], self.device) if cells \
                else None
            self.stacked = cells

    def save_checkpoint(self, k: int) -> None:
        if self.checkpoint is not None and self.checkpointed[k] != self.states[k].epoch:
            self.checkpoint(k)
            self.checkpointed[k] = self.states[k].epoch

    def stop_all(self, name: str) -> None:
        """A stop signal: checkpoint every cell still training (at this epoch boundary)."""
        self.sync()
        for k in self.running():
            self.states[k].interrupted = name
            self.save_checkpoint(k)

    def training_step(self, batch, batch_idx):
        cells = self.running()
        if not cells:
            self.trainer.should_stop = True
            return None
        self.restack(cells)
        settings = [self.settings[k] for k in cells]
        states = [self.states[k] for k in cells]
        t0 = time.perf_counter()
        n, batch_size = len(self.y), settings[0].batch_size
        n_steps = steps_per_epoch(n, batch_size)
        # (steps, cells, B): each cell's own order for its own epoch
        order = torch.stack([epoch_permutation(s.seed, st.epoch, n)[: n_steps * batch_size]
                             .view(n_steps, batch_size) for s, st in zip(settings, states,
                                                                        strict=True)], 1)
        order = order.to(self.device)
        lrs = [s.lr_at(st.epoch) for s, st in zip(settings, states, strict=True)]
        l2, x, y, step = settings[0].l2, self.x, self.y, self.stack.step
        losses, logits = [], []
        for idx in order:
            loss, out = step(x[idx], y[idx], lrs, l2)
            losses.append(loss)
            logits.append(out)
        # per cell, a 1-D sum over its steps, as the unpacked trainer sums (a reduction over
        # the step axis of a (steps, cells) tensor would add in an order that depends on K)
        mean_loss = [float(row.sum()) / n_steps for row in torch.stack(losses, 1)]
        correct = (torch.stack(logits).argmax(-1) == y[order]).sum((0, 2)).tolist()
        finite = self.stack.finite()
        share = (time.perf_counter() - t0) / len(cells)
        for j, k in enumerate(cells):
            self.states[k].log_epoch(mean_loss[j], correct[j] / (n_steps * batch_size), share)
        self.evaluate_due(cells)
        for j, k in enumerate(cells):
            self.end_epoch(k, mean_loss[j], correct[j] / (n_steps * batch_size), finite[j])
        done = [k for k in cells if k not in self.running()]
        if done:
            self.sync()
            for k in done:
                self.on_finish(k)
        self.progress(f"epoch boundary: {len(self.running())} of {len(self.cells)} cells "
                      f"training ({share * len(cells):.2f} s/epoch for {len(cells)})",
                      force=bool(done))
        stop = self.stop_request
        if self.running() and stop is not None and stop.signal is not None:
            self.progress(f"{stop.signal} received: writing a checkpoint for each of the "
                          f"{len(self.running())} cells still training and stopping",
                          force=True)
            self.stop_all(stop.signal)
            self.trainer.should_stop = True
            return None
        due = [k for k in self.running() if self.settings[k].checkpoint_every > 0
               and self.states[k].epoch % self.settings[k].checkpoint_every == 0]
        if due:
            self.sync()
            for k in due:
                self.save_checkpoint(k)
        if not self.running():
            self.trainer.should_stop = True
        return None

    def end_epoch(self, k: int, mean_loss: float, acc: float, finite: bool) -> None:
        s, st = self.settings[k], self.states[k]
        if not (finite and math.isfinite(mean_loss)):
            st.status = "diverged"
            self.progress(f"cell {k} (seed {s.seed}, T={s.temperature:g}, lr={s.lr:g}): loss is "
                          f"not finite at epoch {st.epoch}/{s.epochs}: status diverged; its "
                          f"pack-mates go on", force=True)
        elif st.epoch >= s.epochs:
            st.status = "ok"
            self.progress(f"cell {k} (seed {s.seed}, T={s.temperature:g}): done, epoch "
                          f"{st.epoch}/{s.epochs}, train loss {mean_loss:.5f} acc {acc:.4f}",
                          force=True)


def fit_packed(models: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
               settings: list[TrainSettings], states: list[TrainState] | None = None,
               checkpoint=None, on_finish=None, progress=None, stop=None,
               eval_data=None) -> list[TrainState]:
    """Train each of `models` in place (cell k from states[k], fresh when None) to its epoch
    budget or until it diverges; returns the final states ("ok" / "diverged", or "running" with
    `interrupted` set after a stop signal). `checkpoint(k)` and `on_finish(k)` are called with
    models[k] up to date. Cells already done on entry are left alone (no `on_finish`).
    `eval_data` (x_test, y_test): evaluated with the train set for cells with eval_every."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    check_packable(settings)
    quiet_lightning()
    states = states or [TrainState() for _ in models]
    module = PackedSGDModule(models, x, y, settings, states, checkpoint, on_finish, progress,
                             stop, eval_data)
    remaining = max((s.epochs - st.epoch for s, st in zip(settings, states, strict=True)
                     if st.status == "running"), default=0)
    if remaining > 0 and stop is not None and stop.requested:
        for k in module.running():
            states[k].interrupted = stop.signal  # before any work: the disk is the resume point
    elif remaining > 0:
        with epoch_trainer(remaining, settings[0].device) as trainer:
            try:
                trainer.fit(module, train_dataloaders=[0])
            except SIGTERMException:
                module.stop_all(getattr(stop, "signal", None) or "SIGTERM")
        module.sync()
    for s, st in zip(settings, states, strict=True):
        if st.status == "running" and st.interrupted is None and st.epoch >= s.epochs:
            st.status = "ok"  # a budget already met on entry
    return states
