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
from conftest import SLURM_CONF, job_resources, lint_problems, tiny

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
    """Clean but for the accepted lint (conftest.ACCEPTED_LINT)."""
    out = snakemake(tiny(tmp_path), "--profile", str(PROFILE), "--lint", check=False)
    assert lint_problems(out) == []


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
    # preempted jobs go back to the queue; submissions at a rate a controller takes
    assert profile["slurm-requeue"] is True
    rate = re.fullmatch(r"(\d+)/(\d+)s", profile["max-jobs-per-timespan"])
    assert rate and 1 <= int(rate[1]) / int(rate[2]) <= 20, profile["max-jobs-per-timespan"]
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
    # the real slurm.conf for this module's SLURM commands from here on (conftest points
    # SLURM_CONF at /dev/null so that local runs do not wait on the plugin's scontrol probe)
    restore = os.environ["SLURM_CONF"]
    if SLURM_CONF is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = SLURM_CONF
    env = dict(os.environ, STATE=str(state))
    start = time.monotonic()
    try:
        out = subprocess.run(["bash", str(START), "start"], env=env, capture_output=True,
                             text=True, timeout=900)
        if out.returncode == 77:
            pytest.skip(out.stderr.strip().splitlines()[-1])
        try:
            assert out.returncode == 0, f"start-slurm.sh failed:\n{out.stdout}\n{out.stderr}"
            yield {"partition": out.stdout.split()[-1], "start_seconds": time.monotonic() - start}
        finally:
            subprocess.run(["bash", str(START), "stop"], env=env, capture_output=True,
                           timeout=120)
    finally:
        os.environ["SLURM_CONF"] = restore


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


# -- wall time -> retry -> resume, and a requeue, on the real SLURM ------------------------------
# One cell whose training lasts about TRAIN_SECONDS. The profile's `--signal=TERM@<lead>` is set so
# that SLURM's signal is due SIGNAL_DUE_S into the cell job's first attempt. slurmctld checks the
# leads every 30 s and signals a job whose lead is due within 30 s (measured on Slurm 22.05: due at
# +10/+20/+30/+40/+60 s into a job, sent at +7/+23/+7/+23/+41 s), so the signal lands 15-45 s
# in: after training has started (about 10 s in), before it ends. The retry asks for twice the
# wall time, so its own signal is due an hour later.
TRAIN_SECONDS = 70
SIGNAL_DUE_S = 45
INTERRUPTED = re.compile(r"interrupted by SIGTERM at epoch (\d+)/(\d+); checkpoint written")
RESUMED = re.compile(r"resuming from checkpoint \S+ at epoch (\d+)/(\d+)")


def epochs_per_second(workdir: Path) -> float:
    """This machine's speed for the one-cell sweep's training (the CLI, 1 thread): the test
    sizes its training in seconds, not epochs, so that on a faster machine too the signal lands
    mid-training."""
    from shiftcurv import sweep as sw
    from shiftcurv.config import load_config

    cfg = load_config(tiny(workdir, temperatures=[1e-3], train={
        "epochs_ref": 2000, "max_epochs": 2000, "checkpoint_every": 2000}) / "config.yaml")
    (cell,) = sw.cells(cfg)
    data, run = workdir / "data.npz", [sys.executable, "-m", "shiftcurv.cli"]
    subprocess.run([*run, "prepare-data", "--settings",
                    sw.as_json(sw.dataset_settings(cfg, cell.dataset)), "--out", str(data)],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*run, "train", "--data", str(data), "--settings",
                    sw.as_json(sw.train_settings(cfg, cell)), "--out-weights",
                    str(workdir / "w.safetensors"), "--out-record", str(workdir / "r.json"),
                    "--threads", "1"], check=True, capture_output=True, timeout=300)
    return 2000 / json.loads((workdir / "r.json").read_text())["wall_seconds"]


