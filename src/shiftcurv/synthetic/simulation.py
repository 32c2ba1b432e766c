"""The SGD diffusion of Eq. 11, dθ = −U_tr'(θ) dt + sqrt(T·D(θ)) dW, simulated (Euler–Maruyama)
to check the steady state of Eq. 5: how long it takes to relax (mean first-passage times), which
temperatures can be simulated within a step budget, and the simulation itself.
"""

from __future__ import annotations

import math

import numpy as np

from shiftcurv.synthetic.basins import Basins, BasinSet
from shiftcurv.synthetic.steady_state import _segment_log_mass


def _log_cumtrap(theta, lf):
    """log of the cumulative trapezoid integral of exp(lf) from theta[0] (−inf at theta[0])."""
    seg = np.log(np.diff(theta) / 2) + np.logaddexp(lf[:-1], lf[1:])
    out = np.empty_like(lf)
    out[0] = -np.inf
    out[1:] = np.logaddexp.accumulate(seg)
    return out


def log_mean_first_passage(theta, log_rho, D, T: float, i0: int, i1: int) -> float:
    """log of the mean first-passage time of Eq. 11 from theta[i0] to theta[i1].

    1-D formula for dθ = a dt + sqrt(T·D) dW with steady state ρ, reflecting at the grid end
    behind the start: τ = ∫_{θ0}^{θ1} 2·P(y) / (T·D(y)·ρ(y)) dy, P(y) = ρ's mass behind y.
    In log space: across a barrier τ ~ exp(2ΔU/T) overflows long before it matters.
    """
    if i0 > i1:   # mirror
        return log_mean_first_passage(-theta[::-1], log_rho[::-1], D[::-1], T,
                                      len(theta) - 1 - i0, len(theta) - 1 - i1)
    if i0 == i1:
        return -np.inf
    lP = _log_cumtrap(theta, log_rho)
    lf = math.log(2.0) + lP - np.log(T * D) - log_rho
    return float(_segment_log_mass(theta, lf, i0, i1))


def relaxation_time(bs: BasinSet, theta, log_rho, basins: Basins, T,
                    end_mass_tol: float = 1e-3) -> np.ndarray:
    """An estimate of how long Eq. 11 takes, from walkers at the basin minima, to reach the
    steady state, per T.

    For each pair of neighbouring basins a, b the two-state relaxation time
    1/(1/τ_{a→b} + 1/τ_{b→a}) from the mean first-passage times between their minima; for each
    grid end whose outer region (U_tr above halfway from the nearest minimum to the end value)
    holds more than `end_mass_tol` of ρ, the first-passage time from the end to that minimum
    (the plateau filling by diffusion); and at least 1/min_k(C_k·D) (relaxation inside a basin).
    The largest of these; +inf where it overflows (e^{2ΔU/T} at small T: there SGD never mixes
    between basins within any practical time).
    """
    T = np.atleast_1d(np.asarray(T, float))
    U_k, _, C = bs.U_tr(basins.theta_tr, derivs=2)
    inner = float(np.max(1.0 / np.maximum(C * bs.noise.D(basins.theta_tr, U_k), 1e-300)))
    idx = np.clip(np.searchsorted(theta, basins.theta_tr), 0, len(theta) - 1)
    U = bs.U_tr(theta)
    D = bs.noise.D(theta, U)
    n = len(theta)
    ends = []
    for end, k in ((0, 0), (n - 1, basins.K - 1)):
        sl = slice(0, idx[k] + 1) if end == 0 else slice(idx[k], n)
        half = U_k[k] + 0.5 * (U[end] - U_k[k])
        region = np.zeros(n, bool)
        region[sl] = U[sl] > half
        if U[end] > U_k[k] and region.any():
            ends.append((end, idx[k], region))
    out = np.full(T.shape, inner)
    for j, t in enumerate(T):
        worst = math.log(inner)
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            lab = log_mean_first_passage(theta, log_rho[j], D, t, a, b)
            lba = log_mean_first_passage(theta, log_rho[j], D, t, b, a)
            worst = max(worst, -float(np.logaddexp(-lab, -lba)))
        for end, i_min, region in ends:
            p_end = np.trapezoid(np.exp(log_rho[j]) * region, theta)
            if p_end > end_mass_tol:
                worst = max(worst, log_mean_first_passage(theta, log_rho[j], D, t, end, i_min))
        out[j] = math.exp(worst) if worst < 700 else math.inf
    return out


