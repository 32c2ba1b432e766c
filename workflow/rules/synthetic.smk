# Synthetic 1-D basins (paper Fig. 4 and Fig. 6, Appendix G.2): the exact SGD steady state, its
# Gaussian-mixture approximations and a simulation of the SGD diffusion, swept over temperature.
# Independent of the training sweep: `snakemake synthetic` builds only this. The config's
# optional `synthetic` section (workflow/schemas/synthetic.schema.yaml) is passed whole: the
# rule's only job is that section, so a change to it should rerun it.
import json

from shiftcurv.synthetic import figure_names as synthetic_figure_names

SYNTHETIC_NC = "results/synthetic.nc"
SYNTHETIC_FIGURES = synthetic_figure_names(config.get("synthetic", {}), "results/figures")


rule synthetic:
    output:
        nc=SYNTHETIC_NC,
        figures=[report(f, category="Synthetic basins") for f in SYNTHETIC_FIGURES],
    log:
        "results/logs/synthetic.log",
    # ~45 s on the default: not last, with the short pack jobs after it (packs.PRIORITY)
    priority: 1
    params:
        settings=json.dumps(config.get("synthetic", {}), sort_keys=True),
    shell:
        "shiftcurv synthetic --settings {params.settings:q} --out {output.nc}"
        " --figures results/figures > {log} 2>&1"
