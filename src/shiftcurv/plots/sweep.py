"""The paper's figures, drawn from the gathered dataset (results/sweep.nc) only.

- fig1_{dataset}_{arch}.png: accuracy and loss along the line Θ(r) for the lowest and highest
  temperature (blue / red; train solid, test dashed), and exactly the fitted points (the fit
  window, reflected) with their symmetrized quadratic fits (paper Fig. 1).
Only cells with status ok are drawn; each title counts the cells masked (unconverged, diverged,
failed, missing).
- fig23_{dataset}_{arch}.png: versus temperature (log axis, mean ± sd over seeds as bands): test
  loss at θ_tr and its Taylor predictions (the paper's U_test_k + ½sᵀCs, and with the
  first-order term −g_testᵀs); U_tr_k and U_test_k; shift-curvature and ‖s‖; c_tr and
  c_test (fits; exact HVP values dashed) (paper Fig. 2/3).
- eq4_{dataset}_{arch}.png (when the sweep runs the `eq4` section): `shiftcurv.plots.eq4`.
- measures_{dataset}_{arch}.png (when the sweep computes Hessian measures): shift-curvature next
  to each curvature/sharpness measure (λ_max, trace, ε-sharpness, ...) versus temperature, one
  line per point (SGD solution, θ_tr, θ_test).
"""

from __future__ import annotations

import numpy as np

from shiftcurv.plots.eq4 import fig_eq4
from shiftcurv.plots.style import log_temperature_axis as _log_temperature_axis
from shiftcurv.plots.style import setup as _setup


def figure_kinds(config: dict) -> list[str]:
    hessian = config.get("measure", {}).get("hessian", {})
    eq4 = (config.get("eq4") or {}).get("enabled", False)
    return (["fig1", "fig23"] + (["measures"] if hessian.get("measures") else [])
            + (["eq4"] if eq4 else []))


def figure_names(config: dict, outdir: str = "results/figures") -> list[str]:
    return [f"{outdir}/{kind}_{d}_{a}.png" for d in config["datasets"] for a in config["archs"]
            for kind in figure_kinds(config)]


def _first_ok(sub, temperature):
    """The first seed (and batch size) of `sub` at `temperature` whose status is ok, or None."""
    cell = sub.sel(temperature=temperature)
    extra = [d for d in cell["status"].dims]
    stacked = cell.stack(_cell=extra) if extra else cell.expand_dims(_cell=[0])
    for i in range(stacked.sizes["_cell"]):
        one = stacked.isel(_cell=i)
        if str(one["status"].values) == "ok":
            return one
    return None


def fig1(sub, path, title: str) -> bool:
    """Profiles along the line for the lowest and highest temperature with an ok cell."""
    from shiftcurv.landscape.line import reflected_branch

    plt, _ = _setup()
    ok_t = [t for t in sub["temperature"].values if _first_ok(sub, t) is not None]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    if not ok_t:
        for ax in axes:
            ax.text(0.5, 0.5, "no cell finished ok", ha="center", transform=ax.transAxes)
    picks = [(ok_t[0], "tab:blue"), (ok_t[-1], "tab:red")] if ok_t else []
    if len(ok_t) == 1:
        picks = picks[:1]
    u = sub["u"].values
    for t, color in picks:
        cell = _first_ok(sub, t)
        r = u * float(cell["shift_norm"])
        for split, style in (("train", "-"), ("test", "--")):
            axes[0].plot(r, cell[f"{split}_acc_line"], style, color=color,
                         label=f"{split}, T={t:.3g}")
            axes[1].plot(r, cell[f"{split}_loss_line"], style, color=color,
                         label=f"{split}, T={t:.3g}")
    if picks:
        t, _ = picks[0]
        cell = _first_ok(sub, t)
        s = float(cell["shift_norm"])
        r = u * s
        w = float(cell["fit_window"]) * s
        for split, r_k, key, color in (("train", 0.0, "c_train", "tab:green"),
                                       ("test", s, "c_test", "tab:purple")):
            # exactly the fitted points: the window w|s| toward (test) / away from (train) the
            # other minimum, and their mirror image
            rr, UU = reflected_branch(r, cell[f"{split}_loss_line"].values, r_k, "below", w)
            U_k = float(cell["U_tr_min" if split == "train" else "U_test_min"])
            axes[2].plot(rr - r_k, UU - U_k, ".", color=color, ms=4,
                         label=f"{split} (reflected)")
            x = np.linspace(rr.min() - r_k, rr.max() - r_k, 200)
            c = float(cell[key])
            axes[2].plot(x, 0.5 * c * x**2, "-", color=color, lw=1,
                         label=f"fit: c_{split}={c:.3g}")
        axes[2].set_title(f"fitted points (reflected) and fits, T={t:.3g}")
        axes[2].set_xlabel("distance from the minimum along s")
        axes[2].set_ylabel("U - U_k")
    axes[0].set_ylabel("accuracy")
    axes[1].set_ylabel("loss")
    for ax in axes[:2]:
        ax.set_xlabel("r (θ_tr at 0, θ_test at |s|)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{title} ({status_counts(sub)})")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return bool(picks)


