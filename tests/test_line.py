"""Line measures against exact answers (quadratics, asymmetric curves)."""

import math

import numpy as np
import pytest
import torch

from shiftcurv.landscape.line import (
    first_order_fit,
    line_grid,
    reflected_branch,
    shift_curvature_measures,
    symmetrized_fit,
)


def closed_form_c(x, y):
    """The one-parameter least squares of y ≈ ½·c·x², written out: c = 2Σx²y/Σx⁴."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return 2 * np.sum(x**2 * y) / np.sum(x**4)


def hyperbolic(x):
    """√(1+x²) − 1: curvature 1 at 0, flattening away from it (not quadratic at any scale)."""
    return np.sqrt(1 + x**2) - 1


def test_grid_holds_both_minima_exactly():
    u = line_grid(margin=0.5, points_per_unit=10)
    assert u[0] == -0.5 and u[-1] == 1.5
    assert 0.0 in u and 1.0 in u
    assert np.allclose(np.diff(u), 0.1)


def test_grid_covers_a_margin_between_its_points():
    """margin 0.5 at 5 points per unit: 2.5 steps, rounded up (round() would give 2 and leave
    a fit window of 0.5 uncovered)."""
    u = line_grid(margin=0.5, points_per_unit=5)
    assert u[0] == -0.6 and u[-1] == 1.6
    assert line_grid(margin=1.0, points_per_unit=20)[0] == -1.0  # exact margins unchanged


def test_fit_recovers_curvature_of_a_quadratic_exactly():
    r = np.linspace(-2, 3, 51)
    U = 0.7 + 0.5 * 3.2 * (r - 1.0) ** 2
    fit = symmetrized_fit(r, U, 1.0, side="below")
    assert fit.c == pytest.approx(3.2, rel=1e-12)
    assert fit.U_k == pytest.approx(0.7)
    assert fit.rms_residual < 1e-12 and fit.r2 == pytest.approx(1.0)


def test_fit_uses_the_branch_toward_the_other_minimum():
    # asymmetric: curvature 4 left of r_k=1, curvature 1 right of it
    r = np.linspace(-1, 3, 81)
    U = np.where(r < 1, 0.5 * 4 * (r - 1) ** 2, 0.5 * 1 * (r - 1) ** 2)
    assert symmetrized_fit(r, U, 1.0, "below").c == pytest.approx(4.0)
    assert symmetrized_fit(r, U, 1.0, "above").c == pytest.approx(1.0)
    rr, UU = reflected_branch(r, U, 1.0, "below")
    assert np.allclose(UU, 0.5 * 4 * (rr - 1) ** 2)  # the mirror image follows the left side


def test_measures_on_quadratic_losses_are_exact():
    # train loss: min at θ_tr (r=0) with curvature 2 on the far side, 9 on the near side;
    # test loss: min at θ_test (r=|s|) with curvature 3 toward θ_tr, 0.5 beyond
    s = 0.8
    u = line_grid(1.0, 40)
    r = u * s
    train = 0.1 + np.where(r <= 0, 0.5 * 2 * r**2, 0.5 * 9 * r**2)
    test = 0.25 + np.where(r <= s, 0.5 * 3 * (r - s) ** 2, 0.5 * 0.5 * (r - s) ** 2)
    m = shift_curvature_measures(u, train, test, s)
    assert m["c_train"] == pytest.approx(2.0)
    assert m["c_test"] == pytest.approx(3.0)
    assert m["shift_curvature"] == pytest.approx(3.0 * s**2)
    assert m["U_tr_min"] == pytest.approx(0.1) and m["U_test_min"] == pytest.approx(0.25)
    # Eq. 3 is exact for a quadratic test loss
    assert m["test_loss_at_train_min"] == pytest.approx(0.25 + 0.5 * 3 * s**2)
    assert m["taylor_prediction"] == pytest.approx(m["test_loss_at_train_min"])
    assert abs(m["taylor_relative_error"]) < 1e-12


def test_taylor_error_is_reported_when_the_loss_is_not_quadratic():
    s = 1.0
    u = line_grid(1.0, 20)
    r = u * s
    test = np.cosh(r - s)  # curvature 1 at the vertex, quartic terms beyond
    m = shift_curvature_measures(u, 0.5 * r**2, test, s)
    assert m["taylor_relative_error"] != 0 and math.isfinite(m["taylor_relative_error"])
    assert m["c_test"] > 1.0  # the fit sees the whole branch, wider than the vertex


def test_hvp_directional_curvature_of_a_quadratic_is_exact(quadratic):
    d = torch.randn(6, dtype=torch.float64)
    exact = float(d @ quadratic.A @ d / (d @ d))
    got = float(d @ quadratic.hvp(None, d) / (d @ d))
    assert got == pytest.approx(exact, rel=1e-14)


@pytest.mark.parametrize("margin", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_c_test_is_fitted_from_theta_test_to_theta_tr_whatever_the_margin(margin):
    """The bug this guards: the test fit once ran over every u ≤ 1, i.e. through θ_tr and on to
    u = −margin, so c_test moved with the plotting margin (0.675 / 0.60 / 0.54 / 0.45 at margin
    0 / 0.25 / 0.5 / 1 on this profile)."""
    s = 2.0
    u = line_grid(margin, 20)
    r = u * s
    train = hyperbolic(r) * np.where(r > 0, 3.0, 1.0)  # asymmetric: steeper toward θ_test
    x = np.linspace(-s, 0, 21)  # exactly θ_test back to θ_tr, the grid's points
    exact = closed_form_c(x, hyperbolic(x))
    assert exact == pytest.approx(0.675, abs=5e-4)
    fit = symmetrized_fit(r, hyperbolic(r - s), s, "below", window=s)
    assert fit.c == pytest.approx(exact, rel=1e-12) and fit.window == pytest.approx((0, s))
    if margin < 1:  # the train window [−‖s‖, 0] needs margin ≥ 1 (validation says so)
        with pytest.raises(ValueError, match="fit window"):
            shift_curvature_measures(u, train, hyperbolic(r - s), s)
        return
    m = shift_curvature_measures(u, train, hyperbolic(r - s), s)
    assert m["c_test"] == pytest.approx(exact, rel=1e-12)
    # θ_tr away from θ_test over the same length: the gentle side of the asymmetric profile
    assert m["c_train"] == pytest.approx(exact, rel=1e-12)
    assert m["c_test_fit_points"] == m["c_train_fit_points"] == 21


def test_the_old_whole_branch_fit_differs_on_this_profile():
    """The same profile fitted over the whole branch (window None): what the margin used to
    leak in. Keeps the test above honest: the window matters here."""
    s, u = 2.0, line_grid(1.0, 20)
    r = u * s
    whole = symmetrized_fit(r, hyperbolic(r - s), s, "below").c
    windowed = symmetrized_fit(r, hyperbolic(r - s), s, "below", window=s).c
    assert whole == pytest.approx(0.45, abs=5e-3) and windowed == pytest.approx(0.675, abs=5e-4)


@pytest.mark.parametrize("w", [0.25, 0.5, 1.0])
def test_fit_window_is_its_own_setting(w):
    """w = 0.5: c_test over u ∈ [0.5, 1], c_train over u ∈ [−0.5, 0], each the closed form over
    exactly those points; asymmetric quartic-plus-quadratic profiles so that the window moves
    both numbers."""
    s = 1.5
    u = line_grid(1.0, 20)
    r = u * s

    def test_profile(x):
        return 0.5 * 2.0 * x**2 + 0.7 * x**4 + np.where(x > 0, 5 * x**2, 0)

    def train_profile(x):
        return 0.5 * 0.8 * x**2 + 0.3 * x**4 - np.where(x > 0, 0.2 * x**2, 0)

    m = shift_curvature_measures(u, train_profile(r), 0.1 + test_profile(r - s), s,
                                 fit_window=w)
    k = round(20 * w)
    x = np.arange(-k, 1) / 20 * s
    assert m["c_test"] == pytest.approx(closed_form_c(x, test_profile(x)), rel=1e-12)
    assert m["c_train"] == pytest.approx(closed_form_c(x, train_profile(x)), rel=1e-12)
    assert m["fit_window"] == w and m["c_test_fit_points"] == k + 1
    # and the margin does not move them
    u2 = line_grid(w, 20)
    m2 = shift_curvature_measures(u2, train_profile(u2 * s), 0.1 + test_profile(u2 * s - s), s,
                                  fit_window=w)
    assert m2["c_test"] == pytest.approx(m["c_test"], rel=1e-12)
    assert m2["c_train"] == pytest.approx(m["c_train"], rel=1e-12)


def test_a_grid_that_does_not_cover_the_window_is_refused():
    u = line_grid(0.5, 20)
    with pytest.raises(ValueError, match="fit window"):
        shift_curvature_measures(u, u**2, (u - 1) ** 2, 1.0, fit_window=1.0)


def test_reflected_branch_shows_exactly_the_fitted_points():
    s, u = 2.0, line_grid(1.0, 20)
    r = u * s
    rr, _ = reflected_branch(r, hyperbolic(r - s), s, "below", window=s)
    assert rr.min() == pytest.approx(0.0) and rr.max() == pytest.approx(2 * s)
    assert len(rr) == 2 * 21


def test_first_order_fit_recovers_the_curvature_beside_a_slope():
    """y = a·x + ½·c₀·x²: with the exact slope the fit is exact; the paper's one-parameter fit
    absorbs the slope: in closed form c = c₀ + 2a·Σx³/Σx⁴ (≈ c₀ − 2.5·a/L on [−L, 0]). The sign
    of θ_test's case: the test flow still descends toward θ_test, so g_testᵀs < 0."""
    a, c0 = -0.3, 1.7
    x = np.linspace(-2, 0, 41)
    y = a * x + 0.5 * c0 * x**2
    assert first_order_fit(x, y, 0.0, "below", a).c == pytest.approx(c0, rel=1e-12)
    paper = symmetrized_fit(x, y, 0.0, "below").c
    assert paper == pytest.approx(c0 + 2 * a * np.sum(x**3) / np.sum(x**4), rel=1e-12)
    assert paper == pytest.approx(c0 - 2.5 * a / 2, rel=0.02)  # a visible bias


