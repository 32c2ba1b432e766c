rule prepare_data:
    output:
        DATA,
    log:
        "results/logs/prepare_data/{dataset}.log",
    params:
        settings=lambda wc: sw.as_json(sw.dataset_settings(config, wc.dataset)),
    shell:
        "shiftcurv prepare-data --settings {params.settings:q} --out {output} > {log} 2>&1"
