"""Nothing lost: kills, signals, truncated files, diverged cells, and `shiftcurv status`.

The kill tests use real processes (`shiftcurv train`, `snakemake`) killed with SIGKILL or
signalled with SIGTERM; the reference for "bit-identical" is an uninterrupted run of the same
step with the same settings and thread count (1).
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from shiftcurv import sweep as sw
from shiftcurv.cli import main
from shiftcurv.config import load_config
from shiftcurv.sweep.status import incomplete_outputs
from shiftcurv.train.signals import EXIT_INTERRUPTED

REPO = Path(__file__).resolve().parents[1]


ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
ARCH = {"type": "mlp", "widths": [16]}
# 64 steps per epoch, 60 epochs: a few hundredths of a second per epoch, long enough to be caught
TRAIN = {"arch": ARCH, "temperature": 1e-3, "batch_size": 32, "seed": 0, "epochs_ref": 60,
         "temperature_ref": 1e-3, "max_epochs": 60, "checkpoint_every": 1}


# -- helpers ------------------------------------------------------------------------------------
def train_argv(data, out, settings=TRAIN):
    return ["train", "--data", str(data), "--settings", json.dumps(settings),
            "--out-weights", str(out / "w.safetensors"), "--out-record", str(out / "t.json"),
            "--threads", "1"]


def start_train(data, out, settings=TRAIN):
    cmd = [sys.executable, "-m", "shiftcurv.cli", *train_argv(data, out, settings)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(path: Path, proc=None, timeout=60.0):
    t0 = time.monotonic()
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended before {path} appeared:\n"
                                 f"{proc.communicate()[1]}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.005)


def weights(path):
    return load_file(str(path))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def truncate(path: Path, keep_mtime=False):
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    if keep_mtime:  # silent corruption: the file system does not say it changed
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(teacher_2048_file):
    return teacher_2048_file


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """The uninterrupted run (in this process: the same code, settings and thread count)."""
    out = tmp_path_factory.mktemp("reference")
    assert main(train_argv(data, out)) == 0
    assert not (out / "w.safetensors.ckpt").exists()
    return out


# -- training: SIGKILL, SIGTERM, SIGUSR1, damaged checkpoints ------------------------------------
def test_kill_9_mid_training_resumes_bit_identically(tmp_path, data, reference, capsys):
    proc = start_train(data, tmp_path)
    ckpt = tmp_path / "w.safetensors.ckpt"
    wait_for(ckpt, proc)
    proc.kill()  # SIGKILL: no handler runs
    assert proc.wait() == -signal.SIGKILL
    assert ckpt.exists() and not (tmp_path / "w.safetensors").exists()
    code, _, err = cli(capsys, *train_argv(data, tmp_path))
    assert code == 0
    assert "resuming from checkpoint" in err and str(ckpt) in err
    resumed_at = int(err.split("resuming from checkpoint")[1].split(" at epoch ")[1].split("/")[0])
    assert 1 <= resumed_at < 60  # really mid-run
    assert_same_weights(tmp_path / "w.safetensors", reference / "w.safetensors")
    rec, ref = (json.loads((d / "t.json").read_text()) for d in (tmp_path, reference))
    assert rec["history"]["loss"] == ref["history"]["loss"] and rec["epochs"] == 60
    assert not ckpt.exists()  # superseded by the final weights


def test_sigterm_writes_a_checkpoint_exits_75_and_the_rerun_resumes(tmp_path, data, reference,
                                                                   capsys):
    proc = start_train(data, tmp_path)
    ckpt = tmp_path / "w.safetensors.ckpt"
    wait_for(ckpt, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("shiftcurv train: interrupted by SIGTERM at epoch ")
    assert f"checkpoint written to {ckpt}" in last
    assert ckpt.exists() and not (tmp_path / "w.safetensors").exists()
    epoch = int(last.split(" at epoch ")[1].split("/")[0])
    code, _, err = cli(capsys, *train_argv(data, tmp_path))
    assert code == 0 and f"resuming from checkpoint {ckpt} at epoch {epoch}/60" in err
    assert_same_weights(tmp_path / "w.safetensors", reference / "w.safetensors")


def signal_when(path: Path, signum):
    """Send `signum` to this process once `path` exists (from a thread)."""
    def go():
        wait_for(path, timeout=60)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_sigusr1_stops_at_the_epoch_boundary_and_restores_handlers(tmp_path, data, reference,
                                                                  capsys):
    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
    ckpt = tmp_path / "w.safetensors.ckpt"
    thread = signal_when(ckpt, signal.SIGUSR1)
    code, _, err = cli(capsys, *train_argv(data, tmp_path))
    thread.join()
    assert code == EXIT_INTERRUPTED and "interrupted by SIGUSR1 at epoch" in err
    assert (signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)) == before
    assert cli(capsys, *train_argv(data, tmp_path))[0] == 0
    assert_same_weights(tmp_path / "w.safetensors", reference / "w.safetensors")


def test_a_second_signal_stops_at_once_keeping_the_last_checkpoint(tmp_path, data, reference,
                                                                   capsys, monkeypatch):
    from shiftcurv.train import signals

    handled = threading.Event()
    original = signals.StopRequest.handler

    def handler(self, signum, frame):
        handled.set()
        return original(self, signum, frame)

    monkeypatch.setattr(signals.StopRequest, "handler", handler)
    ckpt = tmp_path / "w.safetensors.ckpt"

    def go():
        wait_for(ckpt, timeout=60)
        os.kill(os.getpid(), signal.SIGTERM)
        handled.wait(10)  # the second one only after the first was handled (no coalescing)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=go, daemon=True)
    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # a stray one must not kill pytest
    try:
        thread.start()
        code, _, err = cli(capsys, *train_argv(data, tmp_path))
        thread.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == EXIT_INTERRUPTED and "second SIGTERM" in err and ckpt.exists()
    code, _, err = cli(capsys, *train_argv(data, tmp_path))
    assert code == 0 and "resuming from checkpoint" in err
    assert_same_weights(tmp_path / "w.safetensors", reference / "w.safetensors")


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_redone(tmp_path, data, reference, capsys,
                                                             damage):
    ckpt = tmp_path / "w.safetensors.ckpt"
    # a real checkpoint of this run (stopped by SIGUSR1), then damaged
    thread = signal_when(ckpt, signal.SIGUSR1)
    assert cli(capsys, *train_argv(data, tmp_path))[0] == EXIT_INTERRUPTED
    thread.join()
    if damage == "truncated":
        truncate(ckpt)
        needle = f"checkpoint file is truncated or unreadable: {ckpt}"
    else:  # written for other settings (here: another seed) must never be resumed
        other = tmp_path / "other"
        other.mkdir()
        thread = signal_when(other / "w.safetensors.ckpt", signal.SIGUSR1)
        assert cli(capsys, *train_argv(data, other, TRAIN | {"seed": 1}))[0] == EXIT_INTERRUPTED
        thread.join()
        shutil.copy(other / "w.safetensors.ckpt", ckpt)
        needle = "was written for other settings"
    code, _, err = cli(capsys, *train_argv(data, tmp_path))
    assert code == 0, err
    assert needle in err and f"moved the checkpoint to {ckpt}.bad" in err
    assert "resuming from" not in err
    assert (tmp_path / "w.safetensors.ckpt.bad").exists()
    assert_same_weights(tmp_path / "w.safetensors", reference / "w.safetensors")


def test_a_truncated_result_fails_the_step_that_reads_it_naming_the_file(tmp_path, data,
                                                                        reference, capsys):
    for name in ("t.json", "w.safetensors"):
        shutil.copy(reference / name, tmp_path / name)
    settings = json.dumps({"arch": ARCH, "split": "train", "l2": 1e-5})
    argv = ["minimize", "--data", data, "--init", tmp_path / "w.safetensors",
            "--init-record", tmp_path / "t.json", "--settings", settings,
            "--out-weights", tmp_path / "m.safetensors", "--out-record", tmp_path / "m.json"]
    for bad in ("t.json", "w.safetensors"):
        truncate(tmp_path / bad)
        code, _, err = cli(capsys, *argv)
        assert code == 2 and f"truncated or unreadable: {tmp_path / bad}" in err, err
        assert not (tmp_path / "m.json").exists()
        shutil.copy(reference / bad, tmp_path / bad)


# -- the whole sweep: a killed controller, a diverged cell, a truncated result -------------------
SWEEP = {
    "datasets": {"gaussian-teacher": {"n_train": 256, "n_test": 128}},
    "archs": {"mlp": ARCH},
    # 4e-5: 500 epochs (a few seconds, so the diverged cell finishes first); 1e4: lr = 3.2e5
    # diverges in the first epoch
    "temperatures": [4e-5, 1e4],
    "seeds": [0], "batch_sizes": [32],
    "train": {"epochs_ref": 20, "temperature_ref": 1e-3, "max_epochs": 500,
              "checkpoint_every": 50},
    "minimize": {"tau_max": 5.0, "gtol": 1e-5},
    "measure": {"points_per_unit": 10},
}


def snakemake_cmd(workdir, *args):
    return [sys.executable, "-m", "snakemake", "results/sweep.nc", "-s", str(REPO / "Snakefile"),
            "-d", str(workdir), "--profile", str(REPO / "profiles/local"), "--cores", "2",
            *args, "--configfile", str(workdir / "config.yaml")]


def snakemake(workdir, *args, check=True):
    out = subprocess.run(snakemake_cmd(workdir, *args), env=ENV, capture_output=True, text=True,
                         timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{out.stdout}\n{out.stderr}")
    return out


def in_process_sweep(workdir: Path, config: dict) -> None:
    """The uninterrupted reference: every step of every cell, run by the same CLI code with
    the same per-cell settings the rules pass (sweep.*_settings), one after the other."""
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for name in config["datasets"]:
            assert main(["prepare-data", "--settings",
                         sw.as_json(sw.dataset_settings(config, name)),
                         "--out", sw.DATA_FILE.format(dataset=name)]) == 0
        for cell in sw.cells(config):
            d, data = cell.dir, sw.DATA_FILE.format(dataset=cell.dataset)
            assert main(["train", "--data", data, "--settings",
                         sw.as_json(sw.train_settings(config, cell)),
                         "--out-weights", f"{d}/theta_sgd.safetensors",
                         "--out-record", f"{d}/train.json"]) == 0
            for split in ("train", "test"):
                assert main(["minimize", "--data", data, "--init", f"{d}/theta_sgd.safetensors",
                             "--init-record", f"{d}/train.json", "--settings",
                             sw.as_json(sw.minimize_settings(config, cell, split)),
                             "--out-weights", f"{d}/theta_{split}.safetensors",
                             "--out-record", f"{d}/min_{split}.json"]) == 0
            assert main(["measure", "--data", data, "--theta-train", f"{d}/theta_train.safetensors",
                         "--theta-test", f"{d}/theta_test.safetensors",
                         "--theta-sgd", f"{d}/theta_sgd.safetensors",
                         "--train-record", f"{d}/train.json",
                         "--min-records", f"{d}/min_train.json", f"{d}/min_test.json",
                         "--settings", sw.as_json(sw.measure_settings(config, cell)),
                         "--out", f"{d}/measure.json"]) == 0
        assert main(["gather", "--config-json", sw.as_json(config),
                     "--out", "results/sweep.nc"]) == 0
    finally:
        os.chdir(cwd)


def assert_same_sweep(a: Path, b: Path):
    import xarray as xr

    with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
        assert set(da.data_vars) == set(db.data_vars) and dict(da.sizes) == dict(db.sizes)
        for name in list(da.data_vars) + list(da.coords):
            x, y = da[name].values, db[name].values
            if x.dtype.kind in "fc":
                assert np.array_equal(x, y, equal_nan=True), name
            else:
                assert (x == y).all(), name


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A sweep whose Snakemake process group is SIGKILLed as soon as the first cell finishes,
    then unlocked and rerun to the end. Returns (workdir, reference sweep.nc, facts)."""
    ref = tmp_path_factory.mktemp("ref_sweep")
    (ref / "config.yaml").write_text(yaml.safe_dump(SWEEP))
    in_process_sweep(ref, load_config(ref / "config.yaml"))

    work = tmp_path_factory.mktemp("killed_sweep")
    (work / "config.yaml").write_text(yaml.safe_dump(SWEEP))
    cells = sw.cells(load_config(work / "config.yaml"))
    measures = [work / c.dir / "measure.json" for c in cells]
    # its own session: killing the group takes every job with it, like a node that dies
    proc = subprocess.Popen(snakemake_cmd(work), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()

    def a_cell_is_finished():
        # measure.json written *and* its job's end registered by Snakemake (marker removed);
        # until then a killed controller rightly redoes it (rerun-incomplete)
        started = incomplete_outputs(work) or set()
        return any(m.exists() and str(m.relative_to(work)) not in started for m in measures)

    while not a_cell_is_finished():
        assert proc.poll() is None and time.monotonic() - t0 < 300, "sweep ended too early"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {m: m.stat().st_mtime_ns for m in measures if m.exists()}
    assert 0 < len(finished) < len(measures), "kill was not mid-sweep"
    assert not (work / "results/sweep.nc").exists()
    locked = snakemake(work, check=False)  # a killed controller leaves its lock behind
    facts = {"locked": locked, "finished": finished}
    snakemake(work, "--unlock")
    facts["plan"] = snakemake(work, "-n")
    facts["rerun"] = snakemake(work)
    return work, ref / "results/sweep.nc", facts


def test_killed_controller_needs_unlock_and_reruns_only_unfinished_cells(killed_sweep):
    work, ref, facts = killed_sweep
    locked = facts["locked"]
    assert locked.returncode != 0 and "lock" in (locked.stdout + locked.stderr).lower()
    plan = facts["plan"].stdout + facts["plan"].stderr
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in plan.splitlines()
              if len(ln.split()) == 2 and ln.split()[1].isdigit()}
    assert counts.get("measure") == 1 and counts.get("gather") == 1, plan
    for path, mtime in facts["finished"].items():  # the finished cell was not redone
        assert path.stat().st_mtime_ns == mtime


