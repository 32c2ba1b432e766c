"""Figures for the synthetic basins (paper Fig. 4 and Fig. 6), drawn from results/synthetic.nc only.

- synthetic_{basin_set}.png, one per basin set, four panels as in the paper's Fig. 4: the train
  and test objectives; the steady-state density ρ(θ) (Eq. 5) at four temperatures, with the
  Eq. 11 simulation's histogram where it ran; the basin probabilities vs T (exact, Eq. 6, and
  simulated); the expected train and test losses vs T (exact, Eq. 4 and Eq. 8 approximations,
  simulated), with the optimal temperature marked.
- synthetic_checks.png: the checks on the theory for every basin set: the Eq. 6 basin-mass error
  vs T (O(T)); the error of the Eq. 8 and Eq. 4 test-loss approximations; the relaxation time
  of the SGD diffusion vs T (why the simulation runs only where it does); simulated vs exact
  basin occupations.
"""

from __future__ import annotations

import numpy as np

TAU_CLIP = 1e12


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _save(fig, path) -> None:
    from shiftcurv.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _density_picks(sub) -> list[int]:
    """Four temperatures for the density panel: two from the grid, and the lowest and highest
    simulated ones (else two more from the grid)."""
    n = sub.sizes["temperature"]
    # the upper half of the grid: at the lowest T, ρ is a spike that flattens every other curve
    grid = [int(round(x)) for x in np.linspace((n - 1) / 2, n - 1, 4)]
    sim = list(np.flatnonzero(sub["simulated"].values == 1))
    if not sim:
        return sorted(set(grid))
    picks = [grid[0], grid[1], sim[0], sim[-1]]
    return sorted(set(picks))


