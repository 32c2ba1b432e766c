"""Eq. 4's sampling cost beside training's, per cell, in one run: the default MLP and 1-D CNN on
MNIST-1D (the default sweep's data, B = 100), at one temperature.

    OMP_NUM_THREADS=1 python benchmarks/bench_eq4.py [--temperature 2e-3] [--samples 60]

For each arch: train (Lightning, the E·T budget of config.yaml), find θ_tr and θ_test (flow,
τ = 10), then sample with the default `eq4` settings. Prints, per arch, training's epochs and
seconds, the sampler's cost in train-epoch equivalents (chain epochs + measurement) and seconds,
their ratios, and the accumulator's bytes per parameter. The ratios are the figures: both parts
run in the same process, one after the other, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import time

import torch

from shiftcurv import data, models
from shiftcurv.eq4.cell import Eq4Cell, cost_epochs
from shiftcurv.eq4.chain import NetworkChain
from shiftcurv.eq4.sampling import SamplingSettings
from shiftcurv.landscape.minima import find_minimum
from shiftcurv.landscape.objective import Objective
from shiftcurv.train.sgd import TrainSettings, fit

ARCHS = {"mlp": {"type": "mlp", "widths": [100, 100]},
         "cnn1d": {"type": "cnn1d", "channels": [16, 16, 16]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--temperature", type=float, default=2e-3)
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--sampler", default="rr", choices=("rr", "wr"))
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = data.build("mnist1d", num_samples=2000)
    x, y = ds.tensors("train", dtype=torch.float32)
    xt, yt = ds.tensors("test", dtype=torch.float32)
    settings = SamplingSettings(sampler=args.sampler, samples=args.samples,
                                batches=args.batches, max_epochs=400)
    print(f"MNIST-1D {len(y)}/{len(yt)}, B=100, T={args.temperature:g}, {args.sampler} sampler, "
          f"{args.samples} samples in {args.batches} batches")
    head = (f"{'arch':>6} {'params':>7} {'train ep':>8} {'train s':>8} {'eq4 ep-eq':>9} "
            f"{'(chain)':>8} {'eq4 s':>7} {'ratio ep':>8} {'ratio s':>8} {'B/param':>8}")
    print(head)
    for name, spec in ARCHS.items():
        torch.manual_seed(0)
        model = models.build(spec, ds.in_shape, ds.n_classes)
        s = TrainSettings(temperature=args.temperature, batch_size=100, epochs_ref=150,
                          temperature_ref=2e-3, max_epochs=600, checkpoint_every=0, l2=1e-5)
        t0 = time.perf_counter()
        fit(model, x, y, s)
        train_s = time.perf_counter() - t0
        minima = {}
        for split, (xs, ys) in (("train", (x, y)), ("test", (xt, yt))):
            obj = Objective(model, xs, ys, l2=1e-5, dtype=torch.float64)
            minima[split] = find_minimum(obj, obj.theta_of(), tau_max=10.0, gtol=1e-4).theta
        test = Objective(model, xt, yt, dtype=torch.float64)
        train = Objective(model, x, y, l2=1e-5, dtype=torch.float64)
        chain = NetworkChain(model, x, y, lr=s.lr, batch_size=100, l2=1e-5, seed=0,
                             sampler=args.sampler, first_epoch=s.epochs)
        cell = Eq4Cell(test, train, minima["test"], minima["train"], chain, s.lr, 1e-5)
        acc = cell.accumulator(settings)
        t0 = time.perf_counter()
        run = cell.sample(acc, settings)
        cell.record(acc, run, settings)
        eq4_s = time.perf_counter() - t0
        cost = cost_epochs(run["chain_epochs"], acc.n, len(y), len(yt), cell.hvps,
                           args.sampler)
        n_params = test.dim
        bytes_per_param = acc.S.element_size() * (acc.S.shape[0] + 3)
        print(f"{name:>6} {n_params:>7} {s.epochs:>8} {train_s:>8.1f} "
              f"{cost['total_epochs']:>9.0f} {cost['chain_epochs']:>8} {eq4_s:>7.1f} "
              f"{cost['total_epochs'] / s.epochs:>8.2f} {eq4_s / train_s:>8.2f} "
              f"{bytes_per_param:>8}")


if __name__ == "__main__":
    main()