def test_eq3_with_the_first_order_term_is_exact_when_the_losses_are_quadratic():
    """θ_test not stationary: U_test = U_k + a(r − ‖s‖) + ½c(r − ‖s‖)² with a = g_testᵀs/‖s‖;
    the first-order form predicts U_test(θ_tr) exactly, the paper's form does not; the same on
    the train side with U_tr = U_k + b·r + ½c_tr·r² predicting U_tr(θ_test)."""
    s = 1.2
    u = line_grid(1.0, 20)
    r = u * s
    gs_test, gs_train = -0.15, 0.04  # g_testᵀs, g_trᵀs
    test = 0.2 + gs_test / s * (r - s) + 0.5 * 2.5 * (r - s) ** 2
    train = 0.01 + gs_train / s * r + 0.5 * 0.6 * r**2
    m = shift_curvature_measures(u, train, test, s, 1.0, gs_train, gs_test)
    actual = 0.2 - gs_test + 0.5 * 2.5 * s**2
    assert m["test_loss_at_train_min"] == pytest.approx(actual)
    assert m["c_test_first_order"] == pytest.approx(2.5, rel=1e-12)
    assert m["taylor_prediction_first_order"] == pytest.approx(actual, rel=1e-12)
    assert abs(m["taylor_first_order_relative_error"]) < 1e-12
    assert abs(m["taylor_relative_error"]) > 0.01
    train_actual = 0.01 + gs_train + 0.5 * 0.6 * s**2
    assert m["train_loss_at_test_min"] == pytest.approx(train_actual)
    assert m["c_train_first_order"] == pytest.approx(0.6, rel=1e-12)
    assert m["train_taylor_prediction_first_order"] == pytest.approx(train_actual, rel=1e-12)
    assert m["first_order_test"] == gs_test and m["first_order_train"] == gs_train


def test_first_order_forms_are_nan_without_the_gradients():
    u = line_grid(1.0, 10)
    m = shift_curvature_measures(u, u**2, (u - 1) ** 2, 1.0)
    assert math.isnan(m["taylor_prediction_first_order"]) and math.isfinite(m["c_test"])
