"""Streamed statistics of SGD's steady state, and the terms of the paper's Eq. 4 from them.

    E_{θ~ρ}[U_test(θ)] ≈ U_k^test + ½Tr(Σ C) + ½(s+b)ᵀ C (s+b)            (Eq. 4, one basin)

ρ is sampled by a chain θ_1..θ_N (`shiftcurv.eq4.chain`). With d_i = θ_i − θ_test and
e_i = θ_i − θ_tr, μ = mean θ_i, b = θ_tr − μ (the *mean* bias, not the Laplace mode: Eq. 4
averages a Taylor expansion), s = θ_test − θ_tr, so s + b = θ_test − μ = −d̄ and b = −(d̄ + s):

    paper form (at θ_test, C = ∇²U_test(θ_test), g = ∇U_test(θ_test)):
      P4 = U_test(θ_test) + gᵀd̄ + ½Tr(ΣC) + ½d̄ᵀCd̄,   ½d̄ᵀCd̄ = ½sᵀCs + sᵀCb + ½bᵀCb
    local form (at θ_tr, H = ∇²U_test(θ_tr), g_tr = ∇U_test(θ_tr)):
      L4 = U_test(θ_tr) + g_trᵀē + ½Tr(ΣH) + ½ēᵀHē,   ē = μ − θ_tr = −b

θ_test is the end of a finite flow, not a stationary point, so the first-order terms gᵀd̄ and
g_trᵀē belong in the expansion (../shared/notes/eq4-design.md, finding 5).

Nothing of size N·p is stored. Per kept sample: one HVP at each expansion point (q_i = ½d_iᵀCd_i,
r_i = ½e_iᵀHe_i) and the caller's scalars (losses). Per contiguous batch m of samples: n_m, the
vector S_m = Σ d_i, and sums of the scalars: M·p floats in all. At the end, Gram matrices
G_jk = S_jᵀCS_k and K_jk = S_jᵀHS_k (M HVPs each) give every quadratic form of every subset of
batches, so the estimates and their leave-one-batch-out jackknife cost no more passes.

Centred estimators (the linear noise cancels): ½Tr(ΣC) = N/(N−1)·(mean q − ½d̄ᵀCd̄), the sample
covariance's. Standard errors: jackknife over the M batches, valid when a batch spans several
autocorrelation times (the note measured −4.6 % bias and SEs 20 % small at one τ_int).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


# -- time-series diagnostics (numpy, on the scalar series) ----------------------------------------
def integrated_autocorrelation_time(x, window_factor: float = 5.0) -> float:
    """τ_int = ½ + Σ_{k≥1} ρ_k with Sokal's automatic window (the smallest W ≥ window_factor·τ(W)),
    in units of the series' spacing; N_eff = N / (2τ_int). 0.5 for white noise.

    >>> rng = np.random.default_rng(0); x = np.zeros(20000)
    >>> for i in range(1, len(x)): x[i] = 0.9 * x[i - 1] + rng.normal()
    >>> abs(integrated_autocorrelation_time(x) - 9.5) < 2  # AR(1): (1 + φ)/(2(1 − φ)) = 9.5
    True
    """
    x = np.asarray(x, float)
    n = len(x)
    if n < 4 or not np.all(np.isfinite(x)) or np.var(x) == 0:
        return math.nan if n < 4 or not np.all(np.isfinite(x)) else 0.5
    y = x - x.mean()
    f = np.fft.rfft(y, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    rho = acf / acf[0]
    tau = 0.5
    for w in range(1, n):
        tau += rho[w]
        if w >= window_factor * tau:
            break
    return float(max(tau, 0.5))


def geweke_z(x, tau: float, first: float = 0.1, last: float = 0.5) -> float:
    """Geweke's z: mean of the first 10 % minus mean of the last 50 %, over its standard error
    (each part's variance inflated by 2τ_int). |z| ≳ 2: the chain was still drifting."""
    x = np.asarray(x, float)
    a, b = x[: max(2, int(first * len(x)))], x[-max(2, int(last * len(x))):]
    se2 = 2 * max(tau, 0.5) * (a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((a.mean() - b.mean()) / math.sqrt(se2)) if se2 > 0 else 0.0


def trend_z(x, tau: float) -> float:
    """Least-squares slope of x against sample index over its standard error (residual variance
    inflated by 2τ_int): a chain at steady state has |z| ≲ 2."""
    x = np.asarray(x, float)
    i = np.arange(len(x), dtype=float) - (len(x) - 1) / 2
    if len(x) < 3 or not np.any(i):
        return 0.0
    slope = float(i @ (x - x.mean()) / (i @ i))
    resid = x - x.mean() - slope * i
    se2 = 2 * max(tau, 0.5) * resid.var(ddof=2) / (i @ i)
    return slope / math.sqrt(se2) if se2 > 0 else 0.0


# -- the streamed accumulator ----------------------------------------------------------------------
class Eq4Accumulator:
    """Per-batch running sums of a chain's samples around θ_test (C) and θ_tr (H).

    `hvp_test(v)` = C v, `hvp_local(v)` = H v (torch functions of a flat vector in θ's dtype).
    `add(theta, **scalars)` takes one kept sample and any named scalars (e.g. its test and train
    losses); samples fill batch 0 with `per_batch` samples, then batch 1, ... (`n_batches` in all).
    """

    def __init__(self, theta_test: torch.Tensor, theta_tr: torch.Tensor, hvp_test: Matvec,
                 hvp_local: Matvec, n_batches: int, per_batch: int):
        self.theta_test, self.theta_tr = theta_test.detach().clone(), theta_tr.detach().clone()
        self.s = self.theta_test - self.theta_tr  # the shift; e_i = d_i + s
        self.hvp_test, self.hvp_local = hvp_test, hvp_local
        self.n_batches, self.per_batch = int(n_batches), int(per_batch)
        self.S = torch.zeros(self.n_batches, theta_test.numel(), dtype=theta_test.dtype,
                             device=theta_test.device)
        self.counts = np.zeros(self.n_batches, dtype=np.int64)
        self.sums: dict[str, np.ndarray] = {"q": np.zeros(self.n_batches),
                                            "r": np.zeros(self.n_batches)}
        self.series: dict[str, list[float]] = {}

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def batches_done(self) -> int:
        return int((self.counts == self.per_batch).sum())

    @property
    def full(self) -> bool:
        return self.n >= self.n_batches * self.per_batch

    def add(self, theta: torch.Tensor, **scalars: float) -> None:
        if self.full:
            raise ValueError("Eq4Accumulator is full")
        m = self.n // self.per_batch
        d = theta.detach().to(self.theta_test) - self.theta_test
        e = d + self.s
        self.S[m] += d
        self.counts[m] += 1
        self.sums["q"][m] += 0.5 * float(d.dot(self.hvp_test(d)))
        self.sums["r"][m] += 0.5 * float(e.dot(self.hvp_local(e)))
        for k, v in scalars.items():
            self.sums.setdefault(k, np.zeros(self.n_batches))[m] += float(v)
            self.series.setdefault(k, []).append(float(v))

    # checkpoint: tensors + a JSON-able dict
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return ({"S": self.S.cpu()}, {"counts": self.counts.tolist(),
                                      "sums": {k: v.tolist() for k, v in self.sums.items()},
                                      "series": self.series})

    def load(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.S = tensors["S"].to(self.S)
        self.counts = np.asarray(meta["counts"], dtype=np.int64)
        self.sums = {k: np.asarray(v, float) for k, v in meta["sums"].items()}
        self.series = {k: list(v) for k, v in meta["series"].items()}


# -- estimates and their jackknife -------------------------------------------------------------
TERMS = (
    # name, long name
    ("mean_test_loss", "E[U_test(theta)] over the chain (the left side of Eq. 4)"),
    ("mean_train_loss", "E[U_tr(theta)] over the chain"),
    ("excess", "E[U_test(theta)] - U_test(theta_tr): the measured excess over the train minimum"),
    ("cov_term", "1/2 Tr(Sigma C_test): the covariance-curvature term"),
    ("shift_bias_term", "1/2 (s+b)' C_test (s+b)"),
    ("shift_term", "1/2 s' C_test s (the shift part)"),
    ("cross_term", "s' C_test b (the cross part)"),
    ("bias_term", "1/2 b' C_test b (the bias-curvature part)"),
    ("first_order", "-g_test'(s+b): the first-order term at theta_test"),
    ("prediction", "Eq. 4 at theta_test (paper form with the first-order term)"),
    ("prediction_no_first_order", "Eq. 4 at theta_test as the paper writes it (no g term)"),
    ("excess_prediction", "paper-form prediction of the excess: Eq. 4 minus Eq. 3 (both with "
                          "the first-order term)"),
    ("residual", "measured minus predicted E[U_test], paper form"),
    ("local_cov_term", "1/2 Tr(Sigma H), H = Hessian of U_test at theta_tr"),
    ("local_bias_term", "1/2 b' H b"),
    ("local_first_order", "-g_tr'b, g_tr = grad U_test(theta_tr)"),
    ("local_prediction", "Eq. 4 expanded at theta_tr (local form)"),
    ("local_excess_prediction", "local-form prediction of the excess"),
    ("local_residual", "measured minus predicted E[U_test], local form"),
    ("bias_norm", "|b| = |theta_tr - mu|"),
    ("fdr_lhs", "E[(theta - theta_tr) . grad U_alpha,tr(theta)] (Yaida's FDR, left side)"),
    ("fdr_rhs", "(lr/2) E|g_B|^2 (Yaida's FDR, right side)"),
)
AT_MEAN_TERMS = (
    ("excess_bias", "U_test(mu) - U_test(theta_tr): the excess due to the bias"),
    ("excess_cov", "E[U_test(theta)] - U_test(mu): the excess due to the spread"),
    ("train_loss_at_mean", "U_tr(mu)"),
)


class Eq4Estimator:
    """Every term of Eq. 4 for any subset of an accumulator's batches (for the jackknife).

    `U_test_k` = U_test(θ_test), `U_test_tr` = U_test(θ_tr), `g` = ∇U_test(θ_test),
    `g_tr` = ∇U_test(θ_tr) (plain loss, flat vectors)."""

    def __init__(self, acc: Eq4Accumulator, U_test_k: float, U_test_tr: float,
                 g: torch.Tensor, g_tr: torch.Tensor, lr: float):
        m = acc.batches_done
        self.acc, self.m, self.lr = acc, m, float(lr)
        self.U_k, self.U_tr_pt = float(U_test_k), float(U_test_tr)
        S = acc.S[:m]
        s = acc.s
        Cs, Hs = acc.hvp_test(s), acc.hvp_local(s)
        CS = torch.stack([acc.hvp_test(S[j]) for j in range(m)])
        HS = torch.stack([acc.hvp_local(S[j]) for j in range(m)])
        f64 = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
        self.G, self.K, self.P = f64(S @ CS.T), f64(S @ HS.T), f64(S @ S.T)
        self.G = 0.5 * (self.G + self.G.T)  # symmetric up to rounding
        self.K = 0.5 * (self.K + self.K.T)
        self.gS, self.CsS = f64(S @ g.to(S)), f64(S @ Cs)
        self.grS, self.HsS, self.sS = f64(S @ g_tr.to(S)), f64(S @ Hs), f64(S @ s)
        self.sCs, self.sHs, self.ss = float(s @ Cs), float(s @ Hs), float(s @ s)
        self.gs, self.grs = float(g.to(s) @ s), float(g_tr.to(s) @ s)
        self.n = acc.counts[:m].astype(float)
        self.sums = {k: v[:m] for k, v in acc.sums.items()}

    def mean_offset(self, mask: np.ndarray) -> torch.Tensor:
        """d̄ over the batches in `mask` (μ = θ_test + d̄)."""
        w = torch.as_tensor(mask, dtype=self.acc.S.dtype, device=self.acc.S.device)
        return (w @ self.acc.S[: self.m]) / float(self.n[mask].sum())

    def terms(self, mask: np.ndarray) -> dict[str, float]:
        N = float(self.n[mask].sum())
        quad = lambda A: float(A[np.ix_(mask, mask)].sum()) / N**2  # noqa: E731
        lin = lambda v: float(v[mask].sum()) / N  # noqa: E731
        mean = {k: float(v[mask].sum()) / N for k, v in self.sums.items()}
        dCd, dHd, dd = quad(self.G), quad(self.K), quad(self.P)
        Csd, Hsd, gd, grd, sd = (lin(v) for v in (self.CsS, self.HsS, self.gS, self.grS,
                                                  self.sS))
        cov = N / (N - 1) * (mean["q"] - 0.5 * dCd)
        eHe = dHd + 2 * Hsd + self.sHs  # ēᵀHē, ē = d̄ + s
        local_cov = N / (N - 1) * (mean["r"] - 0.5 * eHe)
        out = {
            "shift_bias_term": 0.5 * dCd,
            "shift_term": 0.5 * self.sCs,
            "cross_term": -Csd - self.sCs,
            "bias_term": 0.5 * dCd + Csd + 0.5 * self.sCs,
            "cov_term": cov,
            "first_order": gd,
            "local_cov_term": local_cov,
            "local_bias_term": 0.5 * eHe,
            "local_first_order": grd + self.grs,
            "bias_norm": math.sqrt(max(dd + 2 * sd + self.ss, 0.0)),
        }
        out["prediction_no_first_order"] = self.U_k + cov + out["shift_bias_term"]
        out["prediction"] = out["prediction_no_first_order"] + gd
        out["local_prediction"] = self.U_tr_pt + out["local_first_order"] + local_cov + 0.5 * eHe
        eq3 = self.U_k - self.gs + 0.5 * self.sCs  # Eq. 3 with its first-order term at θ_tr
        out["excess_prediction"] = out["prediction"] - eq3
        out["local_excess_prediction"] = out["local_prediction"] - self.U_tr_pt
        if "test_loss" in mean:
            out["mean_test_loss"] = mean["test_loss"]
            out["excess"] = mean["test_loss"] - self.U_tr_pt
            out["residual"] = mean["test_loss"] - out["prediction"]
            out["local_residual"] = mean["test_loss"] - out["local_prediction"]
        if "train_loss" in mean:
            out["mean_train_loss"] = mean["train_loss"]
        if "fdr_lhs" in mean and "grad_sq" in mean:
            out["fdr_lhs"] = mean["fdr_lhs"]
            out["fdr_rhs"] = 0.5 * self.lr * mean["grad_sq"]
        return out

    def estimate(self, at_mean: Callable[[torch.Tensor], tuple[float, float]] | None = None
                 ) -> dict[str, float]:
        """{term: value, term_se: jackknife standard error} over all finished batches; with
        `at_mean(μ) -> (U_test(μ), U_tr(μ))` also the split of the excess at μ (M + 1 calls)."""
        m = self.m
        if m < 2:
            raise ValueError(f"the jackknife needs at least 2 finished batches, have {m}")
        full = np.ones(m, bool)

        def with_mean(mask):
            t = self.terms(mask)
            if at_mean is not None:
                Ut, Utr = at_mean(self.acc.theta_test + self.mean_offset(mask))
                t["excess_bias"] = Ut - self.U_tr_pt
                if "mean_test_loss" in t:
                    t["excess_cov"] = t["mean_test_loss"] - Ut
                t["train_loss_at_mean"] = Utr
            return t

        est = with_mean(full)
        loo = []
        for j in range(m):
            mask = full.copy()
            mask[j] = False
            loo.append(with_mean(mask))
        out = dict(est)
        for k in est:
            vals = np.array([t[k] for t in loo])
            out[f"{k}_se"] = float(math.sqrt((m - 1) / m * ((vals - vals.mean()) ** 2).sum()))
        return out

    def split_half_drift(self) -> float:
        """½ΔμᵀCΔμ between the first and second half of the batches, over ½Tr(ΣC): near 0 at
        steady state (of order 4/N_eff from noise alone), ≳ 1 when the chain drifted."""
        m = self.m
        a = np.arange(m) < m // 2
        b = ~a
        na, nb = self.n[a].sum(), self.n[b].sum()
        w = np.where(a, 1 / na, -1 / nb)
        drift = 0.5 * float(w @ self.G @ w)
        cov = self.terms(np.ones(m, bool))["cov_term"]
        return drift / cov if cov > 0 else math.inf