def scontrol_job(jobid: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def minutes(slurm_time: str) -> float:
    """SLURM's [D-]HH:MM:SS in minutes."""
    days, _, hms = slurm_time.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def squeue(*args) -> str:
    return subprocess.run(["squeue", "-h", *args], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def test_wall_time_retry_and_requeue_resume_on_slurm(slurm, tmp_path):
    """SLURM's wall-time signal stops training at a checkpoint, Snakemake resubmits the cell job
    with twice the wall time and training resumes there (not from epoch 0); a `scontrol requeue`
    of the retry (what a preemption does) is no retry: the same job, the same wall time, and
    training resumes again. sweep.nc is the local run's."""
    import xarray as xr

    from shiftcurv import sweep as sw
    from shiftcurv.config import load_config

    epochs = int(round(epochs_per_second(tmp_path / "speed") * TRAIN_SECONDS, -3))
    one_cell = {"temperatures": [1e-3],
                "train": {"epochs_ref": epochs, "max_epochs": epochs, "checkpoint_every": 1000}}
    local, cluster = tiny(tmp_path / "local", **one_cell), tiny(tmp_path / "slurm", **one_cell)
    target = "results/sweep.nc"
    (cell,) = sw.cells(load_config(cluster / "config.yaml"))
    train_log = cluster / cell.dir / "logs/train.log"

    # the cell job's first wall time is the sum of its four rules' (the cost model's runtimes)
    dry = snakemake(cluster, "--profile", str(PROFILE), "--profile", str(OVERRIDE), "-n", target)
    res = job_resources(dry)
    limit_min = sum(int(re.search(r"runtime=(\d+)", res[r][0])[1]) for r in CELL_RULES)
    profile = yaml.safe_load((OVERRIDE / "config.yaml").read_text())
    profile["default-resources"]["slurm_extra"] = f"'--signal=TERM@{limit_min * 60 - SIGNAL_DUE_S}'"
    profile["retries"] = 1  # a requeue taken for a failure would leave none: the run would fail
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # the local reference run on the other core meanwhile
        on_slurm = pool.submit(snakemake, cluster, "--profile", str(PROFILE), "--profile",
                               str(tmp_path / "profile"), target, timeout=600)
        on_laptop = pool.submit(snakemake, local, "--profile", str(REPO / "profiles/local"),
                                "--cores", "1", target, timeout=600)
        seen: list[str] = []  # every line the train log showed (each attempt rewrites it)
        requeued = None
        while not on_slurm.done():
            time.sleep(0.5)
            text = train_log.read_text() if train_log.exists() else ""
            seen += [line for line in text.splitlines() if line not in seen]
            if requeued is None and RESUMED.search(text):  # the retry trains: preempt it
                running = [x.split("|")[0] for x in squeue("-t", "R", "-o", "%i|%k|%Z").split()
                           if "cell" in x and x.endswith(f"|{cluster}")]  # this run's only
                if running:
                    requeued = running[0]
                    subprocess.run(["scontrol", "requeue", requeued], check=True, timeout=30)
            elif requeued and squeue("-j", requeued, "-o", "%T|%r") == "PENDING|BeginTime":
                # SLURM holds a requeued job for 2 minutes before it may start again: not now
                subprocess.run(["scontrol", "update", f"JobId={requeued}", "StartTime=now"],
                               check=True, timeout=30)
        out, _ = on_slurm.result(), on_laptop.result()
    history = "\n".join(seen)
    print(f"{epochs} epochs; cell job wall time {limit_min} min, the retry's "
          f"{scontrol_job(requeued)['TimeLimit']}; train log:\n{history}")

    # the wall-time signal interrupted attempt 1; attempt 2 resumed there; the requeue
    # interrupted attempt 2, which resumed from that later checkpoint; never from epoch 0
    stops = [(int(m[1]), int(m[2])) for m in INTERRUPTED.finditer(history)]
    resumes = [(int(m[1]), int(m[2])) for m in RESUMED.finditer(history)]
    assert len(stops) == 2 and resumes == stops, (
        f"the signal did not land mid-training (raise TRAIN_SECONDS?):\n{history}")
    assert 0 < stops[0][0] < stops[1][0] < epochs and stops[0][1] == epochs
    assert len(re.findall(rf"^epoch 1/{epochs} ", history, re.M)) == 1, history
    record = json.loads((cluster / cell.dir / "train.json").read_text())
    assert record["epochs"] == epochs and record["status"] == "ok"

    # two submissions of the cell job: the retry with twice the wall time; the requeued retry
    # ran again as the same job, with the same wall time
    submitted = [j for j, log in re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)",
                                            out) if "/group_cell" in log]
    assert len(submitted) == 2 and requeued == submitted[1], (submitted, requeued)
    first, retry = scontrol_job(submitted[0]), scontrol_job(submitted[1])
    assert first["JobState"] == "FAILED" and first["Restarts"] == "0", first
    # requeueable because profiles/slurm asks (slurm-requeue): the test cluster's default is not
    assert first["Requeue"] == retry["Requeue"] == "1"
    assert minutes(first["TimeLimit"]) == limit_min, first["TimeLimit"]
    assert minutes(retry["TimeLimit"]) == 2 * limit_min, retry["TimeLimit"]
    assert retry["JobState"] == "COMPLETED" and retry["Restarts"] == "1", retry
    for name in ("train.json", "min_train.json", "min_test.json", "measure.json"):
        rec = json.loads((cluster / cell.dir / name).read_text())
        assert rec["provenance"]["slurm_job_id"] == requeued, name

    a, b = xr.open_dataset(cluster / target), xr.open_dataset(local / target)
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) > 20
    for name in a.data_vars:
        xr.testing.assert_equal(a[name], b[name])
    # measured: ok, or unconverged (the epochs follow this machine's speed, and a minimum found
    # after many more of them may stop at its step cap), never failed or missing
    assert set(a["status"].values.ravel()) <= {"ok", "unconverged"}, a["status"].values