def test_killed_and_resumed_sweep_equals_an_uninterrupted_one(killed_sweep):
    work, ref, _ = killed_sweep
    assert_same_sweep(work / "results/sweep.nc", ref)


def test_a_diverged_cell_is_recorded_and_the_sweep_completes(killed_sweep):
    import xarray as xr

    work, _, _ = killed_sweep
    with xr.open_dataset(work / "results/sweep.nc") as ds:
        status = ds["status"].sel(temperature=1e4).values.ravel()
        assert list(status) == ["diverged"]
        assert np.isnan(ds["c_test"].sel(temperature=1e4)).all()
        assert (ds["status"].sel(temperature=4e-5).values == "ok").all()
        assert np.isfinite(ds["c_test"].sel(temperature=4e-5)).all()
    log = next((work / "results/runs").glob("*/*/T~1e+04/*/*/logs/train.log")).read_text()
    assert "not finite" in log


def test_status_reports_done_and_diverged(killed_sweep, capsys, monkeypatch):
    work, _, _ = killed_sweep
    monkeypatch.chdir(work)
    code, out, _ = cli(capsys, "status", "--config", "config.yaml")
    assert code == 0
    rows = [ln.split("\t") for ln in out.splitlines()[1:-1]]
    assert {(r[2], r[5]) for r in rows} == {("4e-05", "done"), ("1e+04", "diverged")}
    assert out.splitlines()[-1] == "2 cells: 1 done, 1 diverged"


