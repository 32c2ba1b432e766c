"""Measures along the line between the train and test minima (paper Section 3, Fig. 1-3,
Appendix F).

With s = θ_test − θ_tr and Θ(r) = θ_tr + r·s/‖s‖, so that Θ(0) = θ_tr and Θ(‖s‖) = θ_test, losses
are evaluated on the normalised grid u = r/‖s‖ ∈ [−a, 1 + a] (a = `margin`, the plotted range).

Curvatures come from the *symmetrized quadratic fit* of Appendix F over a fit window of w·‖s‖
(w = `fit_window`, default 1, independent of the plotted margin):
- test: the test loss on the branch from θ_test toward θ_tr, u ∈ [1 − w, 1] (with w = 1 exactly
  θ_test to θ_tr), reflected about θ_test and fitted by U_test_k + ½·c_test·(r − ‖s‖)²;
- train: the train loss on the branch from θ_tr away from θ_test over the same length,
  u ∈ [−w, 0], reflected about θ_tr and fitted by U_tr_k + ½·c_tr·r².
The vertex value is the measured loss at the minimum (U_k), so each fit has one free parameter:
c = 2·Σx²y / Σx⁴ with x = r − r_k, y = U − U_k over the window (the paper fits the reflected curve
minus its minimum to ½·c·x²). Then (Eq. 3, with θ̂ = θ_tr):

    shift-curvature   sᵀ C_test s = c_test · ‖s‖²
    Taylor check      U_test(θ_tr) ≈ U_test_k + ½ · sᵀ C_test s                   (the paper's form)

θ_test is the end of a finite flow, not a stationary point, so the expansion has a first-order
term: U_test(θ_tr) ≈ U_test_k − g_testᵀs + ½·c'_test·‖s‖², g_test = ∇U_test(θ_test). Its c' must
come from a fit that knows the slope: a one-parameter fit of ½·c·x² also absorbs the linear term
(for y = a·x + ½c₀x² on x ∈ [−L, 0], c = c₀ + 2a·Σx³/Σx⁴ ≈ c₀ − 2.5·a/L, i.e. the paper's
form already carries 1.25× the first-order term −a·L), so c' = 2·Σx²(y − a·x)/Σx⁴ with the
exact slope a = g_testᵀs/‖s‖ (`first_order_fit`). The same on the train side, at θ_test:
U_tr(θ_test) ≈ U_tr_k + g_trᵀs + ½·c'_tr·‖s‖².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def line_grid(margin: float = 1.0, points_per_unit: int = 20) -> np.ndarray:
    """u from −margin to 1 + margin in steps of 1/points_per_unit, with 0 and 1 exactly on it;
    a margin that is not a whole number of steps is rounded up, so the grid always covers it
    (and so a fit window ≤ margin)."""
    k = int(points_per_unit)
    lo = math.ceil(margin * k - 1e-9)
    return np.arange(-lo, k + lo + 1) / k


@dataclass
class QuadraticFit:
    c: float  # fitted curvature
    U_k: float  # vertex value (the loss at the minimum)
    rms_residual: float  # root-mean-square residual of the fit over the window
    r2: float  # coefficient of determination of the model against U − U_k
    n_points: int  # grid points in the window (the vertex included)
    window: tuple[float, float]  # the r-range fitted


def fit_window_mask(r: np.ndarray, r_k: float, side: str, window: float | None) -> np.ndarray:
    """The points of the branch on `side` of r_k ("below": r ≤ r_k, "above": r ≥ r_k) within
    `window` of it (None: the whole branch). The edges count as inside up to round-off."""
    if side not in ("below", "above"):
        raise ValueError(f"side must be 'below' or 'above', got {side!r}")
    x = (np.asarray(r, float) - r_k) * (1 if side == "above" else -1)  # distance along the side
    tol = 1e-9 * max(abs(r_k), float(np.max(np.abs(r))) if len(r) else 0.0, 1e-300)
    inside = x >= -tol
    if window is not None:
        inside &= x <= window + tol
    return inside


def _vertex(r: np.ndarray, U: np.ndarray, r_k: float) -> float:
    k = int(np.argmin(np.abs(r - r_k)))
    if not math.isclose(r[k], r_k, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"the vertex r_k={r_k} must be a grid point")
    return float(U[k])


def _check_covered(r: np.ndarray, r_k: float, side: str, window: float | None) -> None:
    if window is None:
        return
    far = r_k - window if side == "below" else r_k + window
    reach = np.min(r) if side == "below" else np.max(r)
    if (reach - far) * (1 if side == "below" else -1) > 1e-9 * max(abs(far), abs(r_k), 1.0):
        raise ValueError(f"the grid ends at r={reach:.6g}, inside the fit window that reaches "
                         f"r={far:.6g}: widen the grid (margin) or narrow the window")


def _one_parameter_fit(x: np.ndarray, y: np.ndarray, U_k: float, window) -> QuadraticFit:
    """Least squares of y ≈ ½·c·x²: c = 2·Σx²y/Σx⁴ (NaN without data)."""
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    denom = float(np.sum(x**4))
    if denom == 0 or len(x) < 2:
        return QuadraticFit(math.nan, U_k, math.nan, math.nan, int(len(x)), window)
    c = 2.0 * float(np.sum(x**2 * y)) / denom
    resid = y - 0.5 * c * x**2
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else math.nan
    return QuadraticFit(c, U_k, float(np.sqrt(np.mean(resid**2))), r2, int(len(x)), window)


def symmetrized_fit(r: np.ndarray, U: np.ndarray, r_k: float, side: str,
                    window: float | None = None) -> QuadraticFit:
    """Fit U(r) ≈ U_k + ½·c·(r − r_k)² on one branch of the curve, reflected about r_k (App. F).

    side="below" uses the points with r_k − window ≤ r ≤ r_k, side="above" those with
    r_k ≤ r ≤ r_k + window (window None: the whole branch). Reflecting them about r_k doubles
    the points symmetrically, which leaves the one-parameter least-squares c unchanged but is
    what the figure shows: c = 2·Σx²y / Σx⁴ with x = r − r_k, y = U − U_k. For y = x⁴ on
    x = −2, −1.5, …, 0: c = 2·76.40625/22.125; within a window of 1: 2·1.015625/1.0625.

    >>> r = np.linspace(-2, 0, 5)                 # x = -2, -1.5, -1, -0.5, 0 and y = x⁴
    >>> round(symmetrized_fit(r, r**4, 0.0, "below").c, 6)   # 2·Σx⁶/Σx⁴ = 2·76.40625/22.125
    6.90678
    >>> round(symmetrized_fit(r, r**4, 0.0, "below", window=1.0).c, 6)   # x = -1, -0.5, 0
    1.911765
    """
    return first_order_fit(r, U, r_k, side, 0.0, window)


def first_order_fit(r: np.ndarray, U: np.ndarray, r_k: float, side: str, slope: float,
                    window: float | None = None) -> QuadraticFit:
    """Fit U(r) ≈ U_k + slope·(r − r_k) + ½·c·(r − r_k)² over the same window as
    `symmetrized_fit`, with the exact slope dU/dr at r_k given (the first-order term of a
    vertex that is not stationary): c = 2·Σx²(y − slope·x)/Σx⁴. With slope = 0 it is the
    symmetrized fit. No reflection: the odd term has no mirror image."""
    r, U = np.asarray(r, float), np.asarray(U, float)
    U_k = _vertex(r, U, r_k)
    _check_covered(r, r_k, side, window)
    inside = fit_window_mask(r, r_k, side, window)
    x = r[inside] - r_k
    span = (float(r[inside].min()), float(r[inside].max()))
    return _one_parameter_fit(x, U[inside] - U_k - slope * x, U_k, span)


def reflected_branch(r: np.ndarray, U: np.ndarray, r_k: float, side: str,
                     window: float | None = None):
    """The fitted points (the branch within `window`) and their mirror image about r_k, as
    (r, U) arrays sorted by r (for figures)."""
    r, U = np.asarray(r, float), np.asarray(U, float)
    branch = fit_window_mask(r, r_k, side, window)
    rr = np.concatenate([r[branch], 2 * r_k - r[branch]])
    order = np.argsort(rr)
    return rr[order], np.concatenate([U[branch], U[branch]])[order]


def _relative_error(prediction: float, actual: float) -> float:
    return (prediction - actual) / actual if actual != 0 else math.nan


def shift_curvature_measures(u: np.ndarray, train_loss: np.ndarray, test_loss: np.ndarray,
                             shift_norm: float, fit_window: float = 1.0,
                             first_order_train: float = math.nan,
                             first_order_test: float = math.nan) -> dict:
    """The paper's scalar measures from the loss profiles along the line (Fig. 2/3, Eq. 3).

    `u` is the normalised grid (u=0 at θ_tr, u=1 at θ_test), the losses are plain (no L2),
    `fit_window` is w in units of ‖s‖ (test fit over u ∈ [1−w, 1], train fit over u ∈ [−w, 0]).
    first_order_train = g_trᵀs with g_tr = ∇U_tr(θ_tr), first_order_test = g_testᵀs with
    g_test = ∇U_test(θ_test) (exact gradients, plain loss): the first-order terms of the
    expansions about each minimum (NaN: not known, the first-order forms are NaN)."""
    u = np.asarray(u, float)
    if not fit_window > 0:
        raise ValueError(f"fit_window must be > 0, got {fit_window}")
    r = u * shift_norm
    w = fit_window * shift_norm
    test = symmetrized_fit(r, test_loss, shift_norm, "below", w)  # θ_test toward θ_tr
    train = symmetrized_fit(r, train_loss, 0.0, "below", w)  # θ_tr away from θ_test
    test_fo = first_order_fit(r, test_loss, shift_norm, "below",
                              first_order_test / shift_norm, w)
    train_fo = first_order_fit(r, train_loss, 0.0, "below", first_order_train / shift_norm, w)
    i0 = int(np.argmin(np.abs(u)))
    i1 = int(np.argmin(np.abs(u - 1)))
    sCs = test.c * shift_norm**2
    taylor = test.U_k + 0.5 * sCs
    taylor_fo = test.U_k - first_order_test + 0.5 * test_fo.c * shift_norm**2
    actual = float(test_loss[i0])
    train_actual = float(train_loss[i1])
    train_taylor = train.U_k + 0.5 * train.c * shift_norm**2
    train_taylor_fo = train.U_k + first_order_train + 0.5 * train_fo.c * shift_norm**2
    return {
        "shift_norm": float(shift_norm),
        "fit_window": float(fit_window),
        "c_train": train.c, "c_test": test.c,
        "c_train_rms_residual": train.rms_residual, "c_test_rms_residual": test.rms_residual,
        "c_train_r2": train.r2, "c_test_r2": test.r2,
        "c_train_fit_points": train.n_points, "c_test_fit_points": test.n_points,
        "U_tr_min": train.U_k, "U_test_min": test.U_k,
        "shift_curvature": sCs,
        "test_loss_at_train_min": actual,
        "taylor_prediction": taylor,
        "taylor_relative_error": _relative_error(taylor, actual),
        "first_order_test": float(first_order_test),
        "c_test_first_order": test_fo.c,
        "taylor_prediction_first_order": taylor_fo,
        "taylor_first_order_relative_error": _relative_error(taylor_fo, actual),
        "train_loss_at_test_min": train_actual,
        "train_taylor_prediction": train_taylor,
        "train_taylor_relative_error": _relative_error(train_taylor, train_actual),
        "first_order_train": float(first_order_train),
        "c_train_first_order": train_fo.c,
        "train_taylor_prediction_first_order": train_taylor_fo,
        "train_taylor_first_order_relative_error": _relative_error(train_taylor_fo,
                                                                   train_actual),
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