def plot_basin_set(ds, name: str, path) -> None:
    plt, sns = _setup()
    sub = ds.sel(basin_set=name)
    theta = sub["theta"].values
    T = sub["temperature"].values
    K = int(sub["n_basins"].values)
    colors = sns.color_palette("colorblind", max(K, 4) + 4)
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8))
    (a0, a1), (a2, a3) = axes

    # objectives
    a0.plot(theta, sub["U_tr"], color="tab:blue", label="$U^{tr}$")
    a0.plot(theta, sub["U_test"], color="tab:orange", ls="--",
            label=f"$U^{{test}}(\\theta) = U^{{tr}}(\\theta + s)$, s = {float(sub['shift']):g}")
    for k in range(K):
        a0.plot(sub["basin_theta_tr"][k], sub["basin_U_tr"][k], "o", color=colors[k], ms=5)
    for b in sub["basin_hi"].values[: K - 1]:
        a0.axvline(b, color="0.6", ls=":", lw=1)
    D = sub["D"].values
    if np.ptp(D) > 1e-12 * max(1.0, abs(D).max()):
        ax2 = a0.twinx()
        ax2.plot(theta, D, color="tab:green", lw=1, alpha=0.7)
        ax2.set_ylabel("D(θ)", color="tab:green")
        ax2.grid(False)
    a0.set(xlabel="θ", ylabel="loss", title="objectives (dotted: basin boundaries)")
    a0.legend(fontsize=8, loc="upper center")

    # steady-state densities
    picks = _density_picks(sub)
    pal = sns.color_palette("viridis", len(picks))
    centers = sub["theta_bin"].values
    width = centers[1] - centers[0] if centers.size > 1 else 1.0
    top = 0.0
    for c, j in zip(pal, picks, strict=True):
        rho = sub["rho"].values[j]
        top = max(top, rho.max())
        a1.plot(theta, rho, color=c, label=f"T = {T[j]:.3g}")
        if int(sub["simulated"].values[j]) == 1:
            a1.step(centers, sub["sim_density"].values[j], where="mid", color=c, lw=0.8,
                    alpha=0.8)
    a1.set_ylim(0, 1.08 * top)
    a1.set(xlabel="θ", ylabel="ρ(θ)",
           title=f"steady state (Eq. 5); steps: Eq. 11 simulation, bin {width:.2g}")
    a1.legend(fontsize=8)

    # basin probabilities
    sim = sub["simulated"].values == 1
    for k in range(K):
        lab = f"basin at θ ≈ {float(sub['basin_theta_tr'][k]):.2f}"
        a2.plot(T, sub["basin_prob"].values[:, k], color=colors[k], label=lab)
        a2.plot(T, sub["basin_prob_eq6"].values[:, k], color=colors[k], ls="--", lw=1)
        if sim.any():
            a2.errorbar(T[sim], sub["sim_basin_prob"].values[sim, k],
                        yerr=2 * sub["sim_basin_prob_se"].values[sim, k], fmt="o", ms=4,
                        color=colors[k], capsize=2)
    a2.set_xscale("log")
    a2.set_ylim(-0.03, 1.03)
    a2.set(xlabel="temperature T", ylabel="basin probability",
           title="basin probability (solid: exact; dashed: Eq. 6; dots: simulation ±2 SE)")
    a2.legend(fontsize=8)

    # expected losses
    for var, c, lab in (("train", "tab:blue", "train"), ("test", "tab:orange", "test")):
        a3.plot(T, sub[f"{var}_loss"], color=c, label=f"E[$U^{{{lab}}}$] exact")
        a3.plot(T, sub[f"{var}_loss_eq4"], color=c, ls="--", lw=1, label=f"{lab}: Eq. 4")
        a3.plot(T, sub[f"{var}_loss_eq8"], color=c, ls=":", lw=1, label=f"{lab}: Eq. 8")
        if sim.any():
            a3.plot(T[sim], sub[f"sim_{var}_loss"].values[sim], "o", ms=4, color=c)
    t_opt = float(sub["optimal_temperature"])
    a3.axvline(t_opt, color="0.4", ls="-.", lw=1, label=f"lowest test loss: T = {t_opt:.3g}")
    a3.set_xscale("log")
    lo = np.nanmin([sub["train_loss"].min(), sub["test_loss"].min()])
    hi = np.nanmax([sub["train_loss"].max(), sub["test_loss"].max()])
    a3.set_ylim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
    a3.set(xlabel="temperature T", ylabel="expected loss",
           title="expected losses (dots: simulation)")
    a3.legend(fontsize=7, ncol=2)

    desc = str(sub["description"].values)
    fig.suptitle(f"{name}" + (f": {desc}" if desc else ""), fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_checks(ds, path) -> None:
    plt, sns = _setup()
    names = [str(n) for n in ds["basin_set"].values]
    pal = dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))
    T = ds["temperature"].values
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8))
    (a0, a1), (a2, a3) = axes
    for n in names:
        sub = ds.sel(basin_set=n)
        a0.plot(T, sub["log_mass_eq6_error"], color=pal[n], label=n)
        a1.plot(T, np.abs(sub["test_loss_eq8"] - sub["test_loss"]), color=pal[n], ls=":")
        a1.plot(T, np.abs(sub["test_loss_eq4"] - sub["test_loss"]), color=pal[n], ls="--",
                label=n)
        tau = np.minimum(sub["relaxation_time"].values, TAU_CLIP)   # inf: overflowed
        a2.plot(T, tau, color=pal[n], label=n)
        sim = sub["simulated"].values == 1
        a2.plot(T[sim], tau[sim], "o", color=pal[n], ms=4)
        if sim.any():
            K = int(sub["n_basins"])
            ex = sub["basin_prob"].values[sim, :K].ravel()
            si = sub["sim_basin_prob"].values[sim, :K].ravel()
            se = sub["sim_basin_prob_se"].values[sim, :K].ravel()
            a3.errorbar(ex, si, yerr=2 * se, fmt="o", ms=4, color=pal[n], capsize=2, label=n)
    ref = T * float(np.nanmedian(ds["log_mass_eq6_error"].values
                                 / ds["temperature"].values[None, :]))
    a0.plot(T, ref, color="0.5", lw=3, alpha=0.4, label="∝ T")
    for ax in (a0, a1, a2):
        ax.set_xscale("log")
        ax.set_yscale("log")
    a0.set(xlabel="temperature T", ylabel="max_k |log mass, Laplace − exact|",
           title="Eq. 6: Laplace basin masses vs exact integrals")
    a0.legend(fontsize=8)
    a1.set(xlabel="temperature T", ylabel="|approx − exact| of E[$U^{test}$]",
           title="test-loss approximations (dotted: Eq. 8; dashed: Eq. 4)")
    a1.legend(fontsize=8)
    taus = ds["relaxation_time"].values
    if np.isfinite(taus).any():
        a2.set_ylim(0.5 * np.nanmin(taus), 3 * TAU_CLIP)
    a2.set(xlabel="temperature T", ylabel="relaxation time (Eq. 11 time units)",
           title=f"time for SGD diffusion to equilibrate (clipped at {TAU_CLIP:.0e}; dots: "
                 "simulated)")
    a2.legend(fontsize=8)
    a3.plot([0, 1], [0, 1], color="0.5", lw=1)
    a3.set(xlabel="basin probability, exact (Eq. 5)", ylabel="occupation, simulated (Eq. 11)",
           title="simulation vs steady state (±2 SE)", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
    if a3.get_legend_handles_labels()[0]:
        a3.legend(fontsize=8)
    else:
        a3.text(0.5, 0.5, "nothing simulated", ha="center", transform=a3.transAxes)
    fig.suptitle("synthetic basins: checks of the theory", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_all(nc_path, outdir) -> list[str]:
    """Every synthetic figure from the netCDF file; returns the paths written."""
    import xarray as xr

    with xr.open_dataset(nc_path) as ds:
        ds = ds.load()
    paths = []
    for name in ds["basin_set"].values:
        p = f"{outdir}/synthetic_{name}.png"
        plot_basin_set(ds, str(name), p)
        paths.append(p)
    p = f"{outdir}/synthetic_checks.png"
    plot_checks(ds, p)
    paths.append(p)
    return paths
