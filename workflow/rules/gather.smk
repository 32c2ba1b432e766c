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
    params:
        config=sw.as_json(config),
    log:
        "results/logs/gather.log",
    conda:
        "../envs/shiftcurv.yaml"
    shell:
        "shiftcurv gather --config-json {params.config:q} --out {output.nc}"
        " --status-tsv {output.status} > {log} 2>&1"