def test_a_truncated_result_is_found_set_aside_and_redone(killed_sweep, capsys, monkeypatch):
    work, ref, _ = killed_sweep
    cell = next((work / "results/runs").glob("*/*/T~4e-05/*/*"))
    measure = cell / "measure.json"
    truncate(measure, keep_mtime=True)  # Snakemake alone would never notice
    plan = snakemake(work, "-n")
    assert "Nothing to be done" in plan.stdout + plan.stderr
    monkeypatch.chdir(work)
    code, out, _ = cli(capsys, "status", "--config", "config.yaml", "--check", "--set-aside")
    rel = measure.relative_to(work)
    assert code == 1 and f"truncated or unreadable: {rel}" in out
    assert f"set aside {rel}.bad" in out and not measure.exists()
    assert f"--forcerun {shlex.quote(str(rel))}" in out
    rerun = snakemake(work, "--forcerun", str(rel))  # redoes measure for that cell, then gather
    text = rerun.stdout + rerun.stderr
    assert "rule measure:" in text and "rule train:" not in text
    assert json.loads(measure.read_text())["status"] == "ok"
    assert_same_sweep(work / "results/sweep.nc", ref)
    assert cli(capsys, "status", "--config", "config.yaml", "--check")[0] == 0


# -- status on cells in every state, and on a 10 000-cell sweep ---------------------------------
def make_config(tmp_path, **changes):
    config = dict(SWEEP, **changes)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return load_config(tmp_path / "config.yaml")


