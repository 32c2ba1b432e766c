"""The real Snakemake DAG, end to end on the tiny sweep, and its rerun semantics."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ACCEPTED_LINT, lint_problems

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def snakemake(workdir, *args, config=None, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--profile", str(REPO / "profiles/local"), "--cores", "2", *args,
           "--configfile", str(config or workdir / "config.yaml")]  # last: it takes several
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def planned_jobs(workdir, config=None) -> dict:
    """{rule: count} from a dry run's job table (empty when nothing is to be done)."""
    out = snakemake(workdir, "-n", config=config)
    text = out.stdout + out.stderr
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", text, re.M)
            if m[1] != "total"}


def write_config(path, **changes):
    config = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


# the two-stage Fig. 5 temperature experiment at tiny size (docs/fig5.md), run with the sweep
TINY_FIG5 = {"dataset": "gaussian-teacher", "arch": "mlp-bn",
             "archs": {"mlp-bn": {"type": "mlp", "widths": [16], "batch_norm": True}},
             "experiments": ["temperature"], "seeds": [0, 1],
             "stage1": {"batch_size": 64, "lr": 0.1, "epochs": 6},
             "stage2": {"batch_sizes": [16, 32], "lrs": [0.016, 0.032], "epochs": 4,
                        "final_window": 2}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep")
    write_config(work / "config.yaml", fig5=TINY_FIG5)
    snakemake(work)
    return work


def test_sweep_nc_has_the_documented_schema(sweep):
    import xarray as xr

    ds = xr.open_dataset(sweep / "results/sweep.nc", engine="netcdf4")
    assert dict(ds.sizes) == {"dataset": 1, "arch": 1, "temperature": 2, "seed": 1, "u": 31}
    assert list(ds["temperature"].values) == [1e-3, 4e-3]
    expected = ["status", "lr", "batch_size", "epochs", "train_loss_sgd", "test_loss_sgd",
                "train_acc_sgd", "test_acc_sgd", "U_tr_min", "U_test_min",
                "test_loss_at_train_min", "taylor_prediction", "taylor_relative_error",
                "shift_norm", "c_train", "c_test", "shift_curvature", "c_train_hvp",
                "c_test_hvp", "grad_norm_train_min", "grad_norm_test_min", "flow_time_train",
                "flow_time_test", "train_loss_line", "test_loss_line", "train_acc_line",
                "test_acc_line"]
    for name in expected:
        assert name in ds, name
        if name != "status":
            assert ds[name].attrs["units"] and ds[name].attrs["long_name"], name
    for key in ("config", "config_hash", "shiftcurv_version", "git_revision", "created"):
        assert ds.attrs[key], key
    assert (ds["status"].values == "ok").all()
    for name in expected[1:]:
        assert np.isfinite(ds[name].values).all(), name
    assert (ds["c_train"] > 0).all() and (ds["c_test"] > 0).all()
    assert np.allclose(ds["lr"].values.ravel(), [1e-3 * 32, 4e-3 * 32])
    assert np.allclose(ds["shift_curvature"], ds["c_test"] * ds["shift_norm"] ** 2)
    assert ds["train_loss_line"].dims[-1] == "u"
    # Hessian measures (schema default: λ_max and trace at θ_tr and θ_test); λ_max bounds the
    # Rayleigh quotient along s at the same point: an exact cross-check of two code paths
    for name in ("lambda_max_train", "lambda_max_test", "hessian_trace_train",
                 "hessian_trace_test"):
        assert np.isfinite(ds[name].values).all() and ds[name].attrs["units"], name
    assert (ds["lambda_max_train"] >= ds["c_train_hvp"] * (1 - 1e-6)).all()
    assert (ds["lambda_max_test"] >= ds["c_test_hvp"] * (1 - 1e-6)).all()
    # Eq. 3's first-order terms, the fit window, convergence and the E*T budget
    for name in ("first_order_test", "first_order_train", "c_test_first_order",
                 "taylor_prediction_first_order", "taylor_first_order_relative_error",
                 "train_loss_at_test_min", "train_taylor_prediction", "fit_window",
                 "c_test_rms_residual", "c_train_rms_residual", "distance_moved_train_min",
                 "distance_moved_test_min", "flow_time_max_train", "flow_time_max_test",
                 "epochs_budget", "epoch_temperature", "lambda_max_converged_train"):
        assert np.isfinite(ds[name].values).all() and ds[name].attrs["units"], name
    assert (ds["fit_window"] == 1.0).all() and (ds["flow_time_max_test"] == 5.0).all()
    assert np.allclose(ds["epoch_temperature"], ds["epochs"] * ds["temperature"])
    assert set(ds["stop_reason_train_min"].values.ravel()) <= {"tau", "gtol"}
    assert ds.attrs["cells_unconverged"] == 0


def test_figures_are_real_pngs(sweep):
    figures = sorted((sweep / "results/figures").glob("*.png"))
    assert [f.name for f in figures] == ["fig1_gaussian-teacher_mlp.png",
                                         "fig23_gaussian-teacher_mlp.png",
                                         "fig5.png", "fig5_bn.png",
                                         "measures_gaussian-teacher_mlp.png",
                                         "synthetic_checks.png", "synthetic_fig4_left.png"]
    for f in figures:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 20_000


def test_fig5_two_stage_runs_are_gathered(sweep):
    """Stage 1 once per seed; stage 2 per (lr, B, seed) from that seed's stage-1 weights."""
    import hashlib
    import json

    import xarray as xr

    ds = xr.open_dataset(sweep / "results/fig5.nc", engine="netcdf4")
    assert dict(ds.sizes) == {"seed": 2, "lr": 2, "batch_size": 2}
    assert np.allclose(ds["temperature"].values, [[0.016 / 16, 0.016 / 32],
                                                  [0.032 / 16, 0.032 / 32]])
    for name in ("final_train_loss", "final_eval_train_loss", "final_test_loss",
                 "first_train_loss", "stage1_train_loss", "stage1_test_loss"):
        assert np.isfinite(ds[name].values).all() and ds[name].attrs["long_name"], name
    assert (ds["stage2_status"].values == "ok").all()
    root = sweep / "results/fig5/gaussian-teacher/mlp-bn"
    for seed in (0, 1):
        sha = hashlib.sha256((root / f"stage1/seed~{seed}/theta.safetensors").read_bytes())
        for run in root.glob(f"stage2/*/*/seed~{seed}/train.json"):
            rec = json.loads(run.read_text())
            assert rec["init_sha256"] == sha.hexdigest()
            assert rec["epochs"] == 4 and len(rec["history"]["eval_test_loss"]) == 4
            assert rec["final_test_loss"] == np.median(rec["history"]["eval_test_loss"][-2:])
    stage1 = json.loads((root / "stage1/seed~0/train.json").read_text())
    assert stage1["settings"]["momentum"] == 0.9 and stage1["epochs"] == 6
    summary = json.loads((sweep / "results/fig5_summary.json").read_text())
    assert summary == json.loads(ds.attrs["summary"])
    assert summary["collapse_test"]["groups_T"] == 1  # T = 1e-3 is run at B = 16 and 32
    assert summary["collapse_test"]["cells"] == 4


def test_synthetic_basins_are_part_of_the_sweep(sweep):
    import xarray as xr

    ds = xr.open_dataset(sweep / "results/synthetic.nc")
    assert list(ds["basin_set"].values) == ["fig4_left"] and ds.sizes["temperature"] == 8


def test_every_step_leaves_a_log_with_its_progress(sweep):
    cell = next((sweep / "results/runs").glob("*/*/T~1e-03/B~32/seed~0"))
    assert "epoch 20/20" in (cell / "logs/train.log").read_text()
    assert "tau" in (cell / "logs/min_test.log").read_text()
    assert "c_test=" in (cell / "logs/measure.log").read_text()


def test_a_finished_sweep_has_nothing_to_do(sweep):
    assert planned_jobs(sweep) == {}


def test_equivalent_spellings_of_a_temperature_are_the_same_cell(sweep, tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    # as a researcher types them: 1e-3 (a *string* to YAML 1.1), 0.004 (a float)
    cfg.write_text(re.sub(r"^temperatures:.*?\n(?=\w)", "temperatures: [1e-3, 0.004]\n",
                          cfg.read_text(), count=1, flags=re.S | re.M))
    assert "[1e-3, 0.004]" in cfg.read_text()
    assert planned_jobs(sweep, cfg) == {}


def test_adding_a_temperature_schedules_only_the_new_cell(sweep, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", temperatures=[1e-3, 4e-3, 2e-3])
    assert planned_jobs(sweep, cfg) == {"train": 1, "min_train": 1, "min_test": 1,
                                        "measure": 1, "gather": 1, "plots": 1, "all": 1}


def test_changing_a_measure_setting_reruns_only_measure(sweep, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", measure={"points_per_unit": 12})
    assert planned_jobs(sweep, cfg) == {"measure": 2, "gather": 1, "plots": 1, "all": 1}


def test_report_is_self_contained_html(sweep):
    snakemake(sweep, "--report", str(sweep / "results/report.html"))
    html = (sweep / "results/report.html").read_text(errors="replace")
    assert "fig23_gaussian-teacher_mlp.png" in html and "status.tsv" in html


def test_partial_gather_marks_missing_cells(sweep, tmp_path):
    import xarray as xr

    from shiftcurv.cli import main

    cfg = write_config(tmp_path / "c.yaml", temperatures=[1e-3, 4e-3, 2e-3])
    cwd = os.getcwd()
    try:
        os.chdir(sweep)
        assert main(["gather", "--config", str(cfg), "--out", str(tmp_path / "p.nc"),
                     "--partial"]) == 0
        assert main(["gather", "--config", str(cfg), "--out", str(tmp_path / "q.nc")]) == 2
    finally:
        os.chdir(cwd)
    ds = xr.open_dataset(tmp_path / "p.nc")
    status = ds["status"].sel(temperature=2e-3).values.ravel()
    assert list(status) == ["missing"] and np.isnan(ds["c_test"].sel(temperature=2e-3)).all()
    assert (ds["status"].sel(temperature=1e-3).values == "ok").all()


def test_a_capped_epoch_budget_is_named_in_the_dry_run(tmp_path):
    """E = ceil(20 x 1e-3 / 5e-4) = 40 > max_epochs 20: the dry run names the capped cells."""
    cfg = write_config(tmp_path / "config.yaml", temperatures=[5e-4, 1e-3])
    out = snakemake(tmp_path, "-n", config=cfg)
    lines = [x for x in (out.stdout + out.stderr).splitlines() if "caps" in x]
    assert len(lines) == 1 and "T~5e-04" in lines[0] and "asks 40" in lines[0], lines


def test_lint_is_clean(tmp_path):
    """Clean but for ACCEPTED_LINT (no conda directives: README, "Software environment")."""
    shutil.copy(REPO / "configs/tiny.yaml", tmp_path / "config.yaml")
    out = snakemake(tmp_path, "--lint", check=False)
    assert lint_problems(out.stdout + out.stderr) == []


def test_lint_problems_sees_other_lints():
    """The filter above passes only the accepted lint."""
    accepted = f"Lints for rule a (line 1, x.smk):\n    * {ACCEPTED_LINT}:\n      body\n"
    other = "Lints for rule b (line 9, x.smk):\n    * No log directive defined.:\n      body\n"
    assert lint_problems(accepted) == []
    assert lint_problems(accepted + other) == ["No log directive defined."]
    assert lint_problems("SyntaxError in file Snakefile") == ["SyntaxError in file Snakefile"]


SNAKEFMT_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]


def snakefmt_check(*paths):
    if sys.version_info < (3, 11):
        pytest.skip("snakefmt 2.1 (pinned in the test extras) needs Python 3.11")
    # the pinned version and its settings ([tool.snakefmt] in pyproject.toml: line length 100)
    return subprocess.run([Path(sys.executable).parent / "snakefmt", "--config",
                           str(REPO / "pyproject.toml"), "--check", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_snakefmt_is_clean():
    """Every Snakefile and .smk file of the workflow (a glob: new rule files are covered)."""
    assert len(SNAKEFMT_FILES) >= 10
    out = snakefmt_check(*SNAKEFMT_FILES)
    assert out.returncode == 0, f"run `snakefmt Snakefile workflow`:\n{out.stdout}{out.stderr}"


def test_snakefmt_check_fails_on_unformatted_rules(tmp_path):
    """The check above can fail: directives out of snakefmt's order are reported."""
    bad = tmp_path / "bad.smk"
    bad.write_text('rule a:\n    shell:\n        "true"\n    output:\n        "a"\n')
    out = snakefmt_check(bad)
    assert out.returncode == 1 and "would be changed" in out.stdout + out.stderr


@pytest.mark.parametrize("change,needle", [
    ({"seeds": "zero"}, "seeds"),
    ({"temperatures": [1e-3, -2e-3]}, "temperatures"),
    ({"archs": {"mlp": {"type": "transformer"}}}, "archs.mlp.type"),
    ({"batch_sizes": [1000]}, "batch_sizes"),
])
def test_a_bad_config_is_rejected_before_any_job(tmp_path, change, needle):
    cfg = write_config(tmp_path / "config.yaml", **change)
    out = snakemake(tmp_path, "-n", config=cfg, check=False)
    assert out.returncode != 0 and needle in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
