"""Measures along the line between the train and test minima (paper Section 3, Fig. 1-3,
Appendix F).

With s = θ_test − θ_tr and Θ(r) = θ_tr + r·s/‖s‖, so that Θ(0) = θ_tr and Θ(‖s‖) = θ_test, losses
are evaluated on the normalised grid u = r/‖s‖ ∈ [−a, 1 + a].

Curvatures come from the *symmetrized quadratic fit* of Appendix F: the test loss on the branch
from θ_test toward θ_tr (u ∈ [0, 1]) is reflected about θ_test and fitted by
U_test_k + ½·c_test·(r − ‖s‖)²; the train loss on the branch from θ_tr away from θ_test
(u ∈ [−a, 0]) is reflected about θ_tr and fitted by U_tr_k + ½·c_tr·r². The vertex value is the
measured loss at the minimum (U_k), so each fit has one free parameter, c (the paper fits the
reflected curve minus its minimum to ½·c·x²). Then (Eq. 3, with θ̂ = θ_tr):

    shift-curvature   sᵀ C_test s = c_test · ‖s‖²
    Taylor check      U_test(θ_tr) ≈ U_test_k + ½ · sᵀ C_test s
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def line_grid(margin: float = 1.0, points_per_unit: int = 20) -> np.ndarray:
    """u from −margin to 1 + margin in steps of 1/points_per_unit, with 0 and 1 exactly on it."""
    k = int(points_per_unit)
    lo = round(margin * k)
    return np.arange(-lo, k + lo + 1) / k


@dataclass
class QuadraticFit:
    c: float  # fitted curvature
    U_k: float  # vertex value (the loss at the minimum)
    rms_residual: float  # root-mean-square residual of the fit over the branch
    r2: float  # coefficient of determination of ½·c·x² against U − U_k
    n_points: int


def symmetrized_fit(r: np.ndarray, U: np.ndarray, r_k: float, side: str) -> QuadraticFit:
    """Fit U(r) ≈ U_k + ½·c·(r − r_k)² on one branch of the curve, reflected about r_k.

    side="below" uses the points with r ≤ r_k, side="above" those with r ≥ r_k; reflecting them
    about r_k doubles the points symmetrically, which leaves the one-parameter least-squares c
    unchanged but is what the figure shows: c = 2·Σx²y / Σx⁴ with x = r − r_k, y = U − U_k."""
    r, U = np.asarray(r, float), np.asarray(U, float)
    k = int(np.argmin(np.abs(r - r_k)))
    if not math.isclose(r[k], r_k, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"the vertex r_k={r_k} must be a grid point")
    U_k = U[k]
    branch = r <= r_k if side == "below" else r >= r_k
    if side not in ("below", "above"):
        raise ValueError(f"side must be 'below' or 'above', got {side!r}")
    x = r[branch] - r_k
    x = np.concatenate([x, -x])  # the reflection
    y = np.concatenate([U[branch], U[branch]]) - U_k
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    denom = float(np.sum(x**4))
    if denom == 0 or len(x) < 2:
        return QuadraticFit(math.nan, float(U_k), math.nan, math.nan, int(len(x)))
    c = 2.0 * float(np.sum(x**2 * y)) / denom
    resid = y - 0.5 * c * x**2
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else math.nan
    return QuadraticFit(c, float(U_k), float(np.sqrt(np.mean(resid**2))), r2, int(len(x) // 2))


def reflected_branch(r: np.ndarray, U: np.ndarray, r_k: float, side: str):
    """The branch and its mirror image about r_k, as (r, U) arrays sorted by r (for figures)."""
    r, U = np.asarray(r, float), np.asarray(U, float)
    branch = r <= r_k if side == "below" else r >= r_k
    rr = np.concatenate([r[branch], 2 * r_k - r[branch]])
    order = np.argsort(rr)
    return rr[order], np.concatenate([U[branch], U[branch]])[order]


def shift_curvature_measures(u: np.ndarray, train_loss: np.ndarray, test_loss: np.ndarray,
                             shift_norm: float) -> dict:
    """The paper's scalar measures from the loss profiles along the line (Fig. 2/3, Eq. 3).

    `u` is the normalised grid (u=0 at θ_tr, u=1 at θ_test), the losses are plain (no L2)."""
    u = np.asarray(u, float)
    r = u * shift_norm
    test = symmetrized_fit(r, test_loss, shift_norm, side="below")  # θ_test toward θ_tr
    train = symmetrized_fit(r, train_loss, 0.0, side="below")  # θ_tr away from θ_test
    i0 = int(np.argmin(np.abs(u)))
    sCs = test.c * shift_norm**2
    taylor = test.U_k + 0.5 * sCs
    actual = float(test_loss[i0])
    return {
        "shift_norm": float(shift_norm),
        "c_train": train.c, "c_test": test.c,
        "c_train_rms_residual": train.rms_residual, "c_test_rms_residual": test.rms_residual,
        "c_train_r2": train.r2, "c_test_r2": test.r2,
        "U_tr_min": train.U_k, "U_test_min": test.U_k,
        "shift_curvature": sCs,
        "test_loss_at_train_min": actual,
        "taylor_prediction": taylor,
        "taylor_relative_error": (taylor - actual) / actual if actual != 0 else math.nan,
    }


def line_points(theta_tr, theta_test, u: np.ndarray):
    """Θ at each u: θ_tr + u·s (a generator, one flat vector at a time)."""
    s = theta_test - theta_tr
    for ui in u:
        yield theta_tr + float(ui) * s


def loss_profiles(objectives: dict, theta_tr, theta_test, u: np.ndarray) -> dict:
    """Loss and accuracy of each objective ({"train": obj, "test": obj}) along the line."""
    out = {}
    for name, obj in objectives.items():
        vals = [obj.loss_and_accuracy(theta) for theta in line_points(theta_tr, theta_test, u)]
        out[f"{name}_loss_line"] = np.array([v[0] for v in vals])
        out[f"{name}_acc_line"] = np.array([v[1] for v in vals])
    return out
