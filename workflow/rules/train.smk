rule train:
    input:
        data=DATA,
    output:
        weights=f"{CELL}/theta_sgd.safetensors",
        record=f"{CELL}/train.json",
    params:
        settings=settings_param("train"),
    log:
        f"{CELL}/logs/train.log",
    benchmark:
        f"{CELL}/benchmarks/train.tsv"
    threads: THREADS
    group:
        "cell"
    conda:
        "../envs/shiftcurv.yaml"
    shell:
        "shiftcurv train --data {input.data} --settings {params.settings:q}"
        " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
        " > {log} 2>&1"
