# Paths, settings and resources shared by the rules. The cell logic lives in shiftcurv.sweep
# (the same code the CLI uses), so the workflow and `shiftcurv gather/status/plan` agree.
import inspect
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package is installed where snakemake runs (scripts/setup.sh: `pip install -e .`): the rules
# call its `shiftcurv` CLI and this file imports its torch-free parts. Nothing is looked up next
# to this file (no <basedir>/src on sys.path), so the workflow also runs as a `module` of another
# project, from a copy without src/ or from a remote Snakefile (tests/test_module.py).
try:
    import shiftcurv  # noqa: F401
except ImportError:
    raise WorkflowError(
        "the shiftcurv package is not importable here: install it in the environment snakemake "
        "runs in (`pip install -e <shiftcurv checkout>`, or scripts/setup.sh)"
    ) from None
from shiftcurv.sweep import cost  # noqa: E402  (light: no torch)
from shiftcurv.sweep import fig5 as f5  # noqa: E402  (light: no torch)
from shiftcurv import sweep as sw  # noqa: E402  (light: no torch)
from shiftcurv.config import normalise_numbers  # noqa: E402
from shiftcurv.config.checks import data_source_problems, semantic_problems  # noqa: E402
from shiftcurv.plots.sweep import figure_names  # noqa: E402

config.update(normalise_numbers(config))  # YAML reads 1e-4 as a string
validate(config, "../schemas/config.schema.yaml")
_problems = semantic_problems(config)
if _problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(_problems))

CELLS = sw.cells(config)
if not (workflow.remote_exec or workflow.subprocess_exec):
    # a capped E*T budget is never silent: named in every dry run and at the start of every run
    for _line in sw.capped_lines(config):
        print(_line, file=sys.stderr)
CELL = "results/runs/{dataset}/{arch}/T~{T}/B~{B}/seed~{seed}"
DATA = "results/data/{dataset}.npz"
SWEEP_NC = "results/sweep.nc"
EQ4_CHAINS = sw.eq4_chains(config)
EQ4_CELLS = sw.eq4_cells(config)
FIGURES = figure_names(config)
THREADS = config["resources"]["threads"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    arch=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    T=r"[0-9](\.[0-9]+)?e[+-][0-9]{2,3}",
    B=r"[0-9]+",
    seed=r"[0-9]+",
    lr=r"[0-9](\.[0-9]+)?e[+-][0-9]{2,3}",
    split=r"default|shuffle_seed~[0-9]+|sample_size~[0-9]+",
    chain=r"(rr|wr)(_x[0-9]+(\.[0-9]+)?)?",


# a job's cell from its wildcards: the config's own Cell objects, built once (a path outside the
# config's cells, asked for by name, gets its own)
_CELL_OF = {tuple(c.wildcards.values()): c for c in CELLS}


def cell_of(wildcards):
    cell = _CELL_OF.get(
        (wildcards.dataset, wildcards.arch, wildcards.T, wildcards.B, wildcards.seed)
    )
    if cell is None:
        cell = sw.Cell(
            wildcards.dataset, wildcards.arch, wildcards.T, int(wildcards.B), int(wildcards.seed)
        )
    return cell


def job_function(f):
    """`f` (an input, params or resources function) with its signature computed once: Snakemake
    inspects it on every job it evaluates it for (inspect.signature: ~5 us a call, 6x less with
    `__signature__` set)."""
    f.__signature__ = inspect.signature(f)
    return f


def cell_files(name):
    """`name` (a file in each cell directory) for every cell of the sweep."""
    return [f"{c.dir}/{name}" for c in CELLS]


def settings_param(step, **extra):
    """Params carry only this cell's resolved settings (Snakemake reruns a job whose params
    change, so adding a temperature never touches the other cells)."""
    make = {
        "train": sw.train_settings,
        "minimize": sw.minimize_settings,
        "measure": sw.measure_settings,
    }[step]
    return job_function(lambda wildcards: sw.as_json(make(config, cell_of(wildcards), **extra)))


# -- cluster resources (profiles/slurm) --------------------------------------------------------
# Cell and Fig. 5 rules request a GPU only when the sweep trains on one (train.device cuda/auto):
# the local CPU sweeps never ask for GPUs. Their `runtime` (minutes, SLURM --time) comes from the
# cost model, calibrated on the benchmark files of finished jobs, and doubles on each retry; in a
# SLURM group job the runtimes of a cell's four rules add up.
# resources.gpu_request: `gpu` (resource gpu=1: sbatch --gpus=1, a gpu_model may be added in the
# profile) or `gres` (resource gres="gpu:1": sbatch --gres=gpu:1, for clusters that take only it).
def gpu_resources(config):
    if not cost.uses_gpu(config):
        return {}
    if config["resources"].get("gpu_request", "gpu") == "gres":
        return {"gres": "gpu:1"}
    return {"gpu": 1}


GPU_RESOURCES = gpu_resources(config)
_COST_MODEL = []


def cost_model():
    """The cost model, calibrated once per Snakemake process (on first use). Inside a cluster
    job (remote/subprocess mode) the wall time is granted already: no scan of the results."""
    if not _COST_MODEL:
        inside_job = workflow.remote_exec or workflow.subprocess_exec
        _COST_MODEL.append(cost.calibrate(config, state={} if inside_job else None))
    return _COST_MODEL[0]


def runtime_minutes(rule):
    """`resources: runtime=` of a cell rule: the cost model's wall time, growing with attempt."""

    def runtime(wildcards, attempt):
        return cost.runtime_minutes(cost_model(), config, cell_of(wildcards), rule, attempt)

    return job_function(runtime)


def print_plan_summary():
    """One line at the start of a run (onstart): cells done / left, submissions, hours left."""
    try:
        components = workflow.group_settings.group_components
        fig5_groups = {g: components.get(g, 1) for g in cost.FIG5_RULES}
        print(
            cost.summary_line(cost.plan(config, ".", components.get("cell", 1), fig5_groups)),
            file=sys.stderr,
        )
        cores = workflow.global_resources["_cores"].value
        if not workflow.local_exec and cores != THREADS:
            print(
                f"shiftcurv: note: --cores ({cores}) should "
                f"equal resources.threads ({THREADS}) under SLURM (profiles/slurm: `cores`), so "
                "a cell job requests one GPU and `threads` CPUs",
                file=sys.stderr,
            )
    except Exception as e:  # the plan is information: never stop a run for it
        print(f"shiftcurv plan: not available ({e})", file=sys.stderr)


def check_data_sources():
    """Local dataset files (CIFAR-10's `root:`) checked when a run starts (onstart), before any
    job: not at parse time, so that a dry run and `shiftcurv plan` work without the data. A
    dataset already prepared into results/data/ needs its source no more."""
    problems = [
        p
        for p in data_source_problems(config)
        if not Path(DATA.format(dataset=p.split(".")[-2])).exists()
    ]
    if problems:
        raise ValueError("dataset files missing or damaged:\n  " + "\n  ".join(problems))


# -- Fig. 5 (workflow/rules/fig5.smk) --------------------------------------------------------
FIG5_NC = f5.NC if f5.section(config) else []
FIG5_FIGURES = f5.figure_files(config)
FIG5_RECORDS = f5.record_files(config)


def fig5_runtime(stage):
    """Minutes for SLURM: the configured first-attempt wall time, doubled on each retry."""
    return lambda wildcards, attempt: config["fig5"]["runtime"][stage] * 2 ** (attempt - 1)


def fig5_stage2_cell(wildcards):
    return f5.Stage2Cell(wildcards.lr, int(wildcards.B), int(wildcards.seed))
