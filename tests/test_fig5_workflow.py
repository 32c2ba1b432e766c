"""Fig. 5 through the real Snakemake: the shuffle and sample-size targets on MNIST-1D at tiny
sizes, and the paper's CIFAR-10 config planned here (dry run and `shiftcurv plan`) without a GPU
or the CIFAR files. The two-stage temperature run is part of the tiny sweep (test_workflow)."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from test_workflow import REPO, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow
PAPER = REPO / "configs/paper-cifar10.yaml"


@pytest.fixture(scope="module")
def shift_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("shift")
    write_config(work / "config.yaml", pack=3, fig5={
        "dataset": "mnist1d-small", "arch": "mlp-bn",
        "datasets": {"mnist1d-small": {"type": "mnist1d", "num_samples": 500}},  # 400 / 100
        "archs": {"mlp-bn": {"type": "mlp", "widths": [32], "batch_norm": True}},
        "experiments": ["shuffle", "sample_size"],
        "shift": {"trials": 2, "sample_sizes": [250, 500], "batch_size": 50, "lr": 0.1,
                  "epochs": 4, "final_window": 2}})
    snakemake(work, "fig5")
    return work


def test_shift_targets_run_and_are_gathered(shift_run):
    import xarray as xr

    ds = xr.open_dataset(shift_run / "results/fig5.nc", engine="netcdf4")
    assert dict(ds.sizes) == {"seed": 1, "trial": 2, "sample_size": 2}
    for name in ("default_test_loss", "shuffle_test_loss", "sample_test_loss",
                 "sample_train_loss"):
        assert np.isfinite(ds[name].values).all(), name
    assert (ds["sample_status"].values == "ok").all()
    assert "final_test_loss" not in ds  # the temperature experiment was not asked for
    root = shift_run / "results/fig5/mnist1d-small/mlp-bn/shift"
    small = json.loads((root / "sample_size~250/seed~1/train.json").read_text())
    assert (small["n_train"], small["n_test"]) == (200, 50)  # split as the default 400 / 100
    assert small["split"] == {"sample_size": 250, "sample_seed": 1}
    shuffled = json.loads((root / "shuffle_seed~0/seed~0/train.json").read_text())
    default = json.loads((root / "default/seed~0/train.json").read_text())
    assert (shuffled["n_train"], shuffled["n_test"]) == (default["n_train"], default["n_test"])
    assert shuffled["test_loss"] != default["test_loss"]
    summary = json.loads(ds.attrs["summary"])
    assert summary["shuffle_minus_default_test"]["n"] == 2
    assert set(summary["sample_size_test"]["mean"]) == {"250", "500"}
    figures = {p.name for p in (shift_run / "results/figures").glob("fig5*.png")}
    assert figures == {"fig5.png", "fig5_bn.png"}
    # only the shift runs and this part: the main sweep was not built by the `fig5` target
    assert not (shift_run / "results/sweep.nc").exists()


def test_packed_shift_runs_ran_in_their_packs_and_each_job_adopted_its_run(shift_run):
    """pack: 3: the 8 runs in packs of 3, 3 and 2 (`shiftcurv run-steps`, one process each);
    each run's own job took the staged result over and computed nothing."""
    records = sorted((shift_run / "results/packs/fig5").glob("*/*/shift/pack~??????????.json"))
    steps = [json.loads(p.read_text())["steps"] for p in records]
    assert sorted(len(s) for s in steps) == [2, 3, 3]
    assert {st["rc"] for s in steps for st in s} == {0}
    logs = list((shift_run / "results/fig5").glob("*/*/shift/*/seed~*/train.log"))
    assert len(logs) == 8 and all("adopted the pack's" in p.read_text() for p in logs)
    assert not list((shift_run / "results/fig5").glob("**/*.packed*"))


def test_more_trials_schedule_only_the_new_runs(shift_run, tmp_path):
    config = yaml.safe_load((shift_run / "config.yaml").read_text())
    config["fig5"]["shift"]["trials"] = 3
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(shift_run, "fig5", "-n", config=tmp_path / "c.yaml")
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["fig5_shift"] == 1 + 1 + 2  # default, shuffled and two sample sizes of trial 2
    assert jobs["fig5_pack"] == 2  # the 4 new runs in packs of 3: no finished run repacked
    assert jobs["fig5_gather"] == 1 and "fig5_stage1" not in jobs


def expected_stage2(config) -> int:
    f = config["fig5"]
    lo, hi = f["stage2"]["temperature_range"]
    pairs = [(lr, b) for lr, b in itertools.product(f["stage2"]["lrs"], f["stage2"]["batch_sizes"])
             if lo * (1 - 1e-12) <= lr / b <= hi * (1 + 1e-12)]
    return len(pairs) * len(f["seeds"])


def test_paper_config_dry_run_lists_the_expected_jobs(tmp_path):
    config = yaml.safe_load(PAPER.read_text())
    jobs = planned_jobs(tmp_path, config=PAPER)
    cells = len(config["temperatures"]) * len(config["seeds"]) * len(config["archs"])
    assert cells == 30
    trials, sizes = config["fig5"]["shift"]["trials"], config["fig5"]["shift"]["sample_sizes"]
    assert {k: jobs[k] for k in ("train", "min_train", "min_test", "measure")} == {
        "train": cells, "min_train": cells, "min_test": cells, "measure": cells}
    assert jobs["prepare_data"] == 1  # cifar10, shared by the sweep and Fig. 5
    assert jobs["fig5_stage1"] == len(config["fig5"]["seeds"]) == 10
    assert jobs["fig5_stage2"] == expected_stage2(config) > 0
    assert jobs["fig5_shift"] == trials * (2 + len(sizes)) == 175
    assert not (tmp_path / "results").exists()


def test_paper_config_plans_without_data_or_gpu(tmp_path):
    out = subprocess.run([sys.executable, "-m", "shiftcurv.cli", "plan", "--config", str(PAPER),
                          "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cifar10  vgg16" in out.stdout and "cifar10  resnet10" in out.stdout
    assert f"fig5_stage2 {expected_stage2(yaml.safe_load(PAPER.read_text()))}" in out.stdout
    assert "1 GPU" in out.stdout


def test_a_real_run_without_the_cifar_files_stops_before_any_job(tmp_path):
    config = yaml.safe_load(PAPER.read_text())
    config["datasets"]["cifar10"]["root"] = str(tmp_path / "no-such-dir")
    config["train"]["device"] = "cpu"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, config=tmp_path / "c.yaml", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "datasets.cifar10.root:" in text and "no-such-dir" in text
    assert not (tmp_path / "results" / "data").exists()
    assert not (tmp_path / "results" / "runs").exists()
