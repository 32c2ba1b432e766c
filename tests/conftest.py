import atexit
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

torch.set_num_threads(1)

# Snakemake loads every installed executor plugin when it starts (for their command-line options),
# and the SLURM plugin's module runs `scontrol show config` (10 s timeout) to word a --help text:
# on a machine with SLURM's client but no reachable controller (CI, outside the real-SLURM test)
# every snakemake start waited ~10 s. With SLURM_CONF=/dev/null scontrol fails at once (measured:
# `snakemake --version` 10.1 s -> 1.5 s, a dry run 10.3 s -> 1.8 s). Every subprocess of the
# tests inherits it; the real-SLURM tests put the real one back (tests/test_slurm.py, `slurm`).
SLURM_CONF = os.environ.get("SLURM_CONF")
os.environ["SLURM_CONF"] = os.devnull


REPO = Path(__file__).resolve().parents[1]


def tiny(workdir: Path, **changes) -> Path:
    """workdir with configs/tiny.yaml as its config.yaml, sections updated by `changes`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


# The one lint the workflow keeps on purpose: its rules declare no conda environment or container
# (they run in the environment snakemake runs in, with the package installed; README, "Software
# environment", says why). Any other lint fails the lint tests.
ACCEPTED_LINT = "Specify a conda environment or container for each rule."


def lint_problems(lint_output: str) -> list[str]:
    """The lints that `snakemake --lint` printed, less ACCEPTED_LINT; the output itself when it
    is neither a clean lint nor a list of lints (a parse error)."""
    if "Congratulations, your workflow is in a good condition" in lint_output:
        return []
    if not re.search(r"^Lints for (rule|snakefile)", lint_output, re.M):
        return [lint_output[-3000:]]
    titles = re.findall(r"^    \* (.+):$", lint_output, re.M)
    return [t for t in titles if t != ACCEPTED_LINT] if titles else [lint_output[-3000:]]


def job_resources(dry_run_output: str) -> dict[str, list[str]]:
    """{rule: [resources line, ...]} from a dry run's job listing."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\S*\s*rule \w+:)", dry_run_output):
        rule = re.search(r"rule (\w+):", block)
        res = re.search(r"^\s*resources: (.*)$", block, re.M)
        if rule and res:
            out.setdefault(rule[1], []).append(res[1])
    return out


def no_slurm_probe_dir() -> str:
    """An empty PATH entry, kept for the callers that still prepend it: SLURM_CONF above is what
    keeps the SLURM plugin's probe from stalling (no fake `scontrol`)."""
    d = Path(tempfile.mkdtemp(prefix="shiftcurv-path-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return str(d)


@pytest.fixture(scope="session")
def teacher_2048_file(tmp_path_factory):
    """A Gaussian-teacher dataset file (2048 train / 128 test) made by `shiftcurv prepare-data`,
    for the tests that train through the CLI."""
    from shiftcurv.cli import main

    path = tmp_path_factory.mktemp("data") / "teacher.npz"
    assert main(["prepare-data", "--settings", json.dumps(
        {"name": "gaussian-teacher", "options": {"n_train": 2048, "n_test": 128}}),
        "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def teacher():
    """A tiny synthetic classification set (256 train / 128 test, 8 inputs, 3 classes)."""
    from shiftcurv import data

    return data.build("gaussian-teacher", n_train=256, n_test=128)


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory, teacher):
    from shiftcurv import data

    path = tmp_path_factory.mktemp("data") / "teacher.npz"
    data.save(teacher, path)
    return path


def tiny_mlp(ds, seed=0, widths=(6,), batch_norm=False):
    from shiftcurv import models

    torch.manual_seed(seed)
    return models.build({"type": "mlp", "widths": list(widths), "batch_norm": batch_norm},
                        ds.in_shape, ds.n_classes)


class Quadratic:
    """U(θ) = ½(θ−θ*)ᵀA(θ−θ*) + U*: the same interface as Objective for the parts the flow
    and the measures use, with every answer known in closed form."""

    def __init__(self, A, theta_star, U_star=0.0):
        self.A, self.theta_star, self.U_star = A, theta_star, U_star
        self.n = 1

    def value(self, theta):
        d = theta - self.theta_star
        return float(0.5 * d @ self.A @ d) + self.U_star

    def value_and_grad(self, theta):
        return self.value(theta), self.A @ (theta - self.theta_star)

    def hvp(self, theta, v):
        return self.A @ v


@pytest.fixture
def quadratic():
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    eig = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.1, 0.02], dtype=torch.float64)
    A = q @ torch.diag(eig) @ q.T
    return Quadratic(A, torch.randn(6, generator=g, dtype=torch.float64), U_star=0.3)
