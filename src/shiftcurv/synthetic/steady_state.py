"""The SGD steady state of a basin set (Eq. 5), exact on a θ grid, its integrals (basin
probabilities, expected train and test losses), and the Gaussian-mixture (Laplace)
approximations of it: basin weights (Eq. 6), covariance and bias (Eq. 25, Appendix B.2), and the
expected losses of Eq. 4 and Eq. 8.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from shiftcurv import ShiftcurvError
from shiftcurv.synthetic.basins import Basins, BasinSet, _newton_min

# --------------------------------------------------------------------------------------------
# The exact steady state (Eq. 5) and its integrals
# --------------------------------------------------------------------------------------------

def _trap_log_weights(theta: np.ndarray) -> np.ndarray:
    dx = np.diff(theta)
    w = np.zeros_like(theta)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return np.log(w)


def potential_on_grid(bs: BasinSet, theta: np.ndarray) -> np.ndarray:
    """F(θ) = ∫ U_tr'/D dθ on the grid (closed form where there is one, else cumulative
    Simpson), so that Eq. 5's effective potential is v(θ, T) = F(θ) + (T/2)·log D(θ)."""
    U, dU = bs.U_tr(theta, derivs=1)
    F = bs.noise.potential(U)
    if F is None:
        from scipy.integrate import cumulative_simpson

        D = bs.noise.D(theta, U)
        F = cumulative_simpson(dU / D, x=theta, initial=0.0)
    return F


def log_steady_state(bs: BasinSet, theta: np.ndarray, T) -> np.ndarray:
    """log ρ(θ) of Eq. 5 on the grid, normalised (trapezoid), for each T: shape (len(T), n).

    In 1-D, v(θ, T) = ∫ (U_tr'/D + (T/2)·D'/D) dθ = F(θ) + (T/2)·log D(θ), so
    ρ ∝ exp(−2v/T) = exp(−2F/T) / D. With constant D this is ρ ∝ exp(−2U_tr/(T·D)) (§3.1).
    Computed in log space: at small T, exp(−2U/T) underflows far from the deepest minimum.
    """
    T = np.atleast_1d(np.asarray(T, float))
    F = potential_on_grid(bs, theta)
    U = bs.U_tr(theta)
    logD = np.log(bs.noise.D(theta, U))
    if np.any(~np.isfinite(logD)):
        raise ShiftcurvError(f"basin set {bs.name}: noise D(θ) must be > 0 on the grid")
    lr = -2.0 * F[None, :] / T[:, None] - logD[None, :]
    lr -= logsumexp(lr + _trap_log_weights(theta)[None, :], axis=1, keepdims=True)
    return lr


def steady_state(bs: BasinSet, theta: np.ndarray, T) -> np.ndarray:
    """ρ(θ) of Eq. 5 on the grid, normalised; shape (len(T), n)."""
    return np.exp(log_steady_state(bs, theta, T))


def _segment_log_mass(theta, log_f, a: int, b: int) -> np.ndarray:
    """log ∫ exp(log_f) over theta[a..b] (trapezoid), for each row."""
    lw = _trap_log_weights(theta[a:b + 1])
    return logsumexp(log_f[..., a:b + 1] + lw, axis=-1)


