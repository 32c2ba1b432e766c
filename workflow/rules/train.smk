rule train:
    input:
        data=DATA,
    output:
        weights=f"{CELL}/theta_sgd.safetensors",
        record=f"{CELL}/train.json",
    log:
        f"{CELL}/logs/train.log",
    benchmark:
        f"{CELL}/benchmarks/train.tsv"
    group:
        "cell"
    conda:
        "../envs/shiftcurv.yaml"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=runtime_minutes("train"),
    params:
        settings=settings_param("train"),
    shell:
        # exec: the step's signal (SLURM --signal before wall time) reaches the trainer itself,
        # which checkpoints at the epoch boundary and exits 75; no shell in between to die first
        "exec shiftcurv train --data {input.data} --settings {params.settings:q}"
        " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
        " > {log} 2>&1"
