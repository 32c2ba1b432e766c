#!/usr/bin/env bash
# Set up (if needed) and run every check: lint, the unit tests and the end-to-end sweep tests.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k flow -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "[test] ruff"
ruff check src tests benchmarks
echo "[test] pytest"
python -m pytest -q -ra "$@"
