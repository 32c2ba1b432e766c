# Eq. 4 per cell (config `eq4`, docs/eq4.md): SGD continued from theta_SGD samples the steady
# state; the record holds every term of Eq. 4 with its standard error. One job per chain
# (sampler x ladder step: rr, wr, rr_x0.5, ...).
rule sample:
    input:
        data=DATA,
        theta_sgd=rules.train.output.weights,
        theta_train=rules.min_train.output.weights,
        theta_test=rules.min_test.output.weights,
        train_record=rules.train.output.record,
        min_train=rules.min_train.output.record,
        min_test=rules.min_test.output.record,
    output:
        f"{CELL}/eq4_{{chain}}.json",
    log:
        f"{CELL}/logs/sample_{{chain}}.log",
    benchmark:
        f"{CELL}/benchmarks/sample_{{chain}}.tsv"
    group:
        "cell"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=runtime_minutes("sample"),
    params:
        settings=lambda wildcards: sw.as_json(
            sw.eq4_settings(config, cell_of(wildcards), wildcards.chain)
        ),
    shell:
        # exec: a stop signal reaches the sampler, which checkpoints after its batch, exits 75
        "exec shiftcurv sample --data {input.data} --theta-sgd {input.theta_sgd}"
        " --theta-train {input.theta_train} --theta-test {input.theta_test}"
        " --train-record {input.train_record}"
        " --min-records {input.min_train} {input.min_test} --settings {params.settings:q}"
        " --out {output} --threads {threads} > {log} 2>&1"
