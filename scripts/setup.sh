#!/usr/bin/env bash
# Set up shiftcurv from nothing: a virtual environment in .venv with torch and the package.
#
# torch is installed FIRST and pinned: on a CPU machine `torch==2.13.0` is the CPU build, and with
# it in place pip never resolves a newer torch with several GB of CUDA packages. On a GPU cluster,
# choose the build you want:   SHIFTCURV_TORCH="torch==2.13.0" bash scripts/setup.sh
# (or any spec pip understands, e.g. with --index-url for a CUDA wheel index).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SHIFTCURV_VENV:-.venv}"
TORCH_SPEC="${SHIFTCURV_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
if ! "$VENV/bin/python" -m pip show -q torch >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC"
  pip install $TORCH_SPEC
fi
"$VENV/bin/python" -m pip show -q torch >/dev/null 2>&1 ||
  { echo "[setup] torch failed to install ($TORCH_SPEC)" >&2; exit 1; }
echo "[setup] installing shiftcurv and its dependencies"
# .[test]: pytest, ruff and the pinned snakefmt (with black, click, shfmt-py: none of them needs
# torch, so the CPU torch above stays; checked with `pip install --dry-run`).
pip install -e ".[test]"
# The tests' outside oracle (curvlinops) without torchvision: backpack-for-pytorch requires it for
# its examples only, and from PyPI it would pull a newer torch with CUDA (or, with torch pinned,
# a build that does not import with the CPU torch and so breaks `import pytorch_lightning`).
if ! "$VENV/bin/python" -m pip show -q curvlinops-for-pytorch >/dev/null 2>&1; then
  echo "[setup] installing the test oracle (curvlinops, without torchvision)"
  pip install --no-deps "curvlinops-for-pytorch>=3.0.1,<4" "backpack-for-pytorch>=1.6,<2"
  pip install "einconv>=0.1" "einops>=0.3,<1" "linear_operator>=0.2" "opt-einsum>=3.4" \
    "tqdm>=4" "unfoldNd>=0.2,<1" |
    grep -v -e "dependency resolver does not" -e "requires torchvision" || true  # expected
fi
"$VENV/bin/shiftcurv" --version
