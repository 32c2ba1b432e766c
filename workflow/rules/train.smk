# Training: one job per cell (`train`), and with `pack: K` one job per pack (`train_pack`)
# whose staged outputs each cell's `train` takes over (workflow/rules/packs.smk,
# shiftcurv.sweep.packs, docs/packing.md).
include: "packs.smk"


rule train:
    input:
        data=DATA,
        pack=pack_record_of,
    output:
        weights=f"{CELL}/theta_sgd.safetensors",
        record=f"{CELL}/train.json",
    log:
        f"{CELL}/logs/train.log",
    benchmark:
        f"{CELL}/benchmarks/train.tsv"
    group:
        "cell"
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


rule train_pack:
    input:
        data=DATA,
    output:
        record=f"{PACK}.json",
    log:
        f"{PACK}.log",
    benchmark:
        f"{PACK}.benchmark.tsv"
    wildcard_constraints:
        pack=r"[0-9a-f]{10}",
    priority: packs.PRIORITY["cells"]
    group:
        "pack"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=pack_runtime,
    params:
        cells=lambda wildcards: sw.as_json(pack_members(wildcards)),
    run:
        # the cells and their later steps (docs/packing.md) go through a file: ~3.5 kB a cell,
        # over the 128 kB a single shell word may hold at K = 128
        spec = write_pack_spec(output.record, params.cells)
        shell(
            "exec shiftcurv train-pack --data {input.data} --cells @{spec}"
            " --out-record {output.record} --threads {threads} > {log} 2>&1"
        )