def test_status_of_unfinished_cells(tmp_path, capsys, monkeypatch):
    import base64

    config = make_config(tmp_path, temperatures=[1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3])
    cells = sw.cells(config)
    old = time.time() - 3600

    def write(cell, name, text="x", mtime=None):
        path = tmp_path / cell.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mtime:
            os.utime(path, (mtime, mtime))

    # 0: failed in min_test (its log's last line says why); 1: interrupted with a checkpoint;
    # 2: running (fresh log); 3: stalled (Snakemake marker, old log); 4: missing; 5: done
    for name in ("theta_sgd.safetensors", "train.json", "theta_train.safetensors",
                 "min_train.json"):
        write(cells[0], name)
    write(cells[0], "logs/min_test.log", "[12:00:00] minimize test\nshiftcurv minimize: error: "
          "SGD record file is truncated or unreadable: x/train.json\n", old)
    write(cells[1], "theta_sgd.safetensors.ckpt", mtime=old)
    write(cells[1], "logs/train.log", "epoch 3/20\nshiftcurv train: interrupted by SIGTERM at "
          "epoch 3/20; checkpoint written to x; rerun to resume\n", old)
    write(cells[2], "logs/train.log", "epoch 7/20  train loss 0.5\n")
    write(cells[3], "logs/train.log", "epoch 2/20\n", old)
    write(cells[5], "measure.json", json.dumps({"sgd": {"status": "x"}, "status": "ok"},
                                               indent=1))
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "status", "--config", "config.yaml")
    rows = {r[2]: r for r in (ln.split("\t") for ln in out.splitlines()[1:-1])}
    assert rows["1e-03"][5:] == ["failed", "min_test", "shiftcurv minimize: error: SGD record "
                                 "file is truncated or unreadable: x/train.json"]
    assert rows["2e-03"][5:7] == ["interrupted", "train"] and "SIGTERM" in rows["2e-03"][7]
    assert rows["3e-03"][5:] == ["running", "train", "epoch 7/20  train loss 0.5"]
    assert rows["4e-03"][5] == "failed"  # no Snakemake state, stale log: not running
    assert rows["5e-03"][5] == "missing" and rows["6e-03"][5] == "done"
    # with Snakemake's started-job markers: the old log is a stalled job, the fresh one running;
    # a job that is not marked is not running, however fresh its log
    marks = tmp_path / ".snakemake/incomplete"
    marks.mkdir(parents=True)
    for cell in (cells[3],):
        key = f"{cell.dir}/theta_sgd.safetensors".encode()
        (marks / base64.urlsafe_b64encode(key).decode()).write_text("{}")
    code, out, _ = cli(capsys, "status", "--config", "config.yaml", "--problems")
    rows = {r[2]: r for r in (ln.split("\t") for ln in out.splitlines()[1:-1])}
    assert rows["4e-03"][5] == "stalled" and rows["3e-03"][5] == "failed"
    assert "6e-03" not in rows  # --problems: done cells are not listed
    assert out.splitlines()[-1] == ("6 cells: 1 done, 1 stalled, 1 interrupted, 2 failed, "
                                    "1 missing")


