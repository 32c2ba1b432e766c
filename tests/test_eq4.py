"""Eq. 4's estimators and the SGD chain against exact answers (../shared/notes/eq4-design.md,
"Exact-answer tests"): linear SGD on a quadratic with non-commuting noise (Σ by the discrete
Lyapunov equation), the streaming jackknife against two-pass centring, the mean (not the mode)
bias in 1-D by quadrature and in a cubic basin, reshuffling against sampling with replacement and
the fluctuation–dissipation relation on a real network chain, and resume."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from shiftcurv.eq4.chain import NetworkChain
from shiftcurv.eq4.sampling import SamplingSettings, run_chain
from shiftcurv.eq4.statistics import (
    Eq4Accumulator,
    Eq4Estimator,
    geweke_z,
    integrated_autocorrelation_time,
    trend_z,
)

P = 4


def spd(rng, p, lo, hi):
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    return q @ np.diag(np.linspace(lo, hi, p)) @ q.T


def quadratic_case(seed=0):
    """Train loss ½θᵀAθ (θ_tr = 0), gradient noise N(0, D) with D not commuting with A, test loss
    U_k + ½(θ − θ_test)ᵀC(θ − θ_test): Eq. 4 is exact here with the true Σ and b = 0."""
    rng = np.random.default_rng(seed)
    A, C = spd(rng, P, 0.5, 3.0), spd(rng, P, 0.2, 2.0)
    L = rng.normal(size=(P, P))
    D = L @ L.T
    assert np.abs(A @ D - D @ A).max() > 0.1  # non-commuting noise
    lr = 0.05
    F = np.eye(P) - lr * A
    Sigma = scipy.linalg.solve_discrete_lyapunov(F, lr**2 * D)
    theta_test = rng.normal(size=P)
    return dict(A=A, C=C, L=L, lr=lr, F=F, Sigma=Sigma, theta_test=theta_test, U_k=0.1)


def linear_sgd_samples(case, n, thin, rng):
    """n samples, `thin` steps apart, of θ' = θ − lr(Aθ + Lz), started from its steady state."""
    F, L, lr = case["F"], case["L"], case["lr"]
    theta = np.linalg.cholesky(case["Sigma"]) @ rng.normal(size=P)
    out = np.empty((n, P))
    for i in range(n):
        for _ in range(thin):
            theta = F @ theta - lr * L @ rng.normal(size=P)
        out[i] = theta
    return out


