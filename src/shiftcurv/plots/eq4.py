"""The Eq. 4 figure of a (dataset, arch), from the eq4_* variables of results/sweep.nc only.

eq4_{dataset}_{arch}.png, one row per sampler (rr, wr):
1. the measured excess E[U_test(θ)] − U_test(θ_tr) against its two predictions (paper form at
   θ_test, local form at θ_tr) versus T, mean over seeds with ±1 combined standard error;
2. each term's size versus T on log-log axes (|value|, mean over seeds) with its fitted slope
   beside the paper's (½Tr(ΣC) ∝ T, sᵀCb ∝ T, ½bᵀCb ∝ T²);
3. the chain's diagnostics versus T: N_eff, |Geweke z|, λ·λ_max (2: the edge of stability).
4. with a within-basin ladder (`eq4.ladder`): ½Tr(ΣC) and ½bᵀCb of each cell's chains at
   T·m against T·m, one line per cell temperature, with the within-basin slope of ½Tr(ΣC).
Cells count when the cell and its chain are both ok; the title counts the rest.
"""

from __future__ import annotations

import numpy as np

from shiftcurv.plots.style import log_temperature_axis, setup

# term -> the paper's predicted power of T (Section 3, Appendix B)
PAPER_SLOPES = {"cov_term": 1.0, "cross_term": 1.0, "bias_term": 2.0, "first_order": None}
PREDICTIONS = ("excess", "excess_prediction", "local_excess_prediction")


def ok_mask(sub, sampler):
    return (sub["status"] == "ok") & (sub["eq4_status"].sel(sampler=sampler) == "ok")


def seed_mean(sub, name: str, sampler, absolute: bool = False):
    """(T, mean over seeds, combined SE) of eq4_<name> over ok cells."""
    da = sub[f"eq4_{name}"].sel(sampler=sampler).where(ok_mask(sub, sampler))
    se = sub.get(f"eq4_{name}_se")
    if absolute:
        da = abs(da)
    other = [d for d in da.dims if d != "temperature"]
    n = da.notnull().sum(other)
    mean = da.mean(other)
    err = (np.sqrt((se.sel(sampler=sampler).where(ok_mask(sub, sampler)) ** 2).sum(other)) / n
           if se is not None else mean * np.nan)
    return sub["temperature"].values, mean.values, np.asarray(err)


def log_slope(t, y) -> float:
    """Least-squares slope of log y on log T over the finite positive points (NaN if < 2)."""
    keep = np.isfinite(y) & (y > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(t[keep]), np.log(y[keep]), 1)[0])


def chain_counts(sub, sampler) -> str:
    values = [str(v) for v in np.asarray(sub["eq4_status"].sel(sampler=sampler)).ravel()]
    cells = [str(v) for v in np.asarray(sub["status"]).ravel()]
    ok = int(np.asarray(ok_mask(sub, sampler)).sum())
    other = {k: values.count(k) for k in sorted(set(values)) if k != "ok"}
    tail = (", " + ", ".join(f"{n} {k}" for k, n in other.items())) if other else ""
    return f"{sampler}: {ok} of {len(cells)} chains ok{tail}"


def fig_eq4(full, path, title: str) -> None:
    plt, _ = setup()
    samplers = [str(s) for s in full["sampler"].values]
    ladder = full.sizes.get("ladder", 1) > 1
    sub = full.sel(ladder=1.0) if "ladder" in full.dims else full
    fig, axes = plt.subplots(len(samplers), 3 + ladder, figsize=(4.7 * (3 + ladder),
                                                                 3.9 * len(samplers)),
                             squeeze=False)
    for row, sampler in zip(axes, samplers, strict=True):
        if ladder:
            ladder_panel(row[3], full, sampler)
        ax = row[0]
        for name, style in zip(PREDICTIONS, ("o-", "s--", "^:"), strict=True):
            t, m, e = seed_mean(sub, name, sampler)
            ax.errorbar(t, m, yerr=e, fmt=style, capsize=3, label=name)
        log_temperature_axis(ax)
        ax.set_title(f"{sampler}: excess over θ_tr, measured vs Eq. 4", fontsize=9)
        ax.legend(fontsize=7)
        ax = row[1]
        for name, paper in PAPER_SLOPES.items():
            t, m, e = seed_mean(sub, name, sampler, absolute=True)
            slope = log_slope(t, m)
            ref = f", paper {paper:g}" if paper is not None else ""
            ax.errorbar(t, m, yerr=e, fmt="o-", capsize=3,
                        label=f"|{name}| slope {slope:.2f}{ref}")
        ax.set_yscale("log")
        log_temperature_axis(ax)
        ax.set_title(f"{sampler}: Eq. 4 terms vs T (log-log)", fontsize=9)
        ax.legend(fontsize=7)
        ax = row[2]
        for name in ("n_eff", "geweke_z", "lr_lambda_max"):
            t, m, _ = seed_mean(sub, name, sampler, absolute=True)
            ax.plot(t, m, "o-", label=name if name != "geweke_z" else "|geweke_z|")
        ax.axhline(2.0, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        log_temperature_axis(ax)
        ax.set_title(f"{chain_counts(sub, sampler)}; diagnostics", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: Eq. 4 on SGD's steady state")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def ladder_panel(ax, full, sampler) -> None:
    """Each cell temperature's chains at T·m (seed mean): the terms' trend inside one basin."""
    from shiftcurv.plots.style import log_temperature_axis

    scales = full["ladder"].values
    for k, t0 in enumerate(full["temperature"].values):
        cell = full.sel(temperature=t0, sampler=sampler)
        ok = (cell["status"] == "ok") & (cell["eq4_status"] == "ok")
        other = [d for d in cell["eq4_cov_term"].dims if d != "ladder"]
        x = t0 * scales
        for name, style in (("cov_term", "o-"), ("bias_term", "s--")):
            y = abs(cell[f"eq4_{name}"].where(ok)).mean(other).values
            label = (f"T={t0:g}: ½Tr(ΣC) slope {log_slope(x, y):.2f}" if name == "cov_term"
                     else None)
            ax.plot(x, y, style, color=f"C{k}", label=label)
    ax.set_yscale("log")
    log_temperature_axis(ax)
    ax.set_xlabel("chain temperature T·m (solid ½Tr(ΣC), dashed ½bᵀCb)")
    ax.set_title(f"{sampler}: within-basin ladder (paper: slopes 1 and 2)", fontsize=9)
    ax.legend(fontsize=6)
