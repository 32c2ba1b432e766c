"""Eq. 4 through the real workflow and the real CLI: adding `eq4` to a finished sweep runs only the
sampling (no cell retrained), sweep.nc holds every term with its standard error over a sampler
axis, the figure is drawn; a signalled sampling job resumes from its checkpoint to the same
record; an upstream failure gives the chain that status and no sampling."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import tiny
from test_workflow import snakemake

from shiftcurv.eq4.statistics import AT_MEAN_TERMS, TERMS
from shiftcurv.results.gather import EQ4_TERMS

REPO = Path(__file__).resolve().parents[1]
EQ4 = {"enabled": True, "sampler": ["rr", "wr"], "ladder": [2.0], "samples": 12, "batches": 4,
       "min_batches": 2, "pilot_epochs": 4, "max_epochs": 300}


def test_gathered_terms_are_the_estimators_terms():
    assert set(EQ4_TERMS) == {k for k, _ in TERMS + AT_MEAN_TERMS}


def jobs(dry_run: str) -> dict[str, int]:
    """{rule: count} from a dry run's job stats table."""
    out, on = {}, False
    for line in dry_run.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            on = True
        elif on and parts[:1] == ["total"]:
            break
        elif on and len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """The tiny sweep, finished, without eq4 (one run shared by this module's tests)."""
    work = tiny(tmp_path_factory.mktemp("sweep"))
    snakemake(work, "results/sweep.nc")
    return work


@pytest.mark.slow
def test_eq4_added_to_a_finished_sweep_samples_without_retraining(finished_sweep):
    work = finished_sweep
    trained = {p: p.stat().st_mtime_ns for p in (work / "results/runs").rglob("*.json")}
    tiny(work, eq4=EQ4)
    assert status(work).count("missing\tsample_rr") == 2  # measured, not yet sampled
    planned = jobs(snakemake(work, "-n", "results/sweep.nc").stdout)
    assert planned == {"sample": 8, "gather": 1}, planned  # 2 cells x 2 samplers x 2 ladder
    snakemake(work, "results/sweep.nc", "results/figures/eq4_gaussian-teacher_mlp.png")
    assert {p: p.stat().st_mtime_ns for p in trained} == trained  # nothing upstream redone
    ds = xr.open_dataset(work / "results/sweep.nc")
    assert list(ds["sampler"].values) == ["rr", "wr"]
    assert list(ds["ladder"].values) == [1.0, 2.0]
    assert ds["eq4_cov_term"].dims[-2:] == ("sampler", "ladder")
    for cell in (work / "results/runs").rglob("eq4_rr.json"):  # the ladder's chain at 2T
        lr = json.loads(cell.read_text())["settings"]["lr"]
        assert json.loads((cell.parent / "eq4_rr_x2.json").read_text())["settings"]["lr"] == \
            pytest.approx(2 * lr)
    chains = ds["eq4_status"].values.ravel()
    assert set(chains) <= {"ok", "left_basin", "too_short"}, chains
    ok = ds["eq4_status"] == "ok"
    assert int(ok.sum()) >= 2
    for name in ("cov_term", "excess", "prediction", "local_prediction", "bias_norm"):
        assert np.isfinite(ds[f"eq4_{name}"].where(ok)).sum() == ok.sum(), name
        assert (ds[f"eq4_{name}_se"].where(ok) >= 0).sum() == ok.sum(), name
    # the parts of ½(s+b)ᵀC(s+b) add up, cell by cell
    parts = ds["eq4_shift_term"] + ds["eq4_cross_term"] + ds["eq4_bias_term"]
    np.testing.assert_allclose(parts.where(ok), ds["eq4_shift_bias_term"].where(ok),
                               rtol=1e-9, atol=1e-12)
    assert (work / "results/figures/eq4_gaussian-teacher_mlp.png").stat().st_size > 10_000
    assert "sample" not in jobs(snakemake(work, "-n", "results/sweep.nc").stdout)
    assert status(work).count("\tdone") == 2


def status(work: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "shiftcurv.cli", "status", "--config",
                          str(work / "config.yaml"), "-d", str(work)], capture_output=True,
                         text=True, check=True)
    return out.stdout


def sample_command(cell: Path, data: Path, out: Path, settings: dict) -> list[str]:
    return [sys.executable, "-m", "shiftcurv.cli", "sample", "--data", str(data),
            "--theta-sgd", str(cell / "theta_sgd.safetensors"),
            "--theta-train", str(cell / "theta_train.safetensors"),
            "--theta-test", str(cell / "theta_test.safetensors"),
            "--train-record", str(cell / "train.json"),
            "--min-records", str(cell / "min_train.json"), str(cell / "min_test.json"),
            "--settings", json.dumps(settings), "--out", str(out)]


@pytest.fixture(scope="module")
def finished_cell(finished_sweep):
    cell = next((finished_sweep / "results/runs").rglob("T~4e-03/**/measure.json")).parent
    return cell, finished_sweep / "results/data/gaussian-teacher.npz"


SETTINGS = {"arch": {"type": "mlp", "widths": [16]}, "seed": 0, "lr": 0.128, "batch_size": 32,
            "l2": 1e-5, "eq4": {"sampler": "wr", "samples": 40, "batches": 8, "min_batches": 8,
                                "thin": 25, "pilot_epochs": 4, "max_epochs": 5000}}


@pytest.mark.slow
def test_a_signalled_sampling_job_resumes_to_the_same_record(finished_cell, tmp_path):
    cell, data = finished_cell
    whole = tmp_path / "whole.json"
    subprocess.run(sample_command(cell, data, whole, SETTINGS), check=True, capture_output=True)
    cut = tmp_path / "cut.json"
    ckpt = Path(str(cut) + ".ckpt")
    proc = subprocess.Popen(sample_command(cell, data, cut, SETTINGS), stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 75, err
    assert "checkpoint written" in err and not cut.exists() and ckpt.exists()
    out = subprocess.run(sample_command(cell, data, cut, SETTINGS), capture_output=True,
                         text=True, check=True)
    assert "resumed at chain epoch" in out.stderr
    a, b = json.loads(whole.read_text()), json.loads(cut.read_text())
    assert a["terms"] == b["terms"] and a["diagnostics"] == b["diagnostics"]
    assert a["chain_epochs"] == b["chain_epochs"] and not ckpt.exists()


@pytest.mark.slow
def test_a_foreign_checkpoint_is_set_aside(finished_cell, tmp_path):
    cell, data = finished_cell
    out = tmp_path / "e.json"
    Path(str(out) + ".ckpt").write_bytes(b"not a safetensors file")
    res = subprocess.run(sample_command(cell, data, out, {**SETTINGS, "eq4": {
        **SETTINGS["eq4"], "thin": 1}}), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "not resuming" in res.stderr and Path(str(out) + ".ckpt.bad").exists()


@pytest.mark.slow
def test_upstream_failure_is_the_chains_status(finished_cell, tmp_path):
    cell, data = finished_cell
    bad = tmp_path / "cell"
    bad.mkdir()
    for f in cell.iterdir():
        if f.is_file():
            os.symlink(f, bad / f.name)
    (bad / "train.json").unlink()
    rec = json.loads((cell / "train.json").read_text())
    (bad / "train.json").write_text(json.dumps({**rec, "status": "diverged"}))
    out = tmp_path / "e.json"
    subprocess.run(sample_command(bad, data, out, SETTINGS), check=True, capture_output=True)
    record = json.loads(out.read_text())
    assert record["status"] == "diverged" and "terms" not in record
