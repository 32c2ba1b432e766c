rule prepare_data:
    output:
        DATA,
    params:
        settings=lambda wc: sw.as_json(sw.dataset_settings(config, wc.dataset)),
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../envs/shiftcurv.yaml"
    shell:
        "shiftcurv prepare-data --settings {params.settings:q} --out {output} > {log} 2>&1"
