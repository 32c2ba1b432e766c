rule gather:
    input:
        cell_files("measure.json"),
    output:
        nc=SWEEP_NC,
        status=report(
            "results/status.tsv",
            category="Sweep",
            caption="../report/status.rst",
        ),
    log:
        "results/logs/gather.log",
    conda:
        "../envs/shiftcurv.yaml"
    params:
        # the sweep's own config: the fig5 and synthetic sections have their own gathers
        config=sw.as_json({k: v for k, v in config.items() if k not in ("fig5", "synthetic")}),
    shell:
        "shiftcurv gather --config-json {params.config:q} --out {output.nc}"
        " --status-tsv {output.status} > {log} 2>&1"
