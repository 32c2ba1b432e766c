#!/usr/bin/env bash
# Set up (if needed) and run the embedded default sweep (MNIST-1D, CPU) to results/sweep.nc and
# results/figures/. Extra arguments go to snakemake, e.g.  bash scripts/run-default.sh -n
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# A local run never talks to SLURM: SLURM_CONF=/dev/null spares it the ~10 s that the SLURM
# executor plugin's `scontrol show config` probe (run whenever snakemake starts) waits where
# SLURM's client is installed but no controller answers (README, "Running on a SLURM cluster").
SLURM_CONF=/dev/null snakemake --profile profiles/local "$@"
