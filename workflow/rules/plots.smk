rule plots:
    input:
        SWEEP_NC,
    output:
        [report(f, category="Figures", caption="../report/figures.rst") for f in FIGURES],
    log:
        "results/logs/plots.log",
    shell:
        "shiftcurv plot --sweep {input} --outdir results/figures > {log} 2>&1"
