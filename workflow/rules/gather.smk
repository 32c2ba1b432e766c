rule gather:
    input:
        cell_files("measure.json"),
        [f"{c.dir}/{sw.EQ4_OUT.format(chain=n)}" for c in EQ4_CELLS for n in EQ4_CHAINS],
    output:
        nc=SWEEP_NC,
        status=report(
            "results/status.tsv",
            category="Sweep",
            caption="../report/status.rst",
        ),
    log:
        "results/logs/gather.log",
    params:
        # the sweep's own config: the fig5 and synthetic sections have their own gathers
        # (and eq4 only when it runs, so that sweeps without it keep the params they had)
        config=sw.as_json(
            {
                k: v
                for k, v in config.items()
                if k not in ("fig5", "synthetic") and (k != "eq4" or EQ4_CHAINS)
            }
        ),
    shell:
        "shiftcurv gather --config-json {params.config:q} --out {output.nc}"
        " --status-tsv {output.status} > {log} 2>&1"
