"""Reparametrization invariance (paper Appendix C; Dinh et al. 2017), shown on a trained MLP.

θ ↦ Aθ, A diagonal (α on layer 1's weights and bias, 1/α on layer 2's weights), leaves a ReLU
network's function unchanged for every θ: U(Aθ) = U(θ). Differentiating that identity,
∇U(Aθ) = A⁻¹∇U(θ) (minima map to minima) and ∇²U(Aθ) = A⁻¹∇²U(θ)A⁻¹, so raw eigenvalues move
by up to α², while with the shift mapped by the same A, s ↦ As,
(As)ᵀ∇²U(Aθ)(As) = sᵀA A⁻¹∇²U(θ)A⁻¹ A s = sᵀ∇²U(θ)s exactly (A is linear, so the paper's
O(s²) remainder vanishes). The L2 term (α_L2/2)‖θ‖² is not a function of the network's function
and is not invariant: `test_l2_is_what_breaks_invariance` shows the exact discrepancy. The
objectives here are L2-free (l2 = 0), as the paper's evaluated losses are.
"""

import copy

import pytest
import torch

from shiftcurv import ShiftcurvError, data, models
from shiftcurv.landscape import eigen, hessian, line, reparametrization
from shiftcurv.landscape import filter_normalised as landscape
from shiftcurv.landscape.objective import Objective

PAIR = (1, 3)  # the first two Linear layers of models.mlp: Flatten, Linear, ReLU, Linear, ...


def _descend(obj, theta, steps=400, lr=0.2):
    """Full-batch gradient descent (step below 2/λ_max here): a nearby minimum."""
    for _ in range(steps):
        _, g = obj.value_and_grad(theta)
        theta = theta - lr * g
    return theta


@pytest.fixture(scope="module")
def run():
    torch.manual_seed(0)
    ds = data.build("gaussian-teacher", seed=0)
    x, y = ds.tensors("train", dtype=torch.float64)
    xt, yt = ds.tensors("test", dtype=torch.float64)
    model = models.build({"type": "mlp", "widths": [16, 16]}, ds.in_shape, ds.n_classes).double()
    train, test = Objective(model, x, y), Objective(model, xt, yt)
    theta = train.theta_of()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # brief SGD (B = 32, η = 0.1): the "SGD solution"
        perm = torch.randperm(train.n, generator=g)
        for i in range(0, train.n, 32):
            batch = perm[i:i + 32]
            theta = theta - 0.1 * Objective(model, x[batch], y[batch]).value_and_grad(theta)[1]
    theta_tr = _descend(train, theta)
    theta_test = _descend(test, theta)
    assert train.value_and_grad(theta_tr)[1].norm() < 0.1  # near a minimum, as measured
    return model, train, test, theta_tr, theta_test


def _shift_curvature(obj, theta, s):
    """sᵀ∇²U(θ)s, exactly, by one HVP."""
    op = hessian.HessianOperator(obj, theta)
    return float(s.dot(op(s)))


@pytest.mark.parametrize("alpha", [10.0, 0.1])
def test_function_is_unchanged(run, alpha):
    model, train, test, theta_tr, _ = run
    m = copy.deepcopy(model)
    m.load_state_dict(train.state_dict(theta_tr))
    scaled = reparametrization.alpha_scale(m, PAIR, alpha)
    for x in (train.x, test.x):
        torch.testing.assert_close(scaled(x), m(x), rtol=1e-12, atol=1e-12)
    # the flat form is the same map
    torch.testing.assert_close(
        reparametrization.alpha_scale(theta_tr, PAIR, alpha, objective=train),
        train.theta_of(scaled), rtol=0, atol=0)