def _U_dU_fast(bs: BasinSet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U_tr and U_tr' for the simulation's inner loop: direct sums, ~20x faster than the
    log-space `mixture_loss` (safe when c > 0: the denominator never underflows)."""
    if bs.c <= 0:
        return bs.U_tr(x, derivs=1)
    num = 0.0
    den = bs.c
    for m, w, sg in zip(bs.minima, bs.weights, bs.sigmas, strict=True):
        z = (x - m) * (1.0 / sg)
        p = (w / (sg * math.sqrt(2 * math.pi))) * np.exp(-0.5 * z * z)
        den = den + p
        num = num + p * (z / sg)
    return -bs.lscale * np.log(den), bs.lscale * num / den


def max_curvature(bs: BasinSet, theta) -> float:
    """max_θ U_tr''(θ): the stiffest drift rate of Eq. 11, which bounds the Euler–Maruyama step."""
    _, _, C = bs.U_tr(theta, derivs=2)
    return float(np.max(np.maximum(C, 0.0)))


def simulate_sgd_diffusion(bs: BasinSet, T, theta, basins: Basins, *, walkers: int, dt: float,
                           n_steps: int, n_burn: int, snapshots: int, bins: int,
                           rng: np.random.Generator, start: str | int = "minima") -> dict:
    """Euler–Maruyama for Eq. 11, dθ = −U_tr'(θ) dt + sqrt(T·D(θ)) dW, all T at once.

    `walkers` independent walkers per T (vectorised: state shape (len(T), walkers)), reflected at
    the grid ends (where ρ of Eq. 5 is defined: zero flux there). They start far from the steady
    state on purpose: `start="minima"` puts equal numbers at each basin minimum (occupation 1/K
    each), an integer k puts them all at basin k's minimum, `"uniform"` spreads them over the
    grid. After `n_burn` steps, `snapshots` snapshots are
    taken evenly over the remaining steps and averaged: basin occupations, a density histogram on
    `bins` bins, and the mean train/test loss.
    """
    T = np.atleast_1d(np.asarray(T, float))
    lo, hi = float(theta[0]), float(theta[-1])
    K = basins.K
    if isinstance(start, (int, np.integer)):
        x = np.full((len(T), walkers), basins.theta_tr[start])
    elif start == "minima":
        x = np.tile(np.resize(basins.theta_tr, walkers), (len(T), 1))
    elif start == "uniform":
        x = rng.uniform(lo, hi, size=(len(T), walkers))
    else:
        raise ValueError(f"start must be 'minima', 'uniform' or a basin index, got {start!r}")
    amp = np.sqrt(T * dt)[:, None]
    variable = not bs.noise.is_constant
    sqD = math.sqrt(bs.noise.D0) if not variable else None
    inner = basins.boundaries(theta)[1:-1]
    edges = np.linspace(lo, hi, bins + 1)
    occ = np.zeros((len(T), K))
    hist = np.zeros((len(T), bins))
    Utr = np.zeros(len(T))
    Ute = np.zeros(len(T))
    n_sample = max(n_steps - n_burn, 1)
    take = set(n_burn + np.round(np.linspace(n_sample / snapshots, n_sample,
                                             snapshots)).astype(int) - 1)
    rows = np.arange(len(T))[:, None]
    for step in range(n_steps):
        U, dU = _U_dU_fast(bs, x)
        noise_amp = amp * np.sqrt(bs.noise.D(x, U)) if variable else amp * sqD
        x = x - dU * dt + noise_amp * rng.standard_normal(x.shape)
        # reflect at the ends (a step never crosses the range twice: dt is small)
        x = np.where(x < lo, 2 * lo - x, x)
        x = np.where(x > hi, 2 * hi - x, x)
        np.clip(x, lo, hi, out=x)
        if step in take:
            k = np.searchsorted(inner, x)
            occ += np.bincount((rows * K + k).ravel(), minlength=len(T) * K).reshape(len(T), K)
            j = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
            hist += np.bincount((rows * bins + j).ravel(),
                                minlength=len(T) * bins).reshape(len(T), bins)
            Utr += bs.U_tr(x).mean(axis=1)
            Ute += bs.U_test(x).mean(axis=1)
    n_snap = len(take)
    occ /= n_snap * walkers
    return {"occupation": occ,
            # conservative: the binomial error of one snapshot (averaging snapshots only helps)
            "occupation_se": np.sqrt(occ * (1 - occ) / walkers),
            "density": hist / (n_snap * walkers * np.diff(edges)),
            "bin_edges": edges, "train_loss": Utr / n_snap, "test_loss": Ute / n_snap,
            "dt": dt, "n_steps": n_steps, "n_burn": n_burn}


def simulation_plan(tau: np.ndarray, c_max: float, sim: dict) -> tuple[np.ndarray, float, int,
                                                                        int]:
    """Which temperatures the simulation can equilibrate within `max_steps`, and the run length.

    dt = dt_factor / max U_tr''. Euler–Maruyama's stationary variance in a basin of curvature C
    is too large by 1/(1 − C·dt/2), so a basin's weight (∝ its standard deviation) is too large
    by at most dt_factor/4 relative (1.25 % at the default 0.05). A temperature can be simulated
    when (burn_in + sample) relaxation times fit in max_steps; at most max_temperatures of those
    are, spread over the feasible range.
    """
    dt = sim["dt_factor"] / max(c_max, 1e-12)
    need = (sim["burn_in"] + sim["sample"]) * tau / dt
    chosen = np.isfinite(need) & (need <= sim["max_steps"])
    idx = np.flatnonzero(chosen)
    if idx.size > sim["max_temperatures"]:   # spread the simulated ones over the feasible range
        keep = idx[np.unique(np.round(np.linspace(0, idx.size - 1, sim["max_temperatures"]))
                             .astype(int))]
        chosen = np.zeros_like(chosen)
        chosen[keep] = True
    if not chosen.any():
        return chosen, dt, 0, 0
    tmax = float(np.max(tau[chosen]))
    n_steps = int(math.ceil((sim["burn_in"] + sim["sample"]) * tmax / dt))
    n_burn = int(math.ceil(sim["burn_in"] * tmax / dt))
    return chosen, dt, max(n_steps, n_burn + 1), n_burn

