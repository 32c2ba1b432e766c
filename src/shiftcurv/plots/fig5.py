"""The Fig. 5 figures, drawn from results/fig5.nc only (layout: shiftcurv.results.fig5).

- fig5.png: final train and test loss versus T = lr/B, one colour per B (mean ± sd over seeds),
  with the collapse numbers in the titles; the shuffle experiment (default vs reshuffled split,
  per trial); the sample-size experiment (loss vs sample size, mean ± sd over trials).
- fig5_bn.png: the batch-norm mismatch. Left: at each temperature T run at two or more batch
  sizes (fig5_results.shared_temperatures), the seed-mean minibatch train loss of the first
  stage-2 epoch (solid) and of the last epochs (dotted: `final_train_loss`) against B, next to
  stage 1's last epoch: train-mode BN throughout, batch sizes compared at a fixed T only (not
  averaged over lrs, which would give the small B the high T). Right: train-mode minus eval-mode
  final train loss versus T, per B.
"""

from __future__ import annotations

import json

import numpy as np
from matplotlib.ticker import NullFormatter

from shiftcurv.plots.style import setup as _setup
from shiftcurv.results.fig5 import shared_temperatures
from shiftcurv.sweep import format_temperature


def _summary(ds) -> dict:
    try:
        return json.loads(ds.attrs.get("summary", "{}"))
    except json.JSONDecodeError:
        return {}


def _not_run(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not in this config", ha="center", va="center",
            transform=ax.transAxes)
    ax.set_axis_off()