def status_counts(sub) -> str:
    """'10 of 12 cells ok; 1 unconverged, 1 diverged masked': what a figure leaves out."""
    values = [str(v) for v in np.asarray(sub["status"].values).ravel()]
    masked = {k: values.count(k) for k in sorted(set(values)) if k != "ok"}
    tail = "; " + ", ".join(f"{n} {k}" for k, n in masked.items()) + " masked" if masked else ""
    return f"{values.count('ok')} of {len(values)} cells ok{tail}"


def _long_frame(sub, names: list[str]):
    import pandas as pd

    frames = []
    for name in names:
        df = sub[name].where(sub["status"] == "ok").to_dataframe(name="value").reset_index()
        df["quantity"] = name
        frames.append(df[["temperature", "value", "quantity"]])
    return pd.concat(frames, ignore_index=True).dropna()


def _panels_vs_temperature(sub, panels, path, title: str, width: float = 4.2) -> None:
    """One row of panels, each plotting its variables vs T (mean ± sd over seeds as bands);
    exact-HVP and prediction lines dashed."""
    plt, sns = _setup()
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.8), squeeze=False)
    for ax, (names, panel_title) in zip(axes[0], panels, strict=True):
        df = _long_frame(sub, names)
        if df.empty:
            ax.text(0.5, 0.5, "no cell finished ok", ha="center", transform=ax.transAxes)
        else:
            dashes = {n: ((4, 2) if n.endswith("_hvp") or "prediction" in n else "")
                      for n in names}
            sns.lineplot(df, x="temperature", y="value", hue="quantity", style="quantity",
                         dashes=dashes, markers=True, errorbar="sd", ax=ax)
            ax.legend(fontsize=7)
        _log_temperature_axis(ax)
        ax.set_title(panel_title, fontsize=9)
        ax.set_ylabel("")
    fig.suptitle(f"{title} ({status_counts(sub)})")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def fig23(sub, path, title: str) -> None:
    _panels_vs_temperature(sub, [
        (["test_loss_at_train_min", "taylor_prediction", "taylor_prediction_first_order"],
         "test loss at θ_tr vs Eq. 3: paper's form, with −g_testᵀs"),
        (["U_tr_min", "U_test_min"], "losses at the minima"),
        (["shift_curvature", "shift_norm"], "shift-curvature sᵀCs and |s|"),
        (["c_train", "c_test", "c_train_hvp", "c_test_hvp"], "curvature along s"),
    ], path, title)


MEASURE_BASES = ("lambda_max", "lambda_min", "hessian_trace", "eps_sharpness_0.001",
                 "eps_sharpness_0.0005", "wme_nonuniformity", "grad_noise_trace", "grad_coherence")


def hessian_bases(ds) -> list[str]:
    return [b for b in MEASURE_BASES
            if any(f"{b}_{p}" in ds for p in ("sgd", "train", "test"))]


def fig_measures(sub, path, title: str) -> None:
    panels = [(["shift_curvature"], "shift-curvature sᵀCs")] + [
        ([f"{b}_{p}" for p in ("sgd", "train", "test") if f"{b}_{p}" in sub], b)
        for b in hessian_bases(sub)]
    _panels_vs_temperature(sub, panels, path, title)


def plot_all(ds, outdir) -> list[str]:
    """Every figure for every (dataset, arch) in the gathered dataset; returns the paths."""
    from pathlib import Path

    from shiftcurv.io import atomic_path

    Path(outdir).mkdir(parents=True, exist_ok=True)
    written = []
    for d in ds["dataset"].values:
        for a in ds["arch"].values:
            sub = ds.sel(dataset=d, arch=a)
            kinds = [("fig1", fig1), ("fig23", fig23)]
            if hessian_bases(ds):
                kinds.append(("measures", fig_measures))
            if "eq4_status" in ds:
                kinds.append(("eq4", fig_eq4))
            for kind, draw in kinds:
                path = Path(outdir) / f"{kind}_{d}_{a}.png"
                with atomic_path(path) as tmp:
                    draw(sub, tmp, f"{d} / {a}")
                written.append(str(path))
    return written
