"""The figures' common style: matplotlib without a display, seaborn's theme, a log T axis."""

from __future__ import annotations


def setup():
    """(pyplot, seaborn) with the Agg backend and the paper theme (imported on first use: the
    plan and the Snakefile import figure names from this package without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def log_temperature_axis(ax) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short decades
    ax.set_xlabel("temperature T = lr / B")
