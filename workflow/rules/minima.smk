rule min_train:
    input:
        data=DATA,
        weights=rules.train.output.weights,
        record=rules.train.output.record,
    output:
        weights=f"{CELL}/theta_train.safetensors",
        record=f"{CELL}/min_train.json",
    params:
        settings=settings_param("minimize", split="train"),
    log:
        f"{CELL}/logs/min_train.log",
    benchmark:
        f"{CELL}/benchmarks/min_train.tsv"
    threads: THREADS
    resources:
        runtime=runtime_minutes("min_train"),
        **GPU_RESOURCES,
    group:
        "cell"
    conda:
        "../envs/shiftcurv.yaml"
    shell:
        "shiftcurv minimize --data {input.data} --init {input.weights}"
        " --init-record {input.record} --settings {params.settings:q}"
        " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
        " > {log} 2>&1"


use rule min_train as min_test with:
    output:
        weights=f"{CELL}/theta_test.safetensors",
        record=f"{CELL}/min_test.json",
    params:
        settings=settings_param("minimize", split="test"),
    log:
        f"{CELL}/logs/min_test.log",
    benchmark:
        f"{CELL}/benchmarks/min_test.tsv"
    resources:
        runtime=runtime_minutes("min_test"),
        **GPU_RESOURCES,
