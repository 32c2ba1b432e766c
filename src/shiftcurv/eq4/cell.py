"""Eq. 4 for one cell: the chain from θ_SGD, the expansion points θ_test and θ_tr, the per-sample
observations, and the record (terms with standard errors, diagnostics, cost).

Expansion points use the measurement's objectives (plain loss, SGD's batch-norm statistics, the
measure dtype); C = ∇²U_test(θ_test) and H = ∇²U_test(θ_tr) are `HessianOperator`s (one graph
kept per point: 1.3–1.7 gradients per HVP, `shiftcurv.landscape.hessian`). Per kept sample:
U_test(θ_i) (forward), U_α,tr(θ_i) and its gradient (for U_tr and the fluctuation–dissipation
check), one HVP with C and one with H.

Memory: the accumulator holds `batches` + 1 vectors of p floats in the measure dtype, the
kept graphs two of the network's activations over a chunk, the chain one model: in bytes per
parameter about 8·(M + 6) in float64 (M = 20: 208 B, 2.8 MB for the default 15k MLP; VGG16's
15M parameters: 3.2 GB, in float32 half that).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from shiftcurv.eq4.sampling import SamplingSettings, effective_samples, run_chain
from shiftcurv.eq4.statistics import (
    AT_MEAN_TERMS,
    TERMS,
    Eq4Accumulator,
    Eq4Estimator,
    geweke_z,
    trend_z,
)

# relative cost of one full-data pass over a sample, in gradients: a forward pass about a third
# of a gradient, an HVP of a kept graph 1.3–1.7 (shiftcurv.landscape.hessian): counted as 2
PASS_COST = {"value": 1 / 3, "grad": 1.0, "hvp": 2.0}


class Eq4Cell:
    """`test`, `train`: Objectives (plain loss; `train` with the run's α for the FDR gradient);
    `theta_test`, `theta_tr`: the minima in their dtype; `chain`: a NetworkChain at θ_SGD."""

    def __init__(self, test, train, theta_test, theta_tr, chain, lr: float, l2: float):
        from shiftcurv.landscape.hessian import HessianOperator

        self.test, self.train = test, train
        self.theta_test, self.theta_tr = theta_test, theta_tr
        self.chain, self.lr, self.l2 = chain, float(lr), float(l2)
        self.C = HessianOperator(test, theta_test)
        self.H = HessianOperator(test, theta_tr)
        self.hvps = 0

    def hvp_C(self, v):
        self.hvps += 1
        return self.C(v)

    def hvp_H(self, v):
        self.hvps += 1
        return self.H(v)

    def accumulator(self, s: SamplingSettings) -> Eq4Accumulator:
        return Eq4Accumulator(self.theta_test, self.theta_tr, self.hvp_C, self.hvp_H, s.batches,
                              s.per_batch)

    def train_plain(self, theta) -> tuple[float, torch.Tensor]:
        """(U_tr(θ) without L2, ∇U_α,tr(θ))."""
        value, grad = self.train.value_and_grad(theta)
        return value - 0.5 * self.l2 * float(theta.dot(theta)), grad

    def observe(self, theta_chain: torch.Tensor) -> dict:
        theta = self.test.cast(theta_chain)
        u_test, _ = self.test.loss_and_accuracy(theta)
        if self.chain.sampler != "wr":
            # the fluctuation–dissipation relation holds only with replacement (under
            # reshuffling it fails by orders of magnitude, tests/test_eq4.py): a forward pass
            # instead of a gradient saves about a third of the per-sample cost
            return {"test_loss": u_test, "train_loss": self.train.loss_and_accuracy(theta)[0]}
        u_tr, grad = self.train_plain(theta)
        return {"test_loss": u_test, "train_loss": u_tr,
                "fdr_lhs": float((theta - self.theta_tr).dot(grad))}

    def pilot_loss(self, theta_chain: torch.Tensor) -> float:
        return self.train.loss_and_accuracy(self.train.cast(theta_chain))[0]

    def at_mean(self, mu: torch.Tensor) -> tuple[float, float]:
        return self.test.loss_and_accuracy(mu)[0], self.train.loss_and_accuracy(mu)[0]

    def sample(self, acc, settings: SamplingSettings, **kw) -> dict:
        return run_chain(self.chain, acc, self.observe, self.pilot_loss, settings, **kw)

    def lambda_max_train(self, iters: int = 30) -> float:
        """λ_max of ∇²U_α,tr at θ_tr (loose Lanczos): λ·λ_max near 2 is the edge of stability."""
        from shiftcurv.landscape.eigen import lambda_max
        from shiftcurv.landscape.hessian import HessianOperator

        op = HessianOperator(self.train, self.theta_tr)
        return float(lambda_max(op, tol=1e-3, max_iter=iters).eigenvalues[0])

    def record(self, acc: Eq4Accumulator, run: dict, settings: SamplingSettings) -> dict:
        """The cell's Eq. 4 record from a finished chain."""
        t0 = time.perf_counter()
        out = {"status": run["status"], "stop_reason": run["stop_reason"],
               "sampler": settings.sampler, "plan": run["plan"],
               "chain_epochs": run["chain_epochs"], "samples": acc.n,
               "batches": acc.batches_done, "sampling": settings.__dict__}
        if run["status"] != "ok":
            return out
        U_k, g = self.test.value_and_grad(self.theta_test)
        U_tr_pt, g_tr = self.test.value_and_grad(self.theta_tr)
        estimator = Eq4Estimator(acc, U_k, U_tr_pt, g, g_tr, self.lr)  # 2M HVPs, once
        est = estimator.estimate(self.at_mean)
        tau_s, n_eff = effective_samples(acc)
        thin = run["plan"]["thin"]
        series = {k: np.asarray(v) for k, v in acc.series.items()}
        lam = self.lambda_max_train()
        diagnostics = {
            "n_eff": n_eff, "tau_int_epochs": tau_s * thin,
            "trend_z": trend_z(series["train_loss"], tau_s),
            "geweke_z": geweke_z(series["test_loss"], tau_s),
            "drift_ratio": estimator.split_half_drift(),
            "one_basin": float(est["train_loss_at_mean"] <= est["mean_train_loss"]),
            "lr_lambda_max": self.lr * lam, "lambda_max_train": lam,
        }
        if not diagnostics["one_basin"]:
            out["status"] = "left_basin"  # the chain's mean lies where no sample is: two basins
        out.update(terms=est, diagnostics=diagnostics, U_test_k=U_k, U_test_at_train_min=U_tr_pt,
                   estimate_seconds=time.perf_counter() - t0)
        return out


def cost_epochs(chain_epochs: int, samples: int, n_train: int, n_test: int, hvps: int,
                sampler: str = "rr") -> dict:
    """The sampling cost in train-epoch equivalents (one full-batch train gradient ≈ one epoch):
    the chain's epochs, and per kept sample a test forward, a train gradient (wr; rr: a forward)
    and two HVPs on the test set (`PASS_COST`), beside which training's own epochs are printed."""
    train_pass = PASS_COST["grad" if sampler == "wr" else "value"]
    per_sample = (PASS_COST["value"] * n_test + train_pass * n_train) / n_train
    measure = samples * per_sample + hvps * PASS_COST["hvp"] * n_test / n_train
    return {"chain_epochs": chain_epochs, "measure_epochs": measure,
            "total_epochs": chain_epochs + measure}


TERM_NAMES = dict(TERMS + AT_MEAN_TERMS)
DIAGNOSTICS = {
    "n_eff": "effective sample size of the kept test losses, N / 2tau_int",
    "tau_int_epochs": "integrated autocorrelation time of the kept test losses, in epochs",
    "trend_z": "slope of U_tr over the kept samples / its standard error (|z| < 2: stationary)",
    "geweke_z": "Geweke z of U_test, first 10% vs last 50% (|z| < 2: stationary)",
    "drift_ratio": "split-half drift 1/2 dmu' C dmu over 1/2 Tr(Sigma C) (near 0: stationary)",
    "one_basin": "1 if U_tr(mu) <= E[U_tr(theta)] (the chain's mean is inside one basin)",
    "lr_lambda_max": "lr x lambda_max of the train Hessian at theta_tr (2: edge of stability)",
}