def _log_mass_between(theta, log_f, lo: float, hi: float) -> np.ndarray:
    """log ∫_lo^hi exp(log_f) dθ for each row: trapezoid on the grid points inside, plus the two
    partial end segments (log_f interpolated linearly), so that the basins partition the mass
    exactly and a boundary between grid points converges as O(dx²)."""
    n = len(theta)
    i = int(np.searchsorted(theta, lo, side="left"))       # first grid point >= lo
    j = int(np.searchsorted(theta, hi, side="right")) - 1  # last grid point <= hi
    parts = []
    if i <= j:
        if j > i:
            parts.append(_segment_log_mass(theta, log_f, i, j))
        for edge, g, nb in ((lo, i, i - 1), (hi, j, j + 1)):   # nb: the point beyond the edge
            if 0 <= nb < n and edge != theta[g]:
                t = (edge - theta[g]) / (theta[nb] - theta[g])
                lf_e = (1 - t) * log_f[..., g] + t * log_f[..., nb]
                parts.append(np.log(abs(edge - theta[g]) / 2) + np.logaddexp(lf_e, log_f[..., g]))
    else:   # lo and hi inside one grid segment
        t0 = (lo - theta[j]) / (theta[i] - theta[j])
        t1 = (hi - theta[j]) / (theta[i] - theta[j])
        la = (1 - t0) * log_f[..., j] + t0 * log_f[..., i]
        lb = (1 - t1) * log_f[..., j] + t1 * log_f[..., i]
        parts.append(np.log((hi - lo) / 2) + np.logaddexp(la, lb))
    if not parts:
        return np.full(log_f.shape[:-1], -np.inf)
    return logsumexp(np.stack(parts), axis=0)


def basin_log_masses(theta, log_f, basins: Basins) -> np.ndarray:
    """log ∫_basin k exp(log_f) dθ: shape (rows, K)."""
    e = basins.theta_edges
    return np.stack([_log_mass_between(theta, log_f, e[k], e[k + 1]) for k in range(basins.K)],
                    axis=-1)


def basin_probabilities(theta, log_rho, basins: Basins) -> np.ndarray:
    """w_k(T) = ∫_basin k ρ dθ with ρ of Eq. 5 (the exact weights that Eq. 6 approximates):
    shape (len(T), K); the basins partition the grid."""
    return np.exp(basin_log_masses(theta, log_rho, basins))


def expected_loss(theta, rho, U) -> np.ndarray:
    """E_ρ[U] = ∫ ρ·U dθ (trapezoid) for each row of rho: the exact expected losses that Eq. 4
    and Eq. 8 approximate."""
    return np.trapezoid(rho * U[None, :], theta, axis=-1)


# --------------------------------------------------------------------------------------------
# The Gaussian-mixture (Laplace) approximation: Eq. 6, Eq. 4, Eq. 8
# --------------------------------------------------------------------------------------------

def local_minima(bs: BasinSet, theta, basins: Basins) -> dict:
    """The per-basin terms of Eq. 4 and Eq. 8: train and test local minima θ_k^tr, U_k^tr,
    C_k^tr, θ_k^test, U_k^test, C_k^test, and the shift s_k = θ_k^test − θ_k^tr (= −s when
    wscale = 0)."""
    t_tr = basins.theta_tr
    U_k, _, C_k = bs.U_tr(t_tr, derivs=2)
    lo, hi = basins.boundaries(theta)[:-1], basins.boundaries(theta)[1:]

    def f2(x):
        _, g, h = bs.U_test(x, derivs=2)
        return g, h

    t_te = _newton_min(f2, t_tr - bs.s, lo - bs.s, hi - bs.s)
    Ut_k, _, Ct_k = bs.U_test(t_te, derivs=2)
    return {"theta_tr": t_tr, "U_tr": U_k, "C_tr": C_k, "theta_test": t_te, "U_test": Ut_k,
            "C_test": Ct_k, "s": t_te - t_tr}


