# Paths, settings and resources shared by the rules. The cell logic lives in shiftcurv.sweep
# (the same code the CLI uses), so the workflow and `shiftcurv gather/status/plan` agree.
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # run from a source checkout too
from shiftcurv import sweep as sw  # noqa: E402  (light: no torch)
from shiftcurv.plots import figure_names  # noqa: E402


config.update(sw.normalise_numbers(config))  # YAML reads 1e-4 as a string
validate(config, "../schemas/config.schema.yaml")
_problems = sw.semantic_problems(config)
if _problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(_problems))

CELLS = sw.cells(config)
CELL = "results/runs/{dataset}/{arch}/T~{T}/B~{B}/seed~{seed}"
DATA = "results/data/{dataset}.npz"
SWEEP_NC = "results/sweep.nc"
FIGURES = figure_names(config)
THREADS = config["resources"]["threads"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    arch=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    T=r"[0-9](\.[0-9]+)?e[+-][0-9]{2,3}",
    B=r"[0-9]+",
    seed=r"[0-9]+",


def cell_of(wildcards):
    return sw.Cell(wildcards.dataset, wildcards.arch, wildcards.T, int(wildcards.B),
                   int(wildcards.seed))


def cell_files(name):
    """`name` (a file in each cell directory) for every cell of the sweep."""
    return [f"{c.dir}/{name}" for c in CELLS]


def settings_param(step, **extra):
    """Params carry only this cell's resolved settings (Snakemake reruns a job whose params
    change, so adding a temperature never touches the other cells)."""
    make = {"train": sw.train_settings, "measure": sw.measure_settings}.get(step)

    def params(wildcards):
        cell = cell_of(wildcards)
        if step == "minimize":
            return sw.as_json(sw.minimize_settings(config, cell, extra["split"]))
        return sw.as_json(make(config, cell))

    return params
