"""`snakemake -n` time for a generated N-cell sweep: shiftcurv's Snakefile vs a minimal Snakefile
with the same DAG shape (prepare -> train -> min_train, min_test -> measure -> gather), run in the
same process environment. Goal: ratio <= 1.3. Also: the fixed cost of one step's process.

    python benchmarks/bench_dag.py [--cells 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MINIMAL = '''
configfile: "config.yaml"
CELLS = [(t, s) for t in config["temperatures"] for s in config["seeds"]]
CELL = "results/runs/d/a/T~{T}/B~100/seed~{seed}"

rule all:
    input: "results/sweep.nc"

rule prepare:
    output: "results/data/d.npz"
    shell: "touch {output}"

rule train:
    input: "results/data/d.npz"
    output: CELL + "/train.json"
    params: t=lambda wc: wc.T
    shell: "touch {output}"

rule min_train:
    input: CELL + "/train.json"
    output: CELL + "/min_train.json"
    shell: "touch {output}"

rule min_test:
    input: CELL + "/train.json"
    output: CELL + "/min_test.json"
    shell: "touch {output}"

rule measure:
    input: CELL + "/min_train.json", CELL + "/min_test.json"
    output: CELL + "/measure.json"
    shell: "touch {output}"

rule gather:
    input: expand(CELL + "/measure.json", zip, T=[c[0] for c in CELLS], seed=[c[1] for c in CELLS])
    output: "results/sweep.nc"
    shell: "touch {output}"
'''


def timed(cmd, cwd, env) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=10_000)
    args = p.parse_args()
    n_seeds = 100
    n_temps = max(1, args.cells // n_seeds)
    temps = [float(f"{1e-5 * 1.01 ** i:.6e}") for i in range(n_temps)]
    config = {"datasets": {"mnist1d": {}}, "archs": {"mlp": {"type": "mlp", "widths": [100]}},
              "temperatures": temps, "seeds": list(range(n_seeds))}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    snake = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        ours, minimal = Path(tmp, "ours"), Path(tmp, "minimal")
        for d in (ours, minimal):
            d.mkdir()
            (d / "config.yaml").write_text(yaml.safe_dump(config))
        (minimal / "Snakefile").write_text(MINIMAL)
        cells = n_temps * n_seeds
        print(f"{cells} cells ({n_temps} temperatures x {n_seeds} seeds), 4 jobs per cell")
        t_min = timed(snake, minimal, env)
        t_ours = timed([*snake, "-s", str(REPO / "Snakefile")], ours, env)
        print(f"minimal Snakefile  {t_min:7.2f} s  ({1000 * t_min / cells:.2f} ms/cell)")
        print(f"shiftcurv          {t_ours:7.2f} s  ({1000 * t_ours / cells:.2f} ms/cell)")
        print(f"ratio              {t_ours / t_min:7.2f}  (goal <= 1.3)")
    # the fixed cost of one step: process start + imports (+ what a trivial call does)
    for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                       ("shiftcurv --help", [sys.executable, "-m", "shiftcurv.cli", "--help"]),
                       ("import torch", [sys.executable, "-c", "import torch"]),
                       ("minimize/measure imports",
                        [sys.executable, "-c", "import shiftcurv.commands.measure, torch, "
                         "safetensors.torch, shiftcurv.landscape.objective, "
                         "shiftcurv.landscape.line"]),
                       ("train imports (Lightning)",
                        [sys.executable, "-c", "import shiftcurv.train.sgd"])):
        best = min(timed(cmd, REPO, env) for _ in range(3))
        print(f"fixed cost: {label:<28} {best:6.2f} s")


if __name__ == "__main__":
    main()
