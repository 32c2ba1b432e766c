# The paper's Fig. 5 experiments (Appendix G.1; docs/fig5.md), when the config has a `fig5`
# section: stage 1 once per seed, stage 2 per (lr, B, seed) from that seed's stage-1 weights, and
# the shift runs per (split, trial). Each is one `shiftcurv train` job with its own settings in
# params (a change reruns only that run); `snakemake fig5` builds only this part. Paths, settings
# and the runtime helper: shiftcurv.sweep.fig5 and common.smk. Under SLURM each stage is a
# group of its own name, and profiles/slurm's `group-components` packs K runs of a stage into one
# submission (run one after the other, wall times summed): K = ⌊24 h / fig5.runtime⌋, so the
# paper config submits 2 + 187 + 59 jobs, not 10 + 560 + 175 (shiftcurv.sweep.cost).


rule fig5_stage1:
    input:
        data=DATA,
        pack=fig5_pack_record_of(f5.STAGE1_DIR),
    output:
        weights=f"{f5.STAGE1_DIR}/{f5.WEIGHTS}",
        record=f"{f5.STAGE1_DIR}/{f5.RECORD}",
    log:
        f"{f5.STAGE1_DIR}/train.log",
    benchmark:
        f"{f5.STAGE1_DIR}/benchmark.tsv"
    group:
        "fig5_stage1"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=fig5_runtime("stage1"),
    params:
        settings=lambda wc: sw.as_json(f5.stage1_settings(config, int(wc.seed))),
    shell:
        "exec shiftcurv train --data {input.data} --settings {params.settings:q}"
        " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
        " > {log} 2>&1"


rule fig5_stage2:
    input:
        data=DATA,
        init=rules.fig5_stage1.output.weights,
        pack=fig5_pack_record_of(f5.STAGE2_DIR),
    output:
        weights=f"{f5.STAGE2_DIR}/{f5.WEIGHTS}",
        record=f"{f5.STAGE2_DIR}/{f5.RECORD}",
    log:
        f"{f5.STAGE2_DIR}/train.log",
    benchmark:
        f"{f5.STAGE2_DIR}/benchmark.tsv"
    group:
        "fig5_stage2"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=fig5_runtime("stage2"),
    params:
        settings=lambda wc: sw.as_json(f5.stage2_settings(config, fig5_stage2_cell(wc))),
    shell:
        "exec shiftcurv train --data {input.data} --init {input.init}"
        " --settings {params.settings:q} --out-weights {output.weights}"
        " --out-record {output.record} --threads {threads} > {log} 2>&1"


rule fig5_shift:
    input:
        data=DATA,
        pack=fig5_pack_record_of(f5.SHIFT_DIR),
    output:
        weights=f"{f5.SHIFT_DIR}/{f5.WEIGHTS}",
        record=f"{f5.SHIFT_DIR}/{f5.RECORD}",
    log:
        f"{f5.SHIFT_DIR}/train.log",
    benchmark:
        f"{f5.SHIFT_DIR}/benchmark.tsv"
    group:
        "fig5_shift"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=fig5_runtime("shift"),
    params:
        settings=lambda wc: sw.as_json(f5.shift_settings(config, wc.split, int(wc.seed))),
    shell:
        "exec shiftcurv train --data {input.data} --settings {params.settings:q}"
        " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
        " > {log} 2>&1"


# Fig. 5 runs packed (`pack: K`, shiftcurv.sweep.packs): the runs of a stage whose outputs are
# missing when the DAG is built run K at a time in one process, staged, and each run's own job
# above takes its result over (shiftcurv.commands._staging). Stage 2 (plain SGD from given weights)
# packs per batch size and trains vectorized; stage 1 (momentum) and the shift runs (each its
# own data) run one after the other (`shiftcurv run-steps`): imports and data once per pack.
rule fig5_pack:
    input:
        data=DATA,
    output:
        record=f"{FIG5_PACK}.json",
    log:
        f"{FIG5_PACK}.log",
    benchmark:
        f"{FIG5_PACK}.benchmark.tsv"
    wildcard_constraints:
        stage="stage1|shift",
        pack=r"[0-9a-f]{10}",
    # longest work first on few cores (shiftcurv.sweep.packs.PRIORITY)
    priority: lambda wildcards: packs.fig5_priority(wildcards.stage)
    group:
        "pack"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=fig5_pack_runtime(FIG5_PACK),
    params:
        steps=lambda wildcards: sw.as_json(
            packs.fig5_pack_steps(fig5_pack_runs(FIG5_PACK)(wildcards))
        ),
    run:
        spec = write_pack_spec(output.record, params.steps)
        shell(
            "exec shiftcurv run-steps --steps @{spec} --out-record {output.record}"
            " --threads {threads} > {log} 2>&1"
        )


rule fig5_train_pack:
    input:
        data=DATA,
        # the stage-1 weights its runs start from (made by the stage-1 jobs)
        init=lambda wildcards: packs.fig5_pack_inputs(fig5_pack_runs(FIG5_STAGE2_PACK)(wildcards)),
    output:
        record=f"{FIG5_STAGE2_PACK}.json",
    log:
        f"{FIG5_STAGE2_PACK}.log",
    benchmark:
        f"{FIG5_STAGE2_PACK}.benchmark.tsv"
    wildcard_constraints:
        pack=r"[0-9a-f]{10}",
    priority: packs.PRIORITY["fig5_stage2"]
    group:
        "pack"
    threads: THREADS
    resources:
        **GPU_RESOURCES,
        runtime=fig5_pack_runtime(FIG5_STAGE2_PACK),
    params:
        cells=lambda wildcards: sw.as_json(
            packs.fig5_pack_cells(fig5_pack_runs(FIG5_STAGE2_PACK)(wildcards))
        ),
    run:
        spec = write_pack_spec(output.record, params.cells)
        shell(
            "exec shiftcurv train-pack --data {input.data} --cells @{spec}"
            " --out-record {output.record} --threads {threads} > {log} 2>&1"
        )


rule fig5_gather:
    input:
        FIG5_RECORDS,
    output:
        nc=f5.NC,
        summary=report(f5.SUMMARY, category="Fig. 5"),
    log:
        "results/logs/fig5_gather.log",
    params:
        fig5=sw.as_json(config.get("fig5") or {}),  # only its own section: a rerun trigger
    shell:
        "shiftcurv fig5-gather --fig5-json {params.fig5:q} --out {output.nc}"
        " --summary {output.summary} > {log} 2>&1"


rule fig5_plots:
    input:
        f5.NC,
    output:
        [report(f, category="Fig. 5") for f in FIG5_FIGURES],
    log:
        "results/logs/fig5_plots.log",
    shell:
        "shiftcurv fig5-plot --fig5 {input} --outdir results/figures > {log} 2>&1"


rule fig5:
    input:
        FIG5_NC,
        FIG5_FIGURES,