def _loss_vs_temperature(ax, ds, var: str, palette, title: str) -> None:
    for j, b in enumerate(ds["batch_size"].values):
        t = ds["temperature"].isel(batch_size=j).values
        v = ds[var].isel(batch_size=j)
        mean, sd = v.mean("seed", skipna=True).values, v.std("seed", skipna=True).values
        ok = np.isfinite(mean)
        if ok.any():
            order = np.argsort(t[ok])
            ax.errorbar(t[ok][order], mean[ok][order], yerr=np.nan_to_num(sd[ok][order]),
                        marker="o", ms=4, capsize=2, color=palette[j], label=f"B={b}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short decade collide
    ax.set_xlabel("temperature T = lr / B")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def _collapse_title(split: str, numbers: dict) -> str:
    c = numbers.get(f"collapse_{split}", {})
    if not c:
        return f"final {split} loss"
    return (f"final {split} loss\nspread across B at fixed T {c['within_T']:.3g} vs across T "
            f"{c['across_T']:.3g}\n(at fixed lr across B: {c['within_lr']:.3g})")


def fig5(ds, path) -> None:
    plt, sns = _setup()
    numbers = _summary(ds)
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    if "final_test_loss" in ds:
        palette = sns.color_palette("viridis", ds.sizes["batch_size"])
        for ax, split in zip(axes[:2], ("train", "test"), strict=True):
            _loss_vs_temperature(ax, ds, f"final_{split}_loss", palette,
                                 _collapse_title(split, numbers))
    else:
        for ax in axes[:2]:
            _not_run(ax, "temperature experiment")
    ax = axes[2]
    if "shuffle_test_loss" in ds:
        for k, (label, colour) in enumerate((("default", "tab:blue"), ("shuffle", "tab:red"))):
            for split, marker in (("train", "o"), ("test", "s")):
                v = ds[f"{label}_{split}_loss"].values
                x = k + (0.15 if split == "test" else -0.15) + np.linspace(-0.05, 0.05, len(v))
                ax.scatter(x, v, color=colour, marker=marker, s=14,
                           label=f"{label} split, {split}")
        d = numbers.get("shuffle_minus_default_test", {})
        ax.set_xticks([0, 1], ["default split", "reshuffled"])
        ax.set_ylabel("final loss (nats)")
        ax.set_title(f"shuffle: test loss change {d.get('mean', np.nan):+.3g} ± "
                     f"{d.get('se', np.nan):.2g} (n={d.get('n', 0)})", fontsize=9)
        ax.legend(fontsize=7)
    else:
        _not_run(ax, "shuffle experiment")
    ax = axes[3]
    if "sample_test_loss" in ds:
        sizes = ds["sample_size"].values
        for split, colour in (("train", "tab:blue"), ("test", "tab:red")):
            v = ds[f"sample_{split}_loss"]
            ax.errorbar(sizes, v.mean("trial", skipna=True).values,
                        yerr=np.nan_to_num(v.std("trial", skipna=True).values), marker="o",
                        capsize=2, color=colour, label=split)
        ax.set_xlabel("sample size (train + test, split proportionally)")
        ax.set_ylabel("final loss (nats)")
        ax.set_title("sample size", fontsize=9)
        ax.legend(fontsize=7)
    else:
        _not_run(ax, "sample-size experiment")
    fig.suptitle(f"Fig. 5: {ds.attrs.get('dataset', '')} / {ds.attrs.get('arch', '')}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bn_panel(ax, ds, palette) -> None:
    """Train-mode minibatch loss against B at fixed T: first stage-2 epoch (solid), last epochs
    (dotted), and stage 1's last epoch (dashed line); one colour per shared T."""
    first = ds["first_train_loss"].mean("seed", skipna=True).values
    final = ds["final_train_loss"].mean("seed", skipna=True).values
    groups = shared_temperatures(ds["temperature"].values, np.isfinite(first))
    if not groups:
        ax.text(0.5, 0.5, "no temperature T = lr / B\nrun at two or more batch sizes",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    bs = ds["batch_size"].values
    colours = palette(len(groups))
    for (t, cells), colour in zip(groups, colours, strict=True):
        b = [bs[j] for _, j in cells]
        ax.plot(b, [first[i, j] for i, j in cells], marker="o", color=colour,
                label=f"T={format_temperature(t)}")
        last = np.array([final[i, j] for i, j in cells])
        ok = np.isfinite(last)
        # "_": same colour, no second legend entry (the title says what dotted is)
        ax.plot(np.array(b)[ok], last[ok], marker="s", ms=3, ls=":", color=colour,
                label=f"_T={format_temperature(t)}, last epochs")
    ref = ds.get("stage1_last_train_loss")  # absent from a fig5.nc gathered before it existed
    if ref is not None and np.isfinite(ref.values).any():
        b1 = ref.attrs.get("batch_size")
        ax.axhline(float(ref.mean(skipna=True)), color="k", ls="--",
                   label="stage 1, last epoch" + (f" (B={b1})" if b1 is not None else ""))
    ax.set_xscale("log")
    y = np.concatenate([line.get_ydata() for line in ax.get_lines()]).astype(float)
    y = y[np.isfinite(y) & (y > 0)]
    if len(y) and y.max() > 10 * y.min():  # log only when the losses span a decade
        ax.set_yscale("log")
    ax.set_xticks(bs, [str(b) for b in bs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("stage-2 batch size B (at fixed T = lr / B)")
    ax.set_ylabel("mean minibatch train loss, train-mode BN (nats)")
    ax.set_title("BN mismatch at fixed T = lr / B, train-mode BN throughout (seed means)\n"
                 "solid: first stage-2 epoch; dotted: median of the last epochs", fontsize=9)
    ax.legend(fontsize=7)


def fig5_bn(ds, path) -> None:
    plt, sns = _setup()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if "first_train_loss" not in ds:
        for ax in axes:
            _not_run(ax, "temperature experiment")
    else:
        bn_panel(axes[0], ds, lambda n: sns.color_palette("magma", n))
        gap = ds["final_train_loss"] - ds["final_eval_train_loss"]
        ds = ds.assign(bn_gap=gap)
        _loss_vs_temperature(axes[1], ds, "bn_gap",
                             sns.color_palette("viridis", ds.sizes["batch_size"]),
                             "final train loss: train-mode minus eval-mode BN")
        axes[1].set_ylabel("difference (nats)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_all(ds, outdir) -> list[str]:
    from pathlib import Path

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("fig5", fig5), ("fig5_bn", fig5_bn)):
        p = out / f"{name}.png"
        draw(ds, p)
        paths.append(str(p))
    return paths