def accumulate(case, samples, batches, H=None):
    C = torch.tensor(case["C"])
    H = C if H is None else torch.tensor(H)
    acc = Eq4Accumulator(torch.tensor(case["theta_test"]), torch.zeros(P), lambda v: C @ v,
                         lambda v: H @ v, batches, len(samples) // batches)
    for th in samples:
        d = th - case["theta_test"]
        acc.add(torch.tensor(th), test_loss=case["U_k"] + 0.5 * d @ case["C"] @ d,
                train_loss=0.5 * th @ case["A"] @ th)
    return acc


def estimator(case, acc):
    g = torch.zeros(P, dtype=torch.float64)  # θ_test is the test minimum here
    tt = case["theta_test"]
    U_test_tr = case["U_k"] + 0.5 * tt @ case["C"] @ tt
    g_tr = torch.tensor(case["C"] @ (0 - tt))  # ∇U_test(θ_tr), θ_tr = 0
    return Eq4Estimator(acc, case["U_k"], U_test_tr, g, g_tr, case["lr"])


def test_covariance_term_matches_lyapunov_with_calibrated_standard_errors():
    case = quadratic_case()
    exact = 0.5 * np.trace(case["Sigma"] @ case["C"])
    rng = np.random.default_rng(1)
    z, zb = [], []
    for _ in range(40):
        est = estimator(case, accumulate(case, linear_sgd_samples(case, 400, 10, rng),
                                         20)).estimate()
        z.append((est["cov_term"] - exact) / est["cov_term_se"])
        zb.append(est["bias_norm"] / est["bias_norm_se"])
    z = np.array(z)
    assert abs(z.mean()) < 0.6, z.mean()  # 3 standard errors of a mean of 40 N(0, 1)
    assert 0.65 < z.std() < 1.4, z.std()
    assert np.median(zb) < 3  # b = 0 here: |b| is noise only


def test_eq4_is_exact_on_a_quadratic_test_loss():
    """With sample moments, Eq. 4 on a quadratic test loss equals the sample mean of U_test up to
    the N/(N−1) of the unbiased covariance, in both forms (H = C here)."""
    case = quadratic_case(3)
    samples = linear_sgd_samples(case, 200, 5, np.random.default_rng(2))
    est = estimator(case, accumulate(case, samples, 10)).estimate()
    N = len(samples)
    assert abs(est["residual"] + est["cov_term"] / N) < 1e-10
    assert abs(est["local_residual"] + est["local_cov_term"] / N) < 1e-10
    assert est["shift_term"] + est["cross_term"] + est["bias_term"] == \
        pytest.approx(est["shift_bias_term"], abs=1e-12)


def test_streaming_jackknife_equals_two_pass_centring():
    case = quadratic_case(5)
    rng = np.random.default_rng(4)
    samples = linear_sgd_samples(case, 120, 3, rng)
    H = spd(rng, P, 0.1, 1.0)
    acc = accumulate(case, samples, 6, H=H)
    est = estimator(case, acc)
    C, tt = case["C"], case["theta_test"]

    def two_pass(x):
        mu = x.mean(0)
        sig = np.cov(x.T, ddof=1)
        b = 0 - mu  # θ_tr = 0
        e = mu - 0
        return {"cov_term": 0.5 * np.trace(sig @ C), "local_cov_term": 0.5 * np.trace(sig @ H),
                "shift_bias_term": 0.5 * (tt - mu) @ C @ (tt - mu),
                "bias_term": 0.5 * b @ C @ b, "cross_term": (tt - 0) @ C @ b,
                "local_bias_term": 0.5 * e @ H @ e, "bias_norm": np.linalg.norm(b)}

    full = est.terms(np.ones(6, bool))
    for k, v in two_pass(samples).items():
        assert full[k] == pytest.approx(v, rel=1e-10, abs=1e-12), k
    for j in range(6):  # the jackknife's leave-one-batch-out values
        mask = np.arange(6) != j
        sub = np.concatenate([samples[20 * i:20 * (i + 1)] for i in range(6) if i != j])
        loo = est.terms(mask)
        for k, v in two_pass(sub).items():
            assert loo[k] == pytest.approx(v, rel=1e-10, abs=1e-12), (j, k)
    mu = torch.tensor(samples.mean(0))
    assert torch.allclose(acc.theta_test + est.mean_offset(np.ones(6, bool)), mu)


def test_mean_bias_not_mode_in_one_dimension_by_quadrature():
    """Quadratic U_tr = ½cθ², noise D(θ) = e^{aθ}: ρ ∝ exp(−(2/T)∫U'/D)/D (Itô). E[U_tr'] = 0
    at steady state gives mean bias exactly 0, while the mode sits at (T/2)c⁻¹D'/D·... ≠ 0; the
    chain estimator (inverse-CDF samples) finds the mean, and Eq. 4 with the exact moments
    equals the exact E[U_test] for a quadratic test loss."""
    c, a, T = 1.0, 1.5, 0.02
    th = np.linspace(-1.5, 1.5, 200001)
    F = c * (np.exp(-a * th) * (-th / a - 1 / a**2) + 1 / a**2)  # ∫_0^θ cx e^{−ax} dx
    logrho = -(2 / T) * F - a * th
    rho = np.exp(logrho - logrho.max())
    rho /= np.trapezoid(rho, th)
    mean = np.trapezoid(th * rho, th)
    var = np.trapezoid((th - mean) ** 2 * rho, th)
    mode = th[np.argmax(rho)]
    assert abs(mean) < 1e-9  # the mean bias is exactly 0
    assert abs(mode) > 100 * abs(mean) and abs(mode) > 1e-3  # the Laplace mode is not
    # Eq. 4 with the exact moments vs the exact expectation (test minimum at 0.3, C = 2)
    Ct, t0, Uk = 2.0, 0.3, 0.05
    exact = np.trapezoid((Uk + 0.5 * Ct * (th - t0) ** 2) * rho, th)
    eq4 = Uk + 0.5 * var * Ct + 0.5 * Ct * (t0 - mean) ** 2
    assert eq4 == pytest.approx(exact, rel=1e-8)
    eq4_mode = Uk + 0.5 * var * Ct + 0.5 * Ct * (t0 - mode) ** 2
    assert abs(eq4_mode - exact) > 1e-3 * exact
    # the streamed estimator on independent draws from ρ: |b| within its SE of 0, not the mode
    cdf = np.cumsum(rho)
    cdf /= cdf[-1]
    draws = np.interp(np.random.default_rng(0).random(2000), cdf, th)
    acc = Eq4Accumulator(torch.tensor([t0]), torch.zeros(1), lambda v: Ct * v, lambda v: Ct * v,
                         20, 100)
    for x in draws:
        acc.add(torch.tensor([x]), test_loss=Uk + 0.5 * Ct * (x - t0) ** 2)
    g_tr = torch.tensor([Ct * (0 - t0)])
    est = Eq4Estimator(acc, Uk, Uk + 0.5 * Ct * t0**2, torch.zeros(1), g_tr, 0.1).estimate()
    assert est["bias_norm"] < 3 * est["bias_norm_se"] + 1e-12
    assert est["bias_norm"] < abs(mode) / 2
    assert est["cov_term"] == pytest.approx(0.5 * var * Ct, rel=4 * est["cov_term_se"] /
                                            est["cov_term"])


def test_cubic_basin_mean_is_minus_kappa_second_moment():
    """U = ½xᵀAx + (κ/3)(uᵀx)³: at steady state E[∇U] = 0, so μ = −κE[(uᵀx)²]A⁻¹u exactly (the
    mode of a constant-noise Gibbs density stays at 0)."""
    rng = np.random.default_rng(7)
    A = spd(rng, 3, 1.0, 2.0)
    u = np.array([1.0, 0.5, -0.3])
    kappa, lr, sd = 1.5, 0.1, 0.45
    theta = np.zeros(3)
    xs = []
    for i in range(60000):
        grad = A @ theta + kappa * (u @ theta) ** 2 * u
        theta = theta - lr * (grad + sd * rng.normal(size=3))
        if i >= 1000 and i % 5 == 0:
            xs.append(theta.copy())
    xs = np.array(xs)
    zero = torch.zeros(3, dtype=torch.float64)
    acc = Eq4Accumulator(zero, zero, lambda v: v, lambda v: v, 20, len(xs) // 20)
    for x in xs[: 20 * (len(xs) // 20)]:
        acc.add(torch.tensor(x), m2=(u @ x) ** 2)
    est = Eq4Estimator(acc, 0.0, 0.0, zero, zero, lr)
    mu = est.mean_offset(np.ones(20, bool)).numpy()
    m2 = float(np.mean((xs[: 20 * (len(xs) // 20)] @ u) ** 2))
    predicted = -kappa * m2 * np.linalg.solve(A, u)
    # batch-means standard error of uᵀμ
    proj = (xs[: 20 * (len(xs) // 20)] @ u).reshape(20, -1).mean(1)
    se = proj.std(ddof=1) / math.sqrt(20)
    assert abs(u @ mu - u @ predicted) < 3 * se
    assert abs(u @ mu) > 5 * se  # the mean moved off the mode at 0


def test_autocorrelation_diagnostics():
    rng = np.random.default_rng(0)
    white = rng.normal(size=5000)
    assert integrated_autocorrelation_time(white) == pytest.approx(0.5, abs=0.1)
    assert abs(geweke_z(white, 0.5)) < 3
    assert abs(trend_z(white, 0.5)) < 3
    drift = white + np.linspace(0, 2, 5000)
    assert abs(trend_z(drift, 0.5)) > 10 and abs(geweke_z(drift, 0.5)) > 10


# -- the network chain --------------------------------------------------------------------------
def logistic_case(seed=0, n=40, dim=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g, dtype=torch.float64) > 0).long()
    model = torch.nn.Linear(dim, 2).double()
    return model, x, y


def chain_statistics(sampler, lr, samples=400, batches=20, seed=0, **kw):
    """A logistic-regression chain from its L2 minimum, with the test set = the train set."""
    from shiftcurv.landscape.minima import find_minimum
    from shiftcurv.landscape.objective import Objective

    model, x, y = logistic_case(seed)
    l2 = 0.05
    obj = Objective(model, x, y, l2=l2)
    theta_tr = find_minimum(obj, obj.theta_of(), method="flow", tau_max=200.0,
                            gtol=1e-10).theta
    torch.nn.utils.vector_to_parameters(theta_tr.clone(), model.parameters())
    plain = Objective(model, x, y, l2=l2)  # "test" loss: the same objective
    chain = NetworkChain(model, x, y, lr=lr, batch_size=4, l2=l2, seed=seed, sampler=sampler,
                         first_epoch=0)
    acc = Eq4Accumulator(theta_tr, theta_tr, lambda v: plain.hvp(theta_tr, v),
                         lambda v: plain.hvp(theta_tr, v), batches, samples // batches)

    def observe(theta):
        value, grad = plain.value_and_grad(theta)
        return {"test_loss": value, "train_loss": value,
                "fdr_lhs": float((theta - theta_tr).dot(grad))}

    settings = SamplingSettings(sampler=sampler, samples=samples, batches=batches,
                                pilot_epochs=20, thin=2, n_eff=1e9, max_epochs=10**6, **kw)
    result = run_chain(chain, acc, observe, lambda th: plain.value_and_grad(th)[0], settings)
    g = plain.value_and_grad(theta_tr)[1]
    est = Eq4Estimator(acc, plain.value_and_grad(theta_tr)[0], plain.value_and_grad(theta_tr)[0],
                       g, g, lr).estimate()
    return result, est


def test_reshuffling_shrinks_the_covariance_and_breaks_the_fdr():
    """Pinned case: at lr 0.02 (λ·c·n_batches ≲ 1 for the slow modes) reshuffling's ½Tr(ΣH) is
    far below sampling with replacement's; with replacement Yaida's relation
    E[(θ−θ_tr)·∇U_α] = (λ/2)E‖g_B‖² holds within its standard error, under reshuffling not."""
    res_wr, wr = chain_statistics("wr", 0.02)
    res_rr, rr = chain_statistics("rr", 0.02)
    assert res_wr["status"] == res_rr["status"] == "ok"
    assert rr["cov_term"] < 0.2 * wr["cov_term"], (rr["cov_term"], wr["cov_term"])
    se = math.hypot(wr["fdr_lhs_se"], wr["fdr_rhs_se"])
    assert abs(wr["fdr_lhs"] - wr["fdr_rhs"]) < 3 * se, (wr["fdr_lhs"], wr["fdr_rhs"], se)
    assert rr["fdr_lhs"] < 0.2 * rr["fdr_rhs"]


def test_a_diverging_chain_stops_with_its_own_status():
    _, x, y = logistic_case(1)
    torch.manual_seed(0)
    deep_linear = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.Linear(32, 32),
                                      torch.nn.Linear(32, 2)).double()  # weights multiply
    chain = NetworkChain(deep_linear, x * 100, y, lr=10.0, batch_size=4, l2=0.0, seed=0,
                         sampler="wr", first_epoch=0)
    theta = chain.theta().clone()
    acc = Eq4Accumulator(theta, theta, lambda v: v, lambda v: v, 4, 2)
    result = run_chain(chain, acc, lambda th: {}, lambda th: 0.0,
                       SamplingSettings(samples=8, batches=4, pilot_epochs=200))
    assert result["status"] == "diverged" and result["stop_reason"] == "pilot"
    assert acc.n == 0


def test_synthetic_basin_by_quadrature_mean_bias_and_eq4():
    """One synthetic basin (the Fig. 4/6 code) with noise D(θ) = e^{1.5θ}: the exact steady state
    (Eq. 5 on a grid) has a mean μ apart from the Laplace mode (Appendix B.2); Eq. 4 with the
    mean's bias is closer to the exact E[U_test] than with the mode's, and the streamed
    estimator on draws from ρ recovers the mean, the spread and E[U_test] within 3 SE."""
    from shiftcurv.synthetic.basins import BasinSet, find_basins
    from shiftcurv.synthetic.steady_state import expected_loss, laplace, steady_state

    bs = BasinSet.from_spec("one", {"minima": [0.0], "weights": [1.0], "sigmas": [0.5],
                                    "stddev_shift": 0.3, "wscale": 0.0},
                            noise=lambda th: np.exp(1.5 * th))
    theta = np.linspace(-4, 4, 40001)
    T = 0.05
    rho = steady_state(bs, theta, T)[0]
    lap = laplace(bs, theta, find_basins(bs, theta), T)
    m = lap["minima"]
    t_tr, t_te, C = float(m["theta_tr"][0]), float(m["theta_test"][0]), float(m["C_test"][0])
    mu = np.trapezoid(theta * rho, theta)
    var = np.trapezoid((theta - mu) ** 2 * rho, theta)
    exact = float(expected_loss(theta, rho[None], bs.U_test(theta))[0])
    U_k = float(bs.U_test(t_te))
    b_mean, b_mode = t_tr - mu, float(lap["b"][0, 0])
    assert abs(b_mean - b_mode) > 0.2 * abs(b_mean)  # the mode is not the mean
    eq4 = lambda b: U_k + 0.5 * C * var + 0.5 * C * (t_te - t_tr + b) ** 2  # noqa: E731
    assert abs(eq4(b_mean) - exact) < abs(eq4(b_mode) - exact)
    cdf = np.cumsum(rho)
    cdf /= cdf[-1]
    draws = np.interp(np.random.default_rng(3).random(4000), cdf, theta)
    acc = Eq4Accumulator(torch.tensor([t_te]), torch.tensor([t_tr]), lambda v: C * v,
                         lambda v: C * v, 20, 200)
    for x in draws:
        acc.add(torch.tensor([x]), test_loss=float(bs.U_test(x)))
    est = Eq4Estimator(acc, U_k, float(bs.U_test(t_tr)), torch.zeros(1), torch.zeros(1),
                       0.1).estimate()
    mu_hat = t_tr + float(np.sign(mu - t_tr)) * est["bias_norm"]
    assert abs(mu_hat - mu) < 3 * est["bias_norm_se"]
    assert abs(est["cov_term"] - 0.5 * C * var) < 3 * est["cov_term_se"]
    assert abs(est["mean_test_loss"] - exact) < 3 * est["mean_test_loss_se"]
    taylor = abs(eq4(b_mean) - exact)  # Eq. 4's own error on this non-quadratic loss
    assert abs(est["prediction_no_first_order"] - exact) < \
        3 * est["prediction_no_first_order_se"] + taylor


def test_batch_norm_chain_keeps_sgds_statistics_for_the_measures(teacher):
    """A BN network: the chain trains in train mode (its own running statistics move), while
    every loss and HVP of the measurement uses SGD's statistics, as everywhere else."""
    from conftest import tiny_mlp

    from shiftcurv.eq4.cell import Eq4Cell
    from shiftcurv.landscape.objective import Objective

    model = tiny_mlp(teacher, batch_norm=True)
    x, y = teacher.tensors("train", dtype=torch.float32)
    xt, yt = teacher.tensors("test", dtype=torch.float32)
    with torch.no_grad():  # SGD-like running statistics to keep
        model.train()
        model(x)
    model.eval()
    sgd_buffers = {k: v.clone() for k, v in model.named_buffers()}
    test = Objective(model, xt, yt, dtype=torch.float64)
    train = Objective(model, x, y, l2=1e-4, dtype=torch.float64)
    theta = test.theta_of()
    chain_model = tiny_mlp(teacher, batch_norm=True)
    chain_model.load_state_dict(model.state_dict())
    chain = NetworkChain(chain_model, x, y, lr=0.05, batch_size=16, l2=1e-4, seed=0,
                         sampler="rr", first_epoch=0)
    cell = Eq4Cell(test, train, theta, theta, chain, 0.05, 1e-4)
    settings = SamplingSettings(samples=8, batches=4, min_batches=2, pilot_epochs=4, thin=1)
    acc = cell.accumulator(settings)
    record = cell.record(acc, cell.sample(acc, settings), settings)
    assert record["status"] in ("ok", "left_basin") and acc.n == 8
    assert any(not torch.equal(v, sgd_buffers[k]) for k, v in chain_model.named_buffers()
               if v.is_floating_point())  # the chain's own statistics moved
    for obj in (test, train):  # the measurement's statistics are SGD's, bit for bit
        for k, v in obj.buffers.items():
            assert torch.equal(v.to(sgd_buffers[k].dtype), sgd_buffers[k]), k
    U, _ = test.loss_and_accuracy(theta)
    with torch.no_grad():
        model.eval()
        plain = torch.nn.functional.cross_entropy(model(xt), yt).item()
    assert U == pytest.approx(plain, rel=1e-5)
