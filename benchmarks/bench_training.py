"""Training-loop cost of the Lightning path vs a bare PyTorch loop doing the same SGD steps on the
same data in the same process (MNIST-1D, B = 100). Prints ratios; goal ≤ 1.10× (MLP), ≤ 1.05× (CNN).
Beside them, the conventional Lightning loop (one `training_step` per SGD step, automatic
optimization, a DataLoader of the same minibatch indices): what shiftcurv's one-epoch-per-
Lightning-batch design (shiftcurv.train.sgd) saves.

    OMP_NUM_THREADS=1 python benchmarks/bench_training.py [--epochs 30] [--repeats 3]

Both paths are timed end to end (the Lightning one includes building the Trainer), best of
`repeats`, alternating so that machine noise hits both alike. The final weights are compared too:
the two paths must be bit-identical.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from shiftcurv import data, models
from shiftcurv.sweep.temperature import steps_per_epoch
from shiftcurv.train.sgd import TrainSettings, epoch_permutation, fit

ARCHS = {"mlp": {"type": "mlp", "widths": [100, 100]},
         "cnn1d": {"type": "cnn1d", "channels": [16, 16, 16]}}


def bare_loop(model, x, y, s: TrainSettings) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.0, weight_decay=s.l2)
    n = steps_per_epoch(len(y), s.batch_size)
    model.train()
    for epoch in range(s.epochs):
        perm = epoch_permutation(s.seed, epoch, len(y))
        for idx in perm[: n * s.batch_size].view(n, s.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


class PerStepModule(pl.LightningModule):
    """The conventional Lightning loop: one training_step per SGD step."""

    def __init__(self, model, x, y, s: TrainSettings):
        super().__init__()
        self.model, self.x, self.y, self.s = model, x, y, s

    def training_step(self, idx, batch_idx):
        return F.cross_entropy(self.model(self.x[idx]), self.y[idx])

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=self.s.lr, momentum=0.0,
                               weight_decay=self.s.l2)


def per_step_loop(model, x, y, s: TrainSettings) -> None:
    n = steps_per_epoch(len(y), s.batch_size)
    batches = [idx for epoch in range(s.epochs)
               for idx in epoch_permutation(s.seed, epoch, len(y))[: n * s.batch_size]
               .view(n, s.batch_size)]
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    model.train()
    trainer.fit(PerStepModule(model, x, y, s),
                torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = data.build("mnist1d")
    x, y = ds.tensors("train", dtype=torch.float32)
    s = TrainSettings(temperature=1e-3, batch_size=100, epochs_ref=args.epochs,
                      temperature_ref=1e-3, max_epochs=args.epochs, checkpoint_every=0)
    steps = s.epochs * steps_per_epoch(len(y), s.batch_size)
    print(f"MNIST-1D {len(y)} train samples, B={s.batch_size}, {s.epochs} epochs = {steps} steps")
    print(f"{'arch':>6} {'params':>7} {'bare s':>8} {'lightning s':>12} {'ratio':>6} "
          f"{'per-step s':>11} {'ratio':>6} {'ms/step bare':>13} {'identical':>9}")
    paths = {"bare": bare_loop, "lightning": fit, "per-step": per_step_loop}
    for name, spec in ARCHS.items():
        best = dict.fromkeys(paths, float("inf"))
        same = {}
        for _ in range(args.repeats):
            for path, run in paths.items():
                torch.manual_seed(0)
                model = models.build(spec, ds.in_shape, ds.n_classes)
                t0 = time.perf_counter()
                run(model, x, y, s)
                best[path] = min(best[path], time.perf_counter() - t0)
                weights = torch.cat([q.detach().reshape(-1) for q in model.parameters()])
                if path == "bare":
                    bare_w = weights
                else:
                    same[path] = torch.equal(weights, bare_w)
        print(f"{name:>6} {models.n_params(model):>7} {best['bare']:>8.3f} "
              f"{best['lightning']:>12.3f} {best['lightning'] / best['bare']:>6.3f} "
              f"{best['per-step']:>11.3f} {best['per-step'] / best['bare']:>6.3f} "
              f"{1000 * best['bare'] / steps:>13.3f} "
              f"{'/'.join(str(v) for v in same.values()):>9}")

if __name__ == "__main__":
    main()
