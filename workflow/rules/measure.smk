rule measure:
    input:
        data=DATA,
        theta_sgd=rules.train.output.weights,
        theta_train=rules.min_train.output.weights,
        theta_test=rules.min_test.output.weights,
        train_record=rules.train.output.record,
        min_train=rules.min_train.output.record,
        min_test=rules.min_test.output.record,
    output:
        f"{CELL}/measure.json",
    log:
        f"{CELL}/logs/measure.log",
    benchmark:
        f"{CELL}/benchmarks/measure.tsv"
    group:
        "cell"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=runtime_minutes("measure"),
    params:
        settings=settings_param("measure"),
    shell:
        "shiftcurv measure --data {input.data} --theta-train {input.theta_train}"
        " --theta-test {input.theta_test} --theta-sgd {input.theta_sgd} --train-record {input.train_record}"
        " --min-records {input.min_train} {input.min_test} --settings {params.settings:q}"
        " --out {output} --threads {threads} > {log} 2>&1"
