"""The cluster profile (profiles/slurm): lint and dry runs with the SLURM executor anywhere, and
the tiny sweep on a real single-node SLURM (tests/slurm/start-slurm.sh) where the tests run as
root with apt (CI): every cell runs as one SLURM job, and sweep.nc equals a local run's."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import job_resources, tiny

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles/slurm"
OVERRIDE = REPO / "tests/slurm/profile"
START = REPO / "tests/slurm/start-slurm.sh"
CELL_RULES = ("train", "min_train", "min_test", "measure")
pytestmark = pytest.mark.slow


def snakemake(workdir, *args, timeout=900, check=True):
    """The real CLI in `workdir`, the venv's bin first on PATH (SLURM jobs inherit it)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # Snakemake cancels its SLURM jobs (scancel)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"snakemake {' '.join(args)} timed out after {timeout} s:\n"
                             f"{out[-5000:]}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out[-8000:]}")
    return out


# -- the profile, without a cluster -------------------------------------------------------------
def test_profile_is_lint_clean(tmp_path):
    out = snakemake(tiny(tmp_path), "--profile", str(PROFILE), "--lint")
    assert "Congratulations, your workflow is in a good condition" in out


def test_dry_run_with_the_slurm_executor(tmp_path):
    out = snakemake(tiny(tmp_path), "--profile", str(PROFILE), "-n")
    assert "This was a dry-run" in out
    res = job_resources(out)
    for rule in CELL_RULES:
        assert len(res[rule]) == 2, rule
        for line in res[rule]:
            # runtime from the cost model (uncalibrated: the generous priors), no GPU on CPU
            assert re.search(r"runtime=\d+", line) and not re.search(r"\bgpu=", line), line
            assert "slurm_partition=gpu" in line and "--signal=TERM@120" in line
    assert all("runtime=20" in line for line in res["gather"])


def test_gpu_sweeps_request_one_gpu_for_the_cell_rules_only(tmp_path):
    out = snakemake(tiny(tmp_path, train={"device": "cuda"}), "--profile", str(PROFILE), "-n")
    res = job_resources(out)
    for rule in CELL_RULES:
        assert all("gpu=1" in line for line in res[rule]), rule
    for rule in ("gather", "plots", "prepare_data"):
        assert all(not re.search(r"\bgpu=", line) for line in res[rule]), rule


def test_slurm_extra_holds_only_what_the_plugin_allows():
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    extra = profile["default-resources"]["slurm_extra"].strip("'\"")
    assert extra == "--signal=TERM@120"
    assert not any(re.search(p, extra) for p in get_forbidden_slurm_options())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert profile["rerun-incomplete"] is True and profile["latency-wait"] >= 30
    # the test override changes only where the jobs go and how big the node is
    override = yaml.safe_load((OVERRIDE / "config.yaml").read_text())
    ours, theirs = profile["default-resources"], override["default-resources"]
    changed = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
    assert changed <= {"slurm_partition", "slurm_account", "mem_mb"}, changed


# -- a real SLURM -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node SLURM started by tests/slurm/start-slurm.sh (installs it with apt when
    missing); stops exactly the daemons it started, by PID."""
    if os.geteuid() != 0:
        pytest.skip("the real-SLURM test needs root (it installs and starts munged, slurmctld, "
                    "slurmd); CI runs as root")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("no apt-get to install SLURM with, and SLURM is not installed")
    state = tmp_path_factory.mktemp("slurm-state")
    env = dict(os.environ, STATE=str(state))
    start = time.monotonic()
    out = subprocess.run(["bash", str(START), "start"], env=env, capture_output=True, text=True,
                         timeout=900)
    if out.returncode == 77:
        pytest.skip(out.stderr.strip().splitlines()[-1])
    try:
        assert out.returncode == 0, f"start-slurm.sh failed:\n{out.stdout}\n{out.stderr}"
        yield {"partition": out.stdout.split()[-1], "start_seconds": time.monotonic() - start}
    finally:
        subprocess.run(["bash", str(START), "stop"], env=env, capture_output=True, timeout=120)


def records(workdir):
    """{cell dir: {rule: record}} for the step records of every cell."""
    out: dict = {}
    for f in sorted(workdir.glob("results/runs/*/*/*/*/*/*.json")):
        rule = {"train.json": "train", "min_train.json": "min_train",
                "min_test.json": "min_test", "measure.json": "measure"}[f.name]
        out.setdefault(str(f.parent.relative_to(workdir)), {})[rule] = json.loads(f.read_text())
    return out


def test_tiny_sweep_on_slurm_equals_the_local_run(slurm, tmp_path):
    import xarray as xr

    assert slurm["partition"] == "debug"  # what tests/slurm/profile submits to
    local = tiny(tmp_path / "local")
    snakemake(local, "--profile", str(REPO / "profiles/local"), "--cores", "2")

    cluster = tiny(tmp_path / "slurm")
    start = time.monotonic()
    out = snakemake(cluster, "--profile", str(PROFILE), "--profile", str(OVERRIDE), timeout=900)
    elapsed = time.monotonic() - start
    print(f"SLURM start {slurm['start_seconds']:.0f} s, sweep under SLURM {elapsed:.0f} s")
    assert "shiftcurv plan: 0/2 cells done, 2 to run (8 cell jobs" in out  # onstart

    # every step of every cell ran inside a SLURM job, one job per cell
    recs = records(cluster)
    assert len(recs) == 2 and all(set(r) == set(CELL_RULES) for r in recs.values())
    ids = {cell: {rule: r[rule]["provenance"]["slurm_job_id"] for rule in CELL_RULES}
           for cell, r in recs.items()}
    for cell, by_rule in ids.items():
        assert None not in by_rule.values(), (cell, by_rule)
        assert len(set(by_rule.values())) == 1, (cell, by_rule)
    cell_jobs = {next(iter(v.values())) for v in ids.values()}
    assert len(cell_jobs) == 2
    # ... and each was one submission of the group "cell", no cell rule was submitted alone
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", out)
    groups = {jobid for jobid, log in submitted if "/group_cell" in log}
    assert groups == cell_jobs, submitted
    assert not [log for _, log in submitted if re.search(r"/rule_(train|min_|measure)", log)]
    assert len(submitted) == len(groups) + len(set(re.findall(
        r"has been submitted with SLURM jobid \d+ \(log: \S+/rule_(\w+?)/", out)))

    # the same numbers as on the laptop (deterministic CPU training, 1 thread each)
    a = xr.open_dataset(cluster / "results/sweep.nc")
    b = xr.open_dataset(local / "results/sweep.nc")
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) > 20
    for name in a.data_vars:
        xr.testing.assert_equal(a[name], b[name])  # values, dims, coords; not attrs
    assert (a["status"].values == "ok").all()

    # afterwards the plan knows the sweep is done and has calibrated itself on the benchmarks
    plan = subprocess.run([sys.executable, "-m", "shiftcurv.cli", "plan", "-d", str(cluster),
                           "--summary"], capture_output=True, text=True, timeout=60)
    assert plan.stdout.startswith("shiftcurv plan: 2/2 cells done, 0 to run"), plan.stdout
    assert "calibrated on 8 jobs" in plan.stdout