def laplace(bs: BasinSet, theta, basins: Basins, T, minima: dict | None = None) -> dict:
    """Eq. 6 and Appendix B.2 for each T (rows) and basin k (columns).

    μ_k: the minimum of the effective potential v(θ, T) in basin k (U_tr' + (T/2)·D' = 0 near
    θ_k^tr); v''(μ_k) = (U_tr'' + (T/2)·D'')/D at μ_k; basin log-mass
    log ∫ e^{−2v/T} ≈ −2v(μ_k)/T + ½·log(πT / v''(μ_k)); weights w_k (Eq. 6) = softmax of that;
    covariance Σ_k = T/(2 v''(μ_k)) (Eq. 25); bias b_k = θ_k^tr − μ_k.
    """
    T = np.atleast_1d(np.asarray(T, float))[:, None]
    mins = local_minima(bs, theta, basins) if minima is None else minima
    bnd = basins.boundaries(theta)
    lo = np.broadcast_to(bnd[:-1], (T.shape[0], basins.K))
    hi = np.broadcast_to(bnd[1:], (T.shape[0], basins.K))
    nz = bs.noise

    def derivs(x):
        U, dU, d2U = bs.U_tr(x, derivs=2)
        return U, dU, d2U, nz.D(x, U), nz.dD(x, U, dU), nz.d2D(x, U, dU, d2U)

    def f2(x):
        _, dU, d2U, _, dD, d2D = derivs(x)
        return dU + 0.5 * T * dD, d2U + 0.5 * T * d2D

    x0 = np.broadcast_to(mins["theta_tr"], lo.shape)
    mu = _newton_min(f2, x0, lo, hi)
    U, dU, d2U, D, dD, d2D = derivs(mu)
    v2 = (d2U + 0.5 * T * d2D) / D
    F = nz.potential(U)
    if F is None:   # the grid integral, continued to μ by a cubic spline of it
        from scipy.interpolate import CubicSpline

        F = CubicSpline(theta, potential_on_grid(bs, theta))(mu)
    v = F + 0.5 * T * np.log(D)
    ok = (v2 > 0) & (mu > lo) & (mu < hi)
    log_mass = np.where(ok, -2.0 * v / T + 0.5 * np.log(np.pi * T / np.where(ok, v2, 1.0)),
                        np.nan)
    w = np.exp(log_mass - logsumexp(log_mass, axis=1, keepdims=True))
    return {"mu": mu, "v": v, "v2": np.where(ok, v2, np.nan), "log_mass": log_mass, "w": w,
            "Sigma": np.where(ok, 0.5 * T / np.where(ok, v2, 1.0), np.nan),
            "b": mins["theta_tr"] - mu, "minima": mins}


def exact_log_masses(bs: BasinSet, theta, basins: Basins, T) -> np.ndarray:
    """log ∫_basin e^{−2v(θ,T)/T} dθ on the grid, with the same constant as `laplace`."""
    T = np.atleast_1d(np.asarray(T, float))
    F = potential_on_grid(bs, theta)
    logD = np.log(bs.noise.D(theta, bs.U_tr(theta)))
    lf = -2.0 * F[None, :] / T[:, None] - logD[None, :]
    return basin_log_masses(theta, lf, basins)


def expected_losses_approx(lap: dict) -> dict:
    """Gaussian-mixture expected losses.

    eq8:  E[U_test] ≈ Σ_k w_k (U_k^test + ½ C_k^test s_k²)   (Eq. 8; Eq. 7 without O(T))
          E[U_tr]   ≈ Σ_k w_k U_k^tr
    eq4:  E[U_test] ≈ Σ_k w_k (U_k^test + ½ Σ_k C_k^test + ½ C_k^test (s_k + b_k)²)   (Eq. 4)
          E[U_tr]   ≈ Σ_k w_k (U_k^tr + ½ Σ_k C_k^tr + ½ C_k^tr b_k²)
    with w_k from Eq. 6, Σ_k and b_k from Appendix B.2.
    """
    m, w, S, b = lap["minima"], lap["w"], lap["Sigma"], lap["b"]
    return {
        "test_eq8": np.sum(w * (m["U_test"] + 0.5 * m["C_test"] * m["s"] ** 2), axis=1),
        "train_eq8": np.sum(w * m["U_tr"], axis=1),
        "test_eq4": np.sum(w * (m["U_test"] + 0.5 * S * m["C_test"]
                                + 0.5 * m["C_test"] * (m["s"] + b) ** 2), axis=1),
        "train_eq4": np.sum(w * (m["U_tr"] + 0.5 * S * m["C_tr"] + 0.5 * m["C_tr"] * b**2),
                            axis=1),
    }

