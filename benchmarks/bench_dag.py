"""`snakemake -n` time for a generated N-cell sweep: shiftcurv's Snakefile vs a minimal Snakefile
with the same job graph (prepare -> [train_pack ->] train -> min_train, min_test -> measure
[, sample] -> gather), run in the same process environment. Goal: ratio <= 1.3. Also: the fixed
cost of one step's process.

    python benchmarks/bench_dag.py [--cells 10000] [--pack 12 1] [--no-breakdown]

The generated sweep uses the default config's features (config.yaml: its `pack` and its `eq4`
section), once per `--pack` (default: the default config's pack, then 1). Besides the plain
minimal Snakefile it times variants of it that add, one at a time, what shiftcurv's cell rules
declare: `log:`, `benchmark:`, a `params:` function, a `resources: runtime=` function,
`threads:` and `group:` (together: the "same directives" baseline), then the same files per rule
(named inputs and outputs, five wildcards with constraints, the pack record as an input
function) and shell commands with the same fields (together: the "twin" baseline). What each
step adds is Snakemake's own per-job work for that directive; shiftcurv over the twin is what
is left for our code (its parse time and the functions the rules call per job).

The SLURM executor plugin, which every `snakemake` run imports, runs `scontrol show config` at
import (10 s timeout): on a machine with a SLURM client but no controller that answers, every run
pays ~9 s. The runs here see a stub `scontrol` that fails at once, so that constant (the same on
both sides, and machine-dependent) does not hide the DAG's cost; the start-up of an empty
workflow is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from shiftcurv import sweep as sw  # torch-free

REPO = Path(__file__).resolve().parents[1]
N_SEEDS = 100

# the cumulative breakdown: (label, the feature it adds to the previous variant)
STEPS = [
    ("+ log:", "log"),
    ("+ benchmark:", "benchmark"),
    ("+ params: (a function: JSON of the cell)", "params"),
    ("+ resources: runtime= (a function)", "resources"),
    ("+ threads:, group:", "threads_group"),
    ("+ the same files (named in/outputs, wildcards)", "files"),
    ("+ shell commands with the same fields", "shell"),
]
SAME_DIRECTIVES = {"log", "benchmark", "params", "resources", "threads_group"}
TWIN = {f for _, f in STEPS}

# shell commands with the fields of shiftcurv's rules (workflow/rules/*.smk)
SHELL = {
    "train": "exec true train --data {input.data} --settings {params.settings:q}"
             " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
             " > {log} 2>&1",
    "min": "true minimize --data {input.data} --init {input.weights}"
           " --init-record {input.record} --settings {params.settings:q}"
           " --out-weights {output.weights} --out-record {output.record} --threads {threads}"
           " > {log} 2>&1",
    "measure": "true measure --data {input.data} --theta-train {input.theta_train}"
               " --theta-test {input.theta_test} --theta-sgd {input.theta_sgd}"
               " --train-record {input.train_record}"
               " --min-records {input.min_train} {input.min_test} --settings {params.settings:q}"
               " --out {output} --threads {threads} > {log} 2>&1",
    "train_pack": "exec true train-pack --data {input.data} --cells {params.settings:q}"
                  " --out-record {output} --threads {threads} > {log} 2>&1",
}


def minimal_snakefile(features: set[str]) -> str:
    """A minimal Snakefile of the sweep's job graph, with `features` (see STEPS) added."""
    f = features
    if "shell" in f and not {"files", "params", "log"} <= f:
        raise ValueError("shell needs files, params and log")
    files = "files" in f
    head = '''import json

configfile: "config.yaml"
TEMPS = config["bench"]["temps"]
CELLS = [(t, str(s)) for t in TEMPS for s in config["seeds"]]
K = config["pack"]
SEEDS = config["bench"]["eq4_seeds"]
EQ4 = [(t, s) for t, s in CELLS if SEEDS is None or int(s) in SEEDS]
CHAINS = config["bench"]["chains"]
DATA = "results/data/d.npz"
PACK = "results/packs/d/a/B~100/pack~{pack}"
PACK_OF = {c: PACK.format(pack=f"{i // K:010x}") + ".json" for i, c in enumerate(CELLS)}
MEMBERS = {}
for c, p in PACK_OF.items():
    MEMBERS.setdefault(p, []).append(c)
'''
    if files:
        head += '''CELL = "results/runs/{dataset}/{arch}/T~{T}/B~{B}/seed~{seed}"

wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    arch=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    T=r"[0-9](\\.[0-9]+)?e[+-][0-9]{2,3}",
    B=r"[0-9]+",
    seed=r"[0-9]+",
    pack=r"[0-9a-f]{10}",
    chain=r"(rr|wr)(_x[0-9]+(\\.[0-9]+)?)?",
'''
    else:
        head += 'CELL = "results/runs/d/a/T~{T}/B~100/seed~{seed}"\n'
    head += '''
def cell(t, s):
    return CELL.format(dataset="d", arch="a", T=t, B=100, seed=s)

rule all:
    input: "results/sweep.nc"

rule prepare:
    output: DATA
    shell: "touch {output}"

rule gather:
    input:
        [cell(t, s) + "/measure.json" for t, s in CELLS],
        [cell(t, s) + f"/eq4_{c}.json" for t, s in EQ4 for c in CHAINS],
    output: "results/sweep.nc"
    shell: "touch {output}"
'''

    def out(name, weights=True):  # a cell rule's outputs
        if files and weights:
            w = {"train": "theta_sgd", "min_train": "theta_train", "min_test": "theta_test"}[name]
            return f'weights=CELL + "/{w}.safetensors", record=CELL + "/{name}.json"'
        return f'CELL + "/{name}.json"'

    pack_input = 'lambda wc: PACK_OF[(wc.T, wc.seed)]'
    if files:
        after = ('data=DATA, theta_sgd=CELL + "/theta_sgd.safetensors", theta_train=CELL + '
                 '"/theta_train.safetensors", theta_test=CELL + "/theta_test.safetensors", '
                 'train_record=CELL + "/train.json", min_train=CELL + "/min_train.json", '
                 'min_test=CELL + "/min_test.json"')
        # as shiftcurv's: the pack record's input function, packed or not
        inputs = {"train": "data=DATA, pack=lambda wc: PACK_OF[(wc.T, wc.seed)] if K > 1 else []",
                  "min_train": 'data=DATA, weights=CELL + "/theta_sgd.safetensors", '
                               'record=CELL + "/train.json"',
                  "measure": after, "sample": after, "train_pack": "data=DATA"}
    else:
        inputs = {"train": f"DATA, *([{pack_input}] if K > 1 else [])",
                  "min_train": 'CELL + "/train.json"',
                  "measure": 'CELL + "/min_train.json", CELL + "/min_test.json"',
                  "sample": 'CELL + "/min_train.json", CELL + "/min_test.json"',
                  "train_pack": "DATA"}
    inputs["min_test"] = inputs["min_train"]
    outputs = {"train": out("train"), "min_train": out("min_train"),
               "min_test": out("min_test"), "measure": out("measure", False),
               "sample": 'CELL + "/eq4_{chain}.json"', "train_pack": 'PACK + ".json"'}
    base = {r: f'CELL + "/logs/{r}' for r in ("train", "min_train", "min_test", "measure")}
    bench = {r: f'CELL + "/benchmarks/{r}' for r in base}
    base["sample"], bench["sample"] = 'CELL + "/logs/sample_{chain}', \
        'CELL + "/benchmarks/sample_{chain}'
    rules = []
    for r in ("train_pack", "train", "min_train", "min_test", "measure", "sample"):
        lines = [f"rule {r}:", f"    input: {inputs[r]}", f"    output: {outputs[r]}"]
        if "log" in f:
            lines.append(f"    log: {base[r]}.log\"" if r != "train_pack"
                         else '    log: PACK + ".log"')
        if "benchmark" in f:
            lines.append(f"    benchmark: {bench[r]}.tsv\"" if r != "train_pack"
                         else '    benchmark: PACK + ".benchmark.tsv"')
        if "threads_group" in f:
            lines += ["    threads: 1", f'    group: "{"pack" if r == "train_pack" else "cell"}"']
        if "resources" in f:
            lines.append("    resources: runtime=lambda wc, attempt: 10 * 2 ** (attempt - 1)")
        if "params" in f:
            lines.append("    params: settings=lambda wc: json.dumps("
                         "MEMBERS[PACK.format(pack=wc.pack) + '.json'])" if r == "train_pack" else
                         f"    params: settings=lambda wc: json.dumps({{'rule': '{r}', "
                         "'T': float(wc.T), 'seed': int(wc.seed), 'lr': float(wc.T) * 100}, "
                         "sort_keys=True, separators=(',', ':'))")
        elif r == "train":
            lines.append("    params: t=lambda wc: wc.T")
        if "shell" in f:
            key = "min" if r.startswith("min_") else "measure" if r == "sample" else r
            lines.append(f'    shell: "{SHELL[key]}"')
        else:
            lines.append('    shell: "touch {output}"')
        if r == "train_pack":
            rules.append("if K > 1:\n\n" + "\n".join("    " + ln for ln in lines) + "\n")
        else:
            rules.append("\n".join(lines) + "\n")
    return head + "\n" + "\n".join(rules)