@pytest.mark.parametrize("alpha", [10.0, 0.1])
def test_raw_curvature_is_not_invariant(run, alpha):
    _, _, test, _, theta_test = run
    A = reparametrization.alpha_scale_diagonal(test, PAIR, alpha)
    before = eigen.lambda_max(hessian.HessianOperator(test, theta_test)).eigenvalues[0]
    after = eigen.lambda_max(hessian.HessianOperator(test, A * theta_test)).eigenvalues[0]
    # same function, same minimum: λ_max grows by more than an order of magnitude either way
    # (the block scaled by 1/α has its curvature multiplied by α²)
    assert after > 10 * before


@pytest.mark.parametrize("alpha", [10.0, 0.1])
def test_shift_curvature_and_losses_are_invariant(run, alpha):
    _, train, test, theta_tr, theta_test = run
    A = reparametrization.alpha_scale_diagonal(test, PAIR, alpha)
    s = theta_test - theta_tr
    tr_a, test_a = A * theta_tr, A * theta_test
    s_a = test_a - tr_a
    torch.testing.assert_close(s_a, A * s, rtol=1e-14, atol=1e-14)  # the shift maps by A

    # U_test_k = U_test(θ_test), U_test(θ_tr), U_tr_k: the same numbers in both coordinates
    for obj, th, th_a in ((test, theta_test, test_a), (test, theta_tr, tr_a),
                          (train, theta_tr, tr_a)):
        assert obj.loss_and_accuracy(th_a)[0] == pytest.approx(obj.loss_and_accuracy(th)[0],
                                                                rel=1e-12)
    # minima map to minima: ∇U(Aθ) = A⁻¹∇U(θ)
    torch.testing.assert_close(test.value_and_grad(test_a)[1],
                               test.value_and_grad(theta_test)[1] / A, rtol=1e-10, atol=1e-13)

    # shift-curvature sᵀ C_test s with C_test measured in the new coordinates: invariant
    sCs = _shift_curvature(test, theta_test, s)
    sCs_a = _shift_curvature(test, test_a, s_a)
    assert sCs > 0
    assert sCs_a == pytest.approx(sCs, rel=1e-10)
    # ... and so is the Taylor prediction U_test(θ_tr) ≈ U_test_k + ½ sᵀC s (paper Eq. 3)
    u_k = test.loss_and_accuracy(theta_test)[0]
    assert test.loss_and_accuracy(test_a)[0] + 0.5 * sCs_a == pytest.approx(u_k + 0.5 * sCs,
                                                                             rel=1e-10)
    # whereas curvature per unit length along s, c_test = sᵀCs/‖s‖², is not: ‖As‖ ≠ ‖s‖
    c, c_a = sCs / float(s.dot(s)), sCs_a / float(s_a.dot(s_a))
    assert abs(c_a / c - 1) > 0.1

    # the whole profile along Θ(u) = θ_tr + u·s is the same function of u = r/‖s‖, so the
    # symmetrized quadratic fits (in units of ‖s‖) give the same c·‖s‖² too
    for u in (-0.3, 0.25, 0.5, 1.0, 1.3):
        for obj in (train, test):
            a = obj.loss_and_accuracy(tr_a + u * s_a)[0]
            assert a == pytest.approx(obj.loss_and_accuracy(theta_tr + u * s)[0], rel=1e-12)


@pytest.mark.parametrize("alpha", [10.0, 0.1])
def test_pipeline_line_measures_are_invariant(run, alpha):
    """The measure step's own functions (shiftcurv.landscape.line: profiles on u = r/‖s‖,
    symmetrized fits) give the same shift-curvature, U_test_k, U_test(θ_tr) and Taylor prediction
    in the α-scaled coordinates; c_test alone (curvature per unit parameter length) changes."""
    _, train, test, theta_tr, theta_test = run
    A = reparametrization.alpha_scale_diagonal(test, PAIR, alpha)
    u = line.line_grid(margin=0.5, points_per_unit=5)
    objectives = {"train": train, "test": test}
    out = []
    for tr, te in ((theta_tr, theta_test), (A * theta_tr, A * theta_test)):
        prof = line.loss_profiles(objectives, tr, te, u)
        out.append(line.shift_curvature_measures(u, prof["train_loss_line"],
                                                 prof["test_loss_line"], float((te - tr).norm()),
                                                 fit_window=0.5))
    before, after = out
    for key in ("shift_curvature", "U_test_min", "U_tr_min", "test_loss_at_train_min",
                "taylor_prediction", "taylor_relative_error"):
        assert after[key] == pytest.approx(before[key], rel=1e-10), key
    assert abs(after["c_test"] / before["c_test"] - 1) > 0.1
    assert abs(after["shift_norm"] / before["shift_norm"] - 1) > 0.1


