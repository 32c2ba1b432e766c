"""Synthetic basins (paper §3.1, Fig. 4 and Fig. 6, Appendix G.2): the paper's claims, the
Laplace approximation's error, the SGD-diffusion simulation, grid convergence, and the CLI."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from shiftcurv import ShiftcurvError
from shiftcurv.synthetic.basins import BasinSet, basin_sets, find_basins
from shiftcurv.synthetic.dataset import analyse
from shiftcurv.synthetic.settings import (
    PAPER_BASIN_SETS,
    default_settings,
    figure_names,
    resolve_basin_set,
    resolve_settings,
)
from shiftcurv.synthetic.simulation import (
    max_curvature,
    relaxation_time,
    simulate_sgd_diffusion,
    simulation_plan,
)
from shiftcurv.synthetic.steady_state import (
    basin_probabilities,
    expected_loss,
    log_steady_state,
    potential_on_grid,
)

THETA = np.linspace(-3.0, 3.0, 4801)           # the default grid
T_GRID = np.geomspace(1e-3, 3.0, 36)            # the default temperatures


def _at(*T):
    """Indices of the grid temperatures nearest (in log) to T."""
    return np.array([int(np.argmin(np.abs(np.log(T_GRID / t)))) for t in T])


@pytest.fixture(scope="module")
def paper():
    """Exact and approximate results for the four Appendix G tables (no simulation)."""
    resolved = resolve_settings({"basin_sets": {}})
    return {n: analyse(bs, THETA, T_GRID) for n, bs in basin_sets(resolved).items()}


def _paper_set(name, **kw):
    return BasinSet.from_spec(name, PAPER_BASIN_SETS[name], **kw)


# ---- the tables reproduce the text's description of the losses ------------------------------

def test_tables_reproduce_the_text(paper):
    m = paper["fig4_left"]["minima"]        # −1 deeper but narrower
    assert np.allclose(m["theta_tr"], [-1, 1], atol=1e-3)
    assert m["U_tr"][0] < m["U_tr"][1] and m["C_tr"][0] > m["C_tr"][1]
    m = paper["fig4_right"]["minima"]       # +1 deeper and wider
    assert m["U_tr"][1] < m["U_tr"][0] and m["C_tr"][1] < m["C_tr"][0]
    assert paper["fig6_left"]["basins"].K == 1
    m = paper["fig6_right"]["minima"]       # 0 deepest and narrowest; ±1 equally deep, +1 wider
    assert np.allclose(m["theta_tr"], [-1, 0, 1], atol=1e-3)
    assert m["U_tr"][1] < min(m["U_tr"][0], m["U_tr"][2])
    assert m["C_tr"][1] > max(m["C_tr"][0], m["C_tr"][2])
    assert abs(m["U_tr"][0] - m["U_tr"][2]) < 1e-3
    assert m["C_tr"][2] < m["C_tr"][0]
    # U_test(θ) = U_tr(θ + s) with s = stddev_shift (our reading)
    bs = _paper_set("fig4_left")
    assert bs.s == 0.1
    assert np.allclose(bs.U_test(THETA), bs.U_tr(THETA + 0.1))
    assert np.allclose(m["theta_test"], m["theta_tr"] - 0.1, atol=1e-8)


def test_loss_derivatives_match_finite_differences():
    bs = _paper_set("fig6_right")
    x = np.linspace(-2, 2, 41)
    h = 1e-5
    _, g, c = bs.U_tr(x, derivs=2)
    assert np.allclose(g, (bs.U_tr(x + h) - bs.U_tr(x - h)) / (2 * h), atol=1e-5)
    _, g_p = bs.U_tr(x + h, derivs=1)
    _, g_m = bs.U_tr(x - h, derivs=1)
    assert np.allclose(c, (g_p - g_m) / (2 * h), rtol=1e-5, atol=1e-4)
    # far from every basin: the plateau −log c, flat, and no spurious basins from float noise
    assert bs.U_tr(50.0) == pytest.approx(-np.log(0.001))
    assert find_basins(bs, np.linspace(-6, 6, 6001)).K == 3


# ---- Fig. 4 left: the depth/curvature trade-off ----------------------------------------------

def test_fig4_left_tradeoff(paper):
    r = paper["fig4_left"]
    w = r["w"]
    assert w[0, 0] > 1 - 1e-12                       # T → 0: all mass on the deeper −1
    i = _at(0.01, 0.1, 1.0)
    assert w[i[0], 1] < 1e-3 and w[i[1], 1] > 0.6 and w[i[2], 1] > 0.8   # moves to +1
    assert np.all(np.diff(w[T_GRID <= 1, 1]) > 0)
    assert np.all(np.diff(r["train_loss"]) > 0)      # train loss only rises
    test = r["test_loss"]
    j = int(np.argmin(test))
    assert 0 < j < len(T_GRID) - 1                   # a finite, non-zero optimal T
    assert 0.1 < T_GRID[j] < 0.4
    assert test[j] < test[0] - 0.2                   # test loss first falls ...
    assert np.all(np.diff(test[j:]) > 0)             # ... then rises
    assert np.all(np.diff(test[: j + 1][T_GRID[: j + 1] > 0.01]) < 0)


@pytest.mark.parametrize("name", ["fig4_right", "fig6_left"])
def test_no_tradeoff_both_losses_rise(paper, name):
    r = paper[name]
    assert np.all(np.diff(r["train_loss"]) > 0)
    assert np.all(np.diff(r["test_loss"]) > 0)
    assert np.argmin(r["test_loss"]) == 0


def test_three_basins_prefer_the_wider_of_equal_depth(paper):
    w = paper["fig6_right"]["w"]
    assert w[0, 1] > 0.999                           # T → 0: the deep narrow minimum at 0
    low = T_GRID <= 0.5
    assert np.all(np.diff(w[low, 1]) < 1e-12)        # mass leaves 0 as T grows
    assert w[_at(0.1)[0], 1] < 0.2
    both = (w[:, 0] > 1e-6) & (w[:, 2] > 1e-6)
    assert both.sum() > 20
    assert np.all(w[both, 2] > w[both, 0])           # +1 (wider) beats −1 (equally deep)
    test = paper["fig6_right"]["test_loss"]
    assert 0 < np.argmin(test) < len(T_GRID) - 1     # generalisation improves, then worsens


# ---- Eq. 6 / Eq. 4 / Eq. 8 against the exact integrals ---------------------------------------

@pytest.mark.parametrize("name", ["fig4_left", "fig4_right", "fig6_left", "fig6_right"])
def test_eq6_weights_match_at_small_T_and_error_grows_with_T(paper, name):
    r = paper[name]
    small = T_GRID <= 0.01
    # stated tolerance: at T <= 0.01, |w_eq6 − w| < 1e-5 and basin log-masses within 5e-5
    assert np.all(r["w_error"][small] < 1e-5)
    err = r["log_mass_error"]
    assert np.all(err[small] < 5e-5)
    # the Laplace error is O(T): error/T about constant at small T, growing with T up to T = 1
    ratio = err[small] / T_GRID[small]
    assert ratio.max() / ratio.min() < 1.3
    upto1 = T_GRID <= 1.0
    assert np.all(np.diff(err[upto1]) > 0)
    assert err[_at(1.0)[0]] > 100 * err[0]


def test_eq4_and_eq8_expected_losses(paper):
    r = paper["fig4_left"]
    small = T_GRID <= 0.01
    e8 = np.abs(r["approx"]["test_eq8"] - r["test_loss"])
    e4 = np.abs(r["approx"]["test_eq4"] - r["test_loss"])
    assert np.all(e8[small] < 5e-3) and np.all(e4[small] < 5e-3)
    # Eq. 8 drops the O(T) terms: its error grows ~linearly; Eq. 4 keeps them and stays close
    i = _at(0.3)[0]
    assert e8[i] > 0.05 and e4[i] < 5e-3
    tr4 = np.abs(r["approx"]["train_eq4"] - r["train_loss"])
    assert np.all(tr4[T_GRID <= 0.3] < 2e-3)


# ---- the SGD diffusion (Eq. 11) against the steady state (Eq. 5) -----------------------------

MIX = {"minima": [-0.5, 0.5], "weights": [0.048, 0.1], "sigmas": [0.3, 0.5], "c": 0.02,
       "stddev_shift": 0.3}
WALKERS = 10_000


def _simulate(bs, T):
    theta = np.linspace(-2.5, 2.5, 2001)
    basins = find_basins(bs, theta)
    lr = log_steady_state(bs, theta, [T])
    w = basin_probabilities(theta, lr, basins)[0]
    tau = relaxation_time(bs, theta, lr, basins, [T])
    sim = {"dt_factor": 0.05, "burn_in": 5.0, "sample": 3.0, "max_steps": 10_000,
           "max_temperatures": 1}
    chosen, dt, n_steps, n_burn = simulation_plan(tau, max_curvature(bs, theta), sim)
    assert chosen.all() and n_steps <= 10_000
    # all walkers start in basin 0: far from the steady state's occupations
    res = simulate_sgd_diffusion(bs, [T], theta, basins, walkers=WALKERS, dt=dt,
                                    n_steps=n_steps, n_burn=n_burn, snapshots=20, bins=50,
                                    rng=np.random.default_rng(1), start=0)
    return theta, w, res, lr


def _tolerance(w, se, dt_factor=0.05):
    # 4 binomial standard errors (conservative: one snapshot), plus Euler–Maruyama's bias on a
    # basin weight (at most dt_factor/4 relative, see simulation_plan)
    return 4 * se + dt_factor / 4 * w


def test_simulation_matches_steady_state_constant_D():
    bs = BasinSet.from_spec("mix", MIX)
    theta, w, res, lr = _simulate(bs, 0.3)
    occ, se = res["occupation"][0], res["occupation_se"][0]
    assert 0.25 < w[0] < 0.5                         # non-trivial occupations, start was (1, 0)
    assert np.all(np.abs(occ - w) < _tolerance(w, se))
    # the histogram too: total-variation distance to ρ's bin masses
    edges = res["bin_edges"]
    cdf = np.concatenate([[0], np.cumsum(np.diff(theta) * 0.5 * (np.exp(lr[0][1:])
                                                                  + np.exp(lr[0][:-1])))])
    p_bins = np.diff(np.interp(edges, theta, cdf))
    p_sim = res["density"][0] * np.diff(edges)
    assert 0.5 * np.abs(p_sim - p_bins).sum() < 0.03
    # and the mean losses
    rho = np.exp(lr[0])
    assert res["train_loss"][0] == pytest.approx(expected_loss(theta, rho[None],
                                                                  bs.U_tr(theta))[0], abs=0.02)


def test_simulation_matches_steady_state_nonconstant_D():
    """D(θ) = 1 + ½·tanh(2θ): the ∂·D term of Eq. 5 (ρ ∝ e^{−2F/T}/D) is needed to match."""
    def D(x):
        return 1.0 + 0.5 * np.tanh(2.0 * x)

    bs = BasinSet.from_spec("mix_D", MIX, noise=D)
    theta, w, res, lr = _simulate(bs, 0.3)
    occ, se = res["occupation"][0], res["occupation_se"][0]
    assert np.all(np.abs(occ - w) < _tolerance(w, se))
    # without the ∂·D term (ρ ∝ e^{−2F/T}) the prediction is measurably wrong
    F = potential_on_grid(bs, theta)
    wrong = -2 * F / 0.3
    wrong = wrong[None] - np.log(np.trapezoid(np.exp(wrong - wrong.max()), theta)) - wrong.max()
    w_wrong = basin_probabilities(theta, wrong, find_basins(bs, theta))[0]
    assert np.max(np.abs(occ - w_wrong)) > 10 * np.max(se)


def test_noise_kinds_agree():
    """The closed-form potential of D = D0 + α·U_tr equals the grid integral for the same D."""
    spec = {**PAPER_BASIN_SETS["fig4_left"], "noise": {"kind": "loss", "D0": 0.5,
                                                          "alpha": 1.0}}
    a = BasinSet.from_spec("a", spec)
    b = BasinSet.from_spec("b", PAPER_BASIN_SETS["fig4_left"],
                              noise=lambda x: 0.5 + a.U_tr(x))
    T = np.array([0.01, 0.1, 1.0])
    ra, rb = analyse(a, THETA, T), analyse(b, THETA, T)
    assert np.allclose(ra["w"], rb["w"], atol=1e-6)
    assert np.allclose(ra["laplace"]["w"], rb["laplace"]["w"], atol=1e-5)
    assert np.allclose(ra["test_loss"], rb["test_loss"], atol=1e-6)
    # loss-dependent noise changes the answer (it is not a no-op)
    const = analyse(_paper_set("fig4_left"), THETA, T)["w"]
    assert not np.allclose(ra["w"], const, atol=1e-3)


def test_relaxation_time_is_astronomical_at_the_papers_temperatures(paper):
    """Why the sweep simulates the paper's tables only at high T: SGD cannot cross their
    barriers at the temperatures where the trade-off plays out."""
    bs = _paper_set("fig4_left")
    r = paper["fig4_left"]
    i = _at(0.1, 3.0)
    tau = relaxation_time(bs, THETA, r["log_rho"][i], r["basins"], T_GRID[i])
    assert tau[0] > 1e20 and tau[1] < 10


# ---- grid convergence --------------------------------------------------------------------------

@pytest.mark.parametrize("noise", [None, "function"])
def test_grid_convergence(noise):
    kw = {} if noise is None else {"noise": lambda x: 1.0 + 0.5 * np.tanh(2.0 * x)}
    bs = _paper_set("fig6_right", **kw)
    out = {}
    for n in (2401, 4801, 9601):
        r = analyse(bs, np.linspace(-3, 3, n), T_GRID)
        out[n] = np.concatenate([r["w"].ravel(), r["train_loss"], r["test_loss"],
                                 r["laplace"]["w"].ravel()])
    # the default grid (dx = 1.25e-3) against twice as fine, at every T down to 1e-3
    assert np.max(np.abs(out[4801] - out[9601])) < 1e-6
    # a coarser grid is fine where ρ's narrowest peak, sqrt(T/(2·max C)), spans a few dx
    ok = np.concatenate([np.repeat(T_GRID >= 0.01, 3), T_GRID >= 0.01, T_GRID >= 0.01,
                         np.repeat(T_GRID >= 0.01, 3)])
    assert np.max(np.abs(out[2401] - out[9601])[ok]) < 1e-5


# ---- settings, CLI, dataset, figures ---------------------------------------------------------

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/synthetic.schema.yaml"


def _schema_filled(doc, pointer=""):
    """`doc` with the schema's defaults, by the config loader's machinery (not the code's)."""
    from shiftcurv.config import document_problems

    doc = json.loads(json.dumps(doc))
    assert document_problems(doc, SCHEMA.name, pointer=pointer) == []
    return doc


def test_defaults_are_the_schemas():
    """The schema holds the only defaults: the code resolves the empty section (and a minimal
    basin set) to exactly the schema-filled document, numbers of the same type."""
    import yaml

    filled = _schema_filled({})
    assert json.dumps(resolve_settings({}), sort_keys=True) == json.dumps(filled, sort_keys=True)
    assert json.dumps(resolve_settings(None), sort_keys=True) == json.dumps(filled,
                                                                            sort_keys=True)
    assert default_settings() == filled
    minimal = {"minima": [0.0], "weights": [1.0], "sigmas": [1.0]}
    assert json.dumps(resolve_basin_set(minimal, "m"), sort_keys=True) == json.dumps(
        _schema_filled(minimal, "/definitions/basin_set"), sort_keys=True)
    bs = BasinSet.from_spec("m", minimal)
    props = yaml.safe_load(SCHEMA.read_text())["definitions"]["basin_set"]["properties"]
    assert (bs.c, bs.stddev_shift, bs.shift, bs.lscale, bs.wscale, bs.seed, bs.description) == \
        tuple(props[k]["default"] for k in ("c", "stddev_shift", "shift", "lscale", "wscale",
                                            "seed", "description"))
    assert (bs.noise.kind, bs.noise.D0) == ("constant", props["noise"]["default"]["D"])
    # the paper tables the schema offers are the code's, and all are on by default
    enum = yaml.safe_load(SCHEMA.read_text())["properties"]["paper_sets"]["items"]["enum"]
    assert enum == list(PAPER_BASIN_SETS) == filled["paper_sets"]


def test_settings_resolve_and_errors():
    r = resolve_settings({})
    assert r["paper_sets"] == list(PAPER_BASIN_SETS) and "shallow" in r["basin_sets"]
    assert figure_names({}, "F") == [f"F/synthetic_{n}.png" for n in
                                     [*PAPER_BASIN_SETS, "shallow"]] + [
        "F/synthetic_checks.png"]
    assert resolve_settings(r) == r                       # idempotent
    # numbers typed as the schema says (integers where it says integer), YAML 1.1 strings read
    r = resolve_settings({"theta": {"min": -2, "max": 2, "num": 201.0},
                          "temperatures": {"min": "1e-2", "max": 1, "num": 3}})
    assert json.dumps(r["theta"]) == '{"min": -2.0, "max": 2.0, "num": 201}'
    assert r["temperatures"] == {"min": 0.01, "max": 1.0, "num": 3}
    assert resolve_settings({"temperatures": [1, 0.1, 1]})["temperatures"] == [0.1, 1.0]
    noise = {"basin_sets": {"n": {"minima": [0], "weights": [1], "sigmas": [1],
                                  "noise": {"kind": "loss"}},
                            "m": {"minima": [0], "weights": [1], "sigmas": [1], "noise": {}}}}
    sets = resolve_settings(noise)["basin_sets"]
    assert sets["n"]["noise"] == {"kind": "loss", "D0": 1.0, "alpha": 1.0}
    assert sets["m"]["noise"] == {"kind": "constant", "D": 1.0}

    def one(**kw):
        return {"basin_sets": {"m": {"minima": [0], "weights": [1], "sigmas": [1], **kw}}}

    for bad, key in [({"theta": {"num": "x"}}, "synthetic.theta.num"),
                     ({"theta": {"num": 3}}, "synthetic.theta.num"),
                     ({"theta": {"min": 1, "max": 0}}, "synthetic.theta.max"),
                     ({"theta": {"min": float("inf")}}, "synthetic.theta.min"),
                     ({"basin_sets": {"m": {"minima": [0], "weights": [1],
                                            "sigmas": [-1]}}},
                      "synthetic.basin_sets.m.sigmas[0]"),
                     ({"basin_sets": {"m": {"minima": [0, 1], "weights": [1],
                                            "sigmas": [1]}}}, "synthetic.basin_sets.m:"),
                     ({"basin_sets": {"m": {"minima": [0], "weights": [1]}}},
                      "synthetic.basin_sets.m: 'sigmas'"),
                     (one(noise={"kind": "loss", "D": 1}), "synthetic.basin_sets.m.noise: .*'D'"),
                     (one(noise={"kind": "x"}), "synthetic.basin_sets.m.noise.kind"),
                     (one(minima=[float("nan")]), "synthetic.basin_sets.m.minima[0]"),
                     ({"basin_sets": {"bad name": {}}}, "synthetic.basin_sets: 'bad name'"),
                     ({"basin_sets": {"fig4_left": {"minima": [0], "weights": [1],
                                                    "sigmas": [1]}}},
                      "synthetic.basin_sets.fig4_left: clashes"),
                     ({"paper_sets": ["fig9"]}, "synthetic.paper_sets[0]"),
                     ({"paper_sets": [], "basin_sets": {}}, "synthetic.paper_sets: no basin"),
                     ({"simulation": {"walkers": 0}}, "synthetic.simulation.walkers"),
                     ({"simulation": {"dt_factor": 1}}, "synthetic.simulation.dt_factor"),
                     ({"temperatures": {"min": 2, "max": 1}}, "synthetic.temperatures.max"),
                     ({"temperatures": []}, "synthetic.temperatures"),
                     ({"bogus": 1}, "synthetic: .*'bogus'")]:
        with pytest.raises(ShiftcurvError,
                           match="^" + key.replace("[", r"\[").replace("]", r"\]")) as e:
            resolve_settings(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ShiftcurvError, match=r"^mix\.sigmas\[0\]"):
        BasinSet.from_spec("mix", {"minima": [0], "weights": [1], "sigmas": [0]})


def test_config_loader_accepts_the_synthetic_section():
    """The whole config's schema $refs synthetic.schema.yaml: what the CLI accepts, a config
    does too (both noise kinds)."""
    import yaml

    from shiftcurv.config import validate

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "configs/tiny.yaml").read_text())
    config["synthetic"]["basin_sets"] = noise = {
        "n": {"minima": [0], "weights": [1], "sigmas": [1], "noise": {"kind": "loss"}},
        "m": {"minima": [0], "weights": [1], "sigmas": [1], "noise": {"D": 2}}}
    validate(config)
    resolve_settings(config["synthetic"])
    noise["m"]["noise"]["D0"] = 1
    with pytest.raises(ShiftcurvError, match="synthetic.basin_sets.m.noise"):
        validate(config)


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_cli_builds_dataset_and_figures(tmp_path, capsys):
    import xarray as xr

    from shiftcurv.cli import main

    settings = {"paper_sets": ["fig4_left", "fig6_left"],
                "basin_sets": {"mine": {**MIX, "noise": {"kind": "loss", "D0": 0.5,
                                                         "alpha": 0.5}}},
                "temperatures": {"min": 0.01, "max": 3.0, "num": 6},
                "theta": {"min": -2.5, "max": 2.5, "num": 1001},
                "simulation": {"walkers": 300, "max_steps": 3000, "snapshots": 5,
                               "bins": 40}}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    out, figs = tmp_path / "synthetic.nc", tmp_path / "figs"
    rc = main(["synthetic", "--settings", f"@{path}", "--out", str(out), "--figures",
               str(figs), "--log", str(tmp_path / "log.txt")])
    assert rc == 0
    with xr.open_dataset(out) as ds:
        assert list(ds["basin_set"].values) == ["fig4_left", "fig6_left", "mine"]
        assert dict(ds.sizes) == {"basin_set": 3, "temperature": 6, "theta": 1001,
                                  "basin": 2, "theta_bin": 40}
        for v in ("U_tr", "U_test", "rho", "basin_prob", "basin_prob_eq6", "train_loss",
                  "test_loss", "test_loss_eq8", "test_loss_eq4", "sim_basin_prob",
                  "relaxation_time", "simulated", "optimal_temperature"):
            assert v in ds
        for v in ds.data_vars.values():
            assert v.attrs["units"] and v.attrs["long_name"]
        assert ds["rho"].dims == ("basin_set", "temperature", "theta")
        assert json.loads(ds.attrs["settings"])["theta"]["num"] == 1001
        assert ds.attrs["shiftcurv_version"]
        np.testing.assert_allclose(ds["basin_prob"].sel(basin_set="fig4_left").sum("basin"),
                                   1.0, atol=1e-12)
        assert np.isnan(ds["basin_prob"].sel(basin_set="fig6_left", basin=1)).all()
        assert int(ds["simulated"].sel(basin_set="mine").sum()) >= 1
    for p in figure_names(settings, str(figs)):
        f = Path(p)
        assert f.exists() and f.stat().st_size > 20_000
        w, h = _png_size(f)
        assert w > 600 and h > 400
    assert (tmp_path / "log.txt").read_text().count("\n") >= 3


def test_cli_bad_setting_is_one_line_exit_2(tmp_path, capsys):
    from shiftcurv.cli import main

    rc = main(["synthetic", "--settings", '{"temperatures": {"min": -1}}', "--out",
               str(tmp_path / "x.nc"), "--no-figures"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "synthetic.temperatures.min" in err
    assert not (tmp_path / "x.nc").exists()
