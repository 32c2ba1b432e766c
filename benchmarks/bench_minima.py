"""Minimum finding: gradient evaluations of `flow` vs the paper's protocol to the same flow time,
and the distance between their endpoints relative to |s| (goal: >= 100x fewer, <= 1 % of |s|).

    OMP_NUM_THREADS=1 python benchmarks/bench_minima.py [--tau 1.0]

Setting: the default sweep's MNIST-1D (1600 train / 400 test) MLP 40-100-100-10 after SGD at
T = 2e-3 (lr 0.2, 150 epochs); the paper's protocol at lr 1e-4 with batch 5000 (= full batch
here), so tau = 1 is 10,000 steps. HVPs (power iteration for the step limit) are counted
separately and as 2 gradients each in the cost ratio.
"""

from __future__ import annotations

import argparse

import torch

from shiftcurv import data, models
from shiftcurv.landscape.minima import gradient_flow, paper_descent
from shiftcurv.landscape.objective import Objective
from shiftcurv.train.sgd import TrainSettings, fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = p.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    ds = data.build("mnist1d", num_samples=2000)
    x, y = ds.tensors("train", dtype=torch.float32)
    torch.manual_seed(0)
    model = models.build({"type": "mlp", "widths": [100, 100]}, ds.in_shape, ds.n_classes)
    fit(model, x, y, TrainSettings(temperature=2e-3, batch_size=100, epochs_ref=150,
                                   temperature_ref=2e-3, max_epochs=150, checkpoint_every=0))
    ends = {}
    print(f"tau = {args.tau}, {args.dtype}")
    print(f"{'split':>5} {'method':>6} {'steps':>6} {'grads':>7} {'HVPs':>5} {'seconds':>8} "
          f"{'|grad|':>9}")
    for split in ("train", "test"):
        xs, ys = ds.tensors(split)
        obj = Objective(model, xs, ys, l2=1e-5, dtype=dtype)
        theta0 = obj.theta_of()
        for res in (gradient_flow(obj, theta0, tau_max=args.tau),
                    paper_descent(obj, theta0, lr=1e-4, batch_size=5000, tau_max=args.tau)):
            ends[split, res.method] = res
            print(f"{split:>5} {res.method:>6} {res.steps:>6} {res.grad_evals:>7.0f} "
                  f"{res.hvp_evals:>5} {res.seconds:>8.2f} {res.grad_norm:>9.3e}")
    shift = float((ends["test", "paper"].theta - ends["train", "paper"].theta).norm())
    print(f"|s| (paper endpoints) = {shift:.4f}")
    for split in ("train", "test"):
        f, pp = ends[split, "flow"], ends[split, "paper"]
        dist = float((f.theta - pp.theta).norm())
        cost = f.grad_evals + 2 * f.hvp_evals
        print(f"{split}: endpoint distance {dist:.2e} = {100 * dist / shift:.3f} % of |s|; "
              f"paper/flow gradient evaluations {pp.grad_evals / f.grad_evals:.0f}x "
              f"({pp.grad_evals / cost:.0f}x counting HVPs as 2); "
              f"wall time {pp.seconds / f.seconds:.0f}x")


if __name__ == "__main__":
    main()