def test_hessian_transformation_law(run):
    _, _, test, _, theta_test = run
    A = reparametrization.alpha_scale_diagonal(test, PAIR, 10.0)
    v = torch.randn(test.dim, dtype=torch.float64)
    h_a = hessian.HessianOperator(test, A * theta_test)(v)
    h = hessian.HessianOperator(test, theta_test)(v / A) / A  # A⁻¹ H A⁻¹ v
    torch.testing.assert_close(h_a, h, rtol=1e-10, atol=1e-12)


def test_l2_is_what_breaks_invariance(run):
    """With U_λ = U + (λ/2)‖θ‖² the Hessian in new coordinates is A⁻¹HA⁻¹ + λI, not the
    pulled-back A⁻¹(H + λI)A⁻¹, so the shift-curvature moves by exactly λ(‖As‖² − ‖s‖²), and
    Aθ is no longer stationary: ∇U_λ(Aθ) − A⁻¹∇U_λ(θ) = λ(Aθ − A⁻¹θ)."""
    model, _, test, theta_tr, theta_test = run
    lam = 1e-2
    reg = Objective(model, test.x, test.y, l2=lam)
    A = reparametrization.alpha_scale_diagonal(reg, PAIR, 10.0)
    s = theta_test - theta_tr
    s_a = A * s
    diff = _shift_curvature(reg, A * theta_test, s_a) - _shift_curvature(reg, theta_test, s)
    expected = lam * float(s_a.dot(s_a) - s.dot(s))
    assert abs(expected) > 1e-3
    assert diff == pytest.approx(expected, rel=1e-9)
    g_a = reg.value_and_grad(A * theta_test)[1]
    g = reg.value_and_grad(theta_test)[1]
    torch.testing.assert_close(g_a - g / A, lam * (A * theta_test - theta_test / A),
                               rtol=1e-9, atol=1e-12)


def test_filter_normalised_landscape_is_invariant(run):
    # Li et al.'s normalisation makes the random direction scale with the filters: d ↦ Ad
    # (biases get d = 0), so θ' + a·d' = A(θ + a·d) and the 1-D landscape is unchanged
    _, _, test, _, theta_test = run
    A = reparametrization.alpha_scale_diagonal(test, PAIR, 10.0)
    one = landscape.landscape_1d(test, theta_test, steps=5, seed=3)
    two = landscape.landscape_1d(test, A * theta_test, steps=5, seed=3)
    torch.testing.assert_close(two["direction"], A * one["direction"], rtol=1e-12, atol=1e-14)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-10)


def test_alpha_scale_refuses_what_is_not_a_symmetry(run):
    model, train, _, theta_tr, _ = run
    with pytest.raises(ShiftcurvError, match="positive"):
        reparametrization.alpha_scale(model, PAIR, -1.0)
    with pytest.raises(ShiftcurvError, match="homogeneous"):  # a Linear in between
        reparametrization.alpha_scale(model, (1, 5), 2.0)
    bn = models.build({"type": "mlp", "widths": [4, 4], "batch_norm": True}, (8,), 3)
    with pytest.raises(ShiftcurvError, match="BatchNorm1d"):  # BN between: not a symmetry
        reparametrization.alpha_scale(bn, (1, 4), 2.0)
    with pytest.raises(ShiftcurvError, match="objective"):
        reparametrization.alpha_scale(theta_tr, PAIR, 2.0)