def sweep_config(cells: int, pack: int) -> dict:
    """The generated sweep: 100 seeds x cells/100 temperatures of one (dataset, arch), with the
    default config's `eq4` section (config.yaml) and the given `pack`."""
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    n_temps = max(1, cells // N_SEEDS)
    config = {"datasets": {"mnist1d": {}}, "archs": {"mlp": {"type": "mlp", "widths": [100]}},
              "temperatures": [float(f"{1e-5 * 1.01 ** i:.6e}") for i in range(n_temps)],
              "seeds": list(range(N_SEEDS)), "pack": pack}
    if default.get("eq4"):
        config["eq4"] = default["eq4"]
    return config


def eq4_plan(config: dict) -> tuple[list[str], list[int] | None]:
    """The Eq. 4 chains and sampled seeds shiftcurv derives from the config."""
    chains = sw.eq4_chains(config)
    seeds = (config.get("eq4") or {}).get("seeds") if chains else []
    return chains, seeds


def timed(cmd, cwd, env) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} in {cwd} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout + out.stderr


def jobs(log: str) -> str:
    m = re.search(r"^total\s+(\d+)$", log, re.M)
    return f"{int(m.group(1)):,} jobs" if m else "? jobs"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--pack", type=int, nargs="+", default=None,
                   help="pack sizes to time (default: the default config's pack, then 1)")
    p.add_argument("--no-breakdown", action="store_true",
                   help="only the plain, same-directives and twin baselines")
    args = p.parse_args()
    default_pack = int(yaml.safe_load((REPO / "config.yaml").read_text()).get("pack", 1))
    packs = args.pack or list(dict.fromkeys([default_pack, 1]))
    snake = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp, "bin")
        stub.mkdir()
        (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (stub / "scontrol").chmod(0o755)
        env = dict(os.environ, PATH=f"{stub}:{Path(sys.executable).parent}:{os.environ['PATH']}")
        empty = Path(tmp, "empty")
        empty.mkdir()
        (empty / "Snakefile").write_text("rule all:\n    input: []\n")
        t_start = min(timed(snake, empty, env)[0] for _ in range(2))
        config = sweep_config(args.cells, packs[0])
        chains, seeds = eq4_plan(config)
        n_temps = len(config["temperatures"])
        print(f"{n_temps * N_SEEDS} cells ({n_temps} temperatures x {N_SEEDS} seeds); eq4 "
              f"chains {chains or 'off'} on seeds {seeds if seeds is not None else 'all'}; "
              f"snakemake start-up (empty Snakefile) {t_start:.2f} s")
        for i, pack in enumerate(packs):
            config = sweep_config(args.cells, pack)
            minimal_config = {**config, "bench": {
                "chains": chains, "eq4_seeds": seeds,
                "temps": [sw.format_temperature(t) for t in config["temperatures"]]}}
            variants = [("minimal Snakefile (plain)", set())]
            if i == 0 and not args.no_breakdown:
                have: set[str] = set()
                for label, feature in STEPS:
                    have = have | {feature}
                    variants.append((label, have))
            else:
                variants += [("same directives", SAME_DIRECTIVES), ("twin", TWIN)]
            note = " (the default config's)" if pack == default_pack else ""
            print(f"\npack {pack}{note}:")
            times: dict[frozenset, float] = {}
            previous = None
            for label, features in variants:
                d = Path(tmp, f"pack{pack}", "minimal-" + "-".join(sorted(features)))
                d.mkdir(parents=True)
                (d / "config.yaml").write_text(yaml.safe_dump(minimal_config))
                (d / "Snakefile").write_text(minimal_snakefile(features))
                t, log = timed(snake, d, env)
                times[frozenset(features)] = t
                if previous is None:
                    note = f"({jobs(log)})"
                elif len(variants) > 3:  # the breakdown: what this step adds
                    note = f"({t - previous:+.2f} s)"
                else:
                    note = ""
                note += ("  = same directives" if features == SAME_DIRECTIVES else
                         "  = twin" if features == TWIN else "")
                print(f"  {label:<48} {t:7.2f} s  {note}")
                previous = t
            d = Path(tmp, f"pack{pack}", "ours")
            d.mkdir()
            (d / "config.yaml").write_text(yaml.safe_dump(config))
            t_ours, log = timed([*snake, "-s", str(REPO / "Snakefile")], d, env)
            t_min = times[frozenset()]
            t_same = times[frozenset(SAME_DIRECTIVES)]
            t_twin = times[frozenset(TWIN)]
            print(f"  {'shiftcurv':<48} {t_ours:7.2f} s  ({t_ours - t_twin:+.2f} s over the "
                  f"twin: our parse time and per-job functions; {jobs(log)})")
            print(f"  ratio vs the plain minimal           {t_ours / t_min:5.2f}  (goal <= 1.3)")
            print(f"  ratio vs the same directives         {t_ours / t_same:5.2f}  "
                  f"(log/benchmark/params/resources/threads/group: {t_same / t_min:.2f} x plain)")
            print(f"  ratio vs the twin                    {t_ours / t_twin:5.2f}  "
                  f"(+ the same files and commands: {t_twin / t_min:.2f} x plain)")
            net = [t - t_start for t in (t_ours, t_min)]
            print(f"  without the start-up                 {net[0] / net[1]:5.2f} vs plain, "
                  f"{net[0] / (t_twin - t_start):.2f} vs twin")
    # the fixed cost of one step: process start + imports (+ what a trivial call does)
    print()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                       ("shiftcurv --help", [sys.executable, "-m", "shiftcurv.cli", "--help"]),
                       ("import torch", [sys.executable, "-c", "import torch"]),
                       ("minimize/measure imports",
                        [sys.executable, "-c", "import shiftcurv.commands.measure, torch, "
                         "safetensors.torch, shiftcurv.landscape.objective, "
                         "shiftcurv.landscape.line"]),
                       ("train imports (Lightning)",
                        [sys.executable, "-c", "import shiftcurv.train.sgd"])):
        best = min(timed(cmd, REPO, env)[0] for _ in range(3))
        print(f"fixed cost: {label:<28} {best:6.2f} s")


if __name__ == "__main__":
    main()