def test_status_of_10000_cells_takes_seconds(tmp_path, capsys, monkeypatch):
    config = make_config(tmp_path, temperatures=[round(1e-4 * (i + 1), 6) for i in range(100)],
                         seeds=list(range(100)))
    assert len(sw.cells(config)) == 10_000
    # a few cells exist (the rest were never started)
    done = sw.cells(config)[::997]
    for cell in done:
        (tmp_path / cell.dir).mkdir(parents=True)
        (tmp_path / cell.dir / "measure.json").write_text('{\n "status": "ok"\n}\n')
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    code, out, _ = cli(capsys, "status", "--config", "config.yaml")
    seconds = time.perf_counter() - t0
    assert code == 0 and len(out.splitlines()) == 10_002
    assert out.splitlines()[-1] == f"10000 cells: {len(done)} done, {10_000 - len(done)} missing"
    assert seconds < 5, seconds


# -- nothing unpickles -----------------------------------------------------------------------
def test_no_code_path_unpickles():
    """Weights are safetensors, datasets .npz without pickle, configs safe YAML: nothing in
    src/ may load a pickle (torch.load only with weights_only=True, np.load only with
    allow_pickle=False). The one exception is CIFAR-10's python release, read by a restricted
    unpickler (tests/test_cifar.py shows it refuses every other object)."""
    import re

    offenders = []
    for path in (REPO / "src").rglob("*.py"):
        restricted = path.name == "cifar.py"
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if restricted and code.strip() == "import pickle":
                continue
            bad = (re.search(r"\bimport (c?pickle|dill|joblib|shelve|marshal)\b", code)
                   or re.search(r"\b(pickle|dill|joblib)\.loads?\(", code)
                   or ("torch.load(" in code and "weights_only=True" not in code)
                   or (re.search(r"\bnp\.load\(|numpy\.load\(", code)
                       and "allow_pickle=False" not in code)
                   or re.search(r"\byaml\.(load|unsafe_load|full_load)\(", code))
            if bad:
                offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
