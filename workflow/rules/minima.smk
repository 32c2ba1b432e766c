rule min_train:
    input:
        data=DATA,
        weights=rules.train.output.weights,
        record=rules.train.output.record,
    output:
        weights=f"{CELL}/theta_train.safetensors",
        record=f"{CELL}/min_train.json",
    log:
        f"{CELL}/logs/min_train.log",
    benchmark:
        f"{CELL}/benchmarks/min_train.tsv"
    group:
        "cell"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=runtime_minutes("min_train"),
    params:
        settings=settings_param("minimize", split="train"),
    shell:
        "shiftcurv minimize --data {input.data} --init {input.weights}"
        " --init-record {input.record} --settings {params.settings:q}"
        " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
        " > {log} 2>&1"


use rule min_train as min_test with:
    output:
        weights=f"{CELL}/theta_test.safetensors",
        record=f"{CELL}/min_test.json",
    log:
        f"{CELL}/logs/min_test.log",
    benchmark:
        f"{CELL}/benchmarks/min_test.tsv"
    resources:
        **GPU_RESOURCES,
        runtime=runtime_minutes("min_test"),
    params:
        settings=settings_param("minimize", split="test"),
