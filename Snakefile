# shiftcurv: the sweep. Edit config.yaml (or pass --configfile), then
#   snakemake --profile profiles/local      (laptop / CI)
#   snakemake --profile profiles/slurm      (cluster)
# Outputs: results/sweep.nc (every cell, one xarray.Dataset) and results/figures/.
import os

from snakemake.utils import min_version

min_version("9.0")


# config.yaml of the working directory (else the embedded default next to this file), unless
# --configfile names a sweep: Snakemake would otherwise deep-merge that file into this one
# (adding its datasets and archs to the default's instead of replacing them).
DEFAULT_CONFIG = "config.yaml"
if not os.path.exists(DEFAULT_CONFIG):
    DEFAULT_CONFIG = os.path.join(workflow.basedir, "config.yaml")
if not workflow.overwrite_configfiles:

    configfile: DEFAULT_CONFIG


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/minima.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/eq4.smk"
include: "workflow/rules/gather.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/fig5.smk"


report: "workflow/report/workflow.rst"


# seconds of light work each: on a cluster they run where snakemake runs, not as submissions
localrules:
    gather,
    plots,
    fig5_gather,
    fig5_plots,


rule all:
    default_target: True
    input:
        SWEEP_NC,
        FIGURES,
        SYNTHETIC_NC,
        SYNTHETIC_FIGURES,
        FIG5_NC,
        FIG5_FIGURES,


onstart:
    check_data_sources()
    print_plan_summary()
