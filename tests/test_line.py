"""Line measures against exact answers (quadratics, asymmetric curves)."""

import math

import numpy as np
import pytest
import torch

from shiftcurv.line import line_grid, reflected_branch, shift_curvature_measures, symmetrized_fit


def test_grid_holds_both_minima_exactly():
    u = line_grid(margin=0.5, points_per_unit=10)
    assert u[0] == -0.5 and u[-1] == 1.5
    assert 0.0 in u and 1.0 in u
    assert np.allclose(np.diff(u), 0.1)


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
