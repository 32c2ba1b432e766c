#!/usr/bin/env bash
# Set up (if needed) and run the embedded default sweep (MNIST-1D, CPU) to results/sweep.nc and
# results/figures/. Extra arguments go to snakemake, e.g.  bash scripts/run-default.sh -n
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
snakemake --profile profiles/local "$@"
