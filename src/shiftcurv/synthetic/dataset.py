"""The whole synthetic study as one xarray.Dataset (results/synthetic.nc): every basin set
analysed over the temperature grid (exact steady state of Eq. 5, Laplace approximations of
Eq. 6/4/8, the Eq. 11 simulation), and its netCDF writer.

xarray is imported inside `sweep` only.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

import numpy as np

from shiftcurv.synthetic.basins import BasinSet, basin_sets, find_basins
from shiftcurv.synthetic.settings import (
    basin_set_specs,
    resolve_settings,
    temperature_grid,
    theta_grid,
)
from shiftcurv.synthetic.simulation import (
    max_curvature,
    relaxation_time,
    simulate_sgd_diffusion,
    simulation_plan,
)
from shiftcurv.synthetic.steady_state import (
    basin_probabilities,
    exact_log_masses,
    expected_loss,
    expected_losses_approx,
    laplace,
    local_minima,
    log_steady_state,
)


def analyse(bs: BasinSet, theta, T, sim: dict | None = None, rng=None) -> dict:
    """Everything about one basin set over the temperatures T: the exact steady state (Eq. 5)
    and its integrals, the Laplace approximations (Eq. 6, Eq. 4, Eq. 8) and their errors, and,
    where it can equilibrate, the simulated SGD diffusion (Eq. 11)."""
    T = np.atleast_1d(np.asarray(T, float))
    basins = find_basins(bs, theta)
    U = bs.U_tr(theta)
    Ut = bs.U_test(theta)
    lr = log_steady_state(bs, theta, T)
    rho = np.exp(lr)
    w = basin_probabilities(theta, lr, basins)
    train = expected_loss(theta, rho, U)
    test = expected_loss(theta, rho, Ut)
    mins = local_minima(bs, theta, basins)
    lap = laplace(bs, theta, basins, T, mins)
    approx = expected_losses_approx(lap)
    exact_lm = exact_log_masses(bs, theta, basins, T)
    out = {"basins": basins, "U_tr": U, "U_test": Ut, "D": bs.noise.D(theta, U),
           "rho": rho, "log_rho": lr, "w": w, "train_loss": train, "test_loss": test,
           "minima": mins, "laplace": lap, "approx": approx,
           "log_mass_error": np.nanmax(np.abs(lap["log_mass"] - exact_lm), axis=1),
           "w_error": np.nanmax(np.abs(lap["w"] - w), axis=1)}
    K = basins.K
    nT = len(T)
    out["sim"] = None
    if sim is not None and sim.get("enabled", True):
        tau = relaxation_time(bs, theta, lr, basins, T)
        chosen, dt, n_steps, n_burn = simulation_plan(tau, max_curvature(bs, theta), sim)
        res = {"tau": tau, "chosen": chosen, "dt": dt, "n_steps": n_steps,
               "occupation": np.full((nT, K), np.nan), "occupation_se": np.full((nT, K), np.nan),
               "density": np.full((nT, sim["bins"]), np.nan),
               "train_loss": np.full(nT, np.nan), "test_loss": np.full(nT, np.nan),
               "bin_edges": np.linspace(theta[0], theta[-1], sim["bins"] + 1)}
        if chosen.any():
            r = simulate_sgd_diffusion(bs, T[chosen], theta, basins, walkers=sim["walkers"],
                                       dt=dt, n_steps=n_steps, n_burn=n_burn,
                                       snapshots=sim["snapshots"], bins=sim["bins"],
                                       rng=rng if rng is not None
                                       else np.random.default_rng(sim["seed"]))
            for k in ("occupation", "occupation_se", "density", "train_loss", "test_loss"):
                res[k][chosen] = r[k]
        out["sim"] = res
    return out


def sweep(settings: dict | None = None, progress: Callable[[str], None] | None = None):
    """The whole synthetic study (Fig. 4 and Fig. 6, Appendix G.2) as one xarray.Dataset (dims
    basin_set, temperature, theta, basin, theta_bin): `analyse` for every basin set of the
    resolved `settings`; see docs/synthetic.md for every variable."""
    import xarray as xr

    from shiftcurv import __version__

    resolved = resolve_settings(settings)
    sets = basin_sets(resolved)
    T = temperature_grid(resolved)
    theta = theta_grid(resolved)
    sim = resolved["simulation"]
    names = list(sets)
    results = {}
    for name, bs in sets.items():
        if progress:
            progress(f"basin set {name}: {len(bs.minima)} components, s = {bs.s:g}")
        # one stream per set, so adding a set does not change the others' walkers
        rng = np.random.default_rng([sim["seed"], zlib.crc32(name.encode())])
        results[name] = analyse(bs, theta, T, sim, rng)
    K = max(r["basins"].K for r in results.values())
    nS, nT, n, nb = len(names), len(T), len(theta), sim["bins"]

    def full(*shape, dtype=float):
        return np.full(shape, np.nan if dtype is float else 0, dtype=dtype)

    v = {k: full(nS, n) for k in ("U_tr", "U_test", "D")}
    v["rho"] = full(nS, nT, n)
    for k in ("basin_prob", "basin_prob_eq6", "sim_basin_prob", "sim_basin_prob_se",
              "Sigma", "bias", "mu"):
        v[k] = full(nS, nT, K)
    for k in ("train_loss", "test_loss", "train_loss_eq8", "test_loss_eq8", "train_loss_eq4",
              "test_loss_eq4", "basin_prob_eq6_error", "log_mass_eq6_error",
              "relaxation_time", "sim_train_loss", "sim_test_loss"):
        v[k] = full(nS, nT)
    v["simulated"] = full(nS, nT, dtype=np.int8)
    for k in ("basin_theta_tr", "basin_U_tr", "basin_C_tr", "basin_theta_test", "basin_U_test",
              "basin_C_test", "basin_lo", "basin_hi"):
        v[k] = full(nS, K)
    v["sim_density"] = full(nS, nT, nb)
    for k in ("shift", "optimal_temperature", "sim_dt", "sim_steps", "n_basins"):
        v[k] = full(nS)
    for i, name in enumerate(names):
        r = results[name]
        b = r["basins"]
        k = b.K
        v["U_tr"][i], v["U_test"][i], v["D"][i] = r["U_tr"], r["U_test"], r["D"]
        v["rho"][i] = r["rho"]
        v["basin_prob"][i, :, :k] = r["w"]
        v["basin_prob_eq6"][i, :, :k] = r["laplace"]["w"]
        v["Sigma"][i, :, :k] = r["laplace"]["Sigma"]
        v["bias"][i, :, :k] = r["laplace"]["b"]
        v["mu"][i, :, :k] = r["laplace"]["mu"]
        v["train_loss"][i], v["test_loss"][i] = r["train_loss"], r["test_loss"]
        for a in ("train", "test"):
            for e in ("eq8", "eq4"):
                v[f"{a}_loss_{e}"][i] = r["approx"][f"{a}_{e}"]
        v["basin_prob_eq6_error"][i] = r["w_error"]
        v["log_mass_eq6_error"][i] = r["log_mass_error"]
        m = r["minima"]
        v["basin_theta_tr"][i, :k], v["basin_U_tr"][i, :k] = m["theta_tr"], m["U_tr"]
        v["basin_C_tr"][i, :k], v["basin_theta_test"][i, :k] = m["C_tr"], m["theta_test"]
        v["basin_U_test"][i, :k], v["basin_C_test"][i, :k] = m["U_test"], m["C_test"]
        bnd = b.boundaries(theta)
        v["basin_lo"][i, :k], v["basin_hi"][i, :k] = bnd[:-1], bnd[1:]
        v["shift"][i] = sets[name].s
        v["n_basins"][i] = k
        v["optimal_temperature"][i] = T[int(np.argmin(r["test_loss"]))]
        s = r["sim"]
        if s is not None:
            v["relaxation_time"][i] = s["tau"]
            v["simulated"][i] = s["chosen"].astype(np.int8)
            v["sim_basin_prob"][i, :, :k] = s["occupation"]
            v["sim_basin_prob_se"][i, :, :k] = s["occupation_se"]
            v["sim_density"][i] = s["density"]
            v["sim_train_loss"][i], v["sim_test_loss"][i] = s["train_loss"], s["test_loss"]
            v["sim_dt"][i], v["sim_steps"][i] = s["dt"], s["n_steps"]

    dims3, dimsk = ("basin_set", "temperature", "theta"), ("basin_set", "temperature", "basin")
    dimst, dimsb = ("basin_set", "temperature"), ("basin_set", "basin")
    meta = {
        "U_tr": (("basin_set", "theta"), "1", "train loss U_tr(theta)"),
        "U_test": (("basin_set", "theta"), "1", "test loss U_test(theta) = U_tr(theta + s)"),
        "D": (("basin_set", "theta"), "1", "SGD noise D(theta)"),
        "rho": (dims3, "1/theta", "steady-state density rho(theta) of Eq. 5 (exact, grid)"),
        "basin_prob": (dimsk, "1", "basin probability w_k(T): integral of rho over basin k"),
        "basin_prob_eq6": (dimsk, "1", "basin probability, Laplace approximation (Eq. 6)"),
        "sim_basin_prob": (dimsk, "1", "basin occupation of the Eq. 11 simulation"),
        "sim_basin_prob_se": (dimsk, "1", "binomial standard error of sim_basin_prob "
                                          "(one snapshot of all walkers; conservative)"),
        "Sigma": (dimsk, "theta^2", "Gaussian-mixture variance Sigma_k = T/(2 v''(mu_k))"),
        "bias": (dimsk, "theta", "Gaussian-mixture bias b_k = theta_k^tr - mu_k"),
        "mu": (dimsk, "theta", "minimum mu_k of the effective potential v(theta, T)"),
        "train_loss": (dimst, "1", "expected train loss E_rho[U_tr] (exact, grid)"),
        "test_loss": (dimst, "1", "expected test loss E_rho[U_test] (exact, grid)"),
        "train_loss_eq8": (dimst, "1", "sum_k w_k U_k^tr (leading order, Eq. 6 weights)"),
        "test_loss_eq8": (dimst, "1", "sum_k w_k (U_k^test + s_k C_k^test s_k / 2) (Eq. 8)"),
        "train_loss_eq4": (dimst, "1", "Gaussian-mixture train loss with Sigma_k, b_k (Eq. 4 "
                                       "with s = 0)"),
        "test_loss_eq4": (dimst, "1", "Gaussian-mixture test loss with Sigma_k, b_k (Eq. 4)"),
        "basin_prob_eq6_error": (dimst, "1", "max_k |basin_prob_eq6 - basin_prob|"),
        "log_mass_eq6_error": (dimst, "1", "max_k |log basin mass, Laplace - exact| (O(T))"),
        "relaxation_time": (dimst, "time", "estimated time for Eq. 11 to equilibrate the basin "
                                           "occupations (mean first-passage times)"),
        "simulated": (dimst, "1", "1 where the Eq. 11 simulation ran (relaxation fits in "
                                  "max_steps), else 0"),
        "sim_train_loss": (dimst, "1", "mean train loss over the simulated walkers"),
        "sim_test_loss": (dimst, "1", "mean test loss over the simulated walkers"),
        "sim_density": (("basin_set", "temperature", "theta_bin"), "1/theta",
                        "histogram density of the simulated walkers"),
        "basin_theta_tr": (dimsb, "theta", "train local minimum theta_k^tr"),
        "basin_U_tr": (dimsb, "1", "U_k^tr = U_tr(theta_k^tr)"),
        "basin_C_tr": (dimsb, "1/theta^2", "C_k^tr = U_tr''(theta_k^tr)"),
        "basin_theta_test": (dimsb, "theta", "test local minimum theta_k^test"),
        "basin_U_test": (dimsb, "1", "U_k^test = U_test(theta_k^test)"),
        "basin_C_test": (dimsb, "1/theta^2", "C_k^test = U_test''(theta_k^test)"),
        "basin_lo": (dimsb, "theta", "left boundary of basin k (a maximum of U_tr or the "
                                     "grid end)"),
        "basin_hi": (dimsb, "theta", "right boundary of basin k"),
        "shift": (("basin_set",), "theta", "train/test shift s: U_test(theta) = U_tr(theta+s)"),
        "n_basins": (("basin_set",), "1", "number of basins of U_tr on the grid"),
        "optimal_temperature": (("basin_set",), "1", "temperature of the grid with the lowest "
                                                     "expected test loss"),
        "sim_dt": (("basin_set",), "time", "Euler-Maruyama time step"),
        "sim_steps": (("basin_set",), "1", "Euler-Maruyama steps (0: nothing simulated)"),
    }
    data_vars = {k: (d, v[k], {"units": u, "long_name": ln}) for k, (d, u, ln) in meta.items()}
    edges = np.linspace(theta[0], theta[-1], sim["bins"] + 1)
    specs = basin_set_specs(resolved)
    coords = {
        "basin_set": ("basin_set", names, {"long_name": "basin set (Appendix G table or "
                                                        "user's)", "units": "1"}),
        "temperature": ("temperature", T, {"units": "1", "long_name": "SGD temperature T = "
                                                                      "lr / batch size"}),
        "theta": ("theta", theta, {"units": "theta", "long_name": "parameter theta"}),
        "basin": ("basin", np.arange(K), {"units": "1", "long_name": "basin index, left to "
                                                                     "right"}),
        "theta_bin": ("theta_bin", 0.5 * (edges[1:] + edges[:-1]),
                      {"units": "theta", "long_name": "centre of a simulation histogram bin"}),
        "description": ("basin_set", [sets[nm].description for nm in names],
                        {"units": "1", "long_name": "what the basin set illustrates"}),
        "spec": ("basin_set", [json.dumps(specs[nm], sort_keys=True) for nm in names],
                 {"units": "1", "long_name": "the basin set's parameters (JSON)"}),
    }
    attrs = {"title": "shiftcurv synthetic basins (paper Fig. 4 and Fig. 6)",
             "settings": json.dumps(resolved, sort_keys=True),
             "shiftcurv_version": __version__,
             "reading": "U_tr = -lscale*log(sum_k w_k N(theta; m_k, sigma_k^2) + c), w "
                        "unnormalised; U_test(theta) = U_tr(theta + s), s = stddev_shift",
             "reference": "Bradley, Gomez-Uribe, Vuyyuru: Shift-curvature, SGD, and "
                          "generalization (Sec. 3.1, Appendix G.2)"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_netcdf(ds, path) -> None:
    """netCDF4 with zlib, written atomically."""
    from shiftcurv.io import atomic_path

    encoding = {k: {"zlib": True, "complevel": 4} for k, var in ds.data_vars.items()
                if var.dtype.kind in "fi"}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
