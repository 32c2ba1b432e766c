"""The compute plan and its cost model (shiftcurv.sweep.cost, `shiftcurv plan`): counts, hours and
the model's self-reported error against hand computations, and speed at 10 000 cells."""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from shiftcurv import sweep as sw
from shiftcurv.cli import main
from shiftcurv.config import load_config
from shiftcurv.sweep import cost

REPO = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path, **changes) -> dict:
    """configs/tiny.yaml (256 train samples, B=32, E = min(20, ceil(20·1e-3/T))) with changes,
    written to tmp_path/config.yaml and loaded as the CLI loads it."""
    config = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return load_config(tmp_path / "config.yaml")


def cell_at(config, T) -> sw.Cell:
    return next(c for c in sw.cells(config) if c.T == T)


def finish(root, cell, rules, seconds: dict, steps=None):
    """Fake what finished jobs leave: each rule's record and its benchmark file (wall `s`)."""
    d = Path(root) / cell.dir
    (d / "benchmarks").mkdir(parents=True, exist_ok=True)
    for rule in rules:
        record = {"status": "ok"}
        if rule == "train":
            record |= {"steps": steps, "batch_size": cell.batch_size}
        (d / cost.RECORD[rule]).write_text(json.dumps(record))
        (d / "benchmarks" / f"{rule}.tsv").write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{seconds[rule]}\t0:00:10\t400\t800\t300\t340\t0\t0\t50\t5\n")


def test_no_results_uses_the_priors_and_says_it_is_uncalibrated(tmp_path):
    config = tiny_config(tmp_path)  # T = 1e-3, 4e-3
    p = cost.plan(config, str(tmp_path))
    t = p.total
    assert (t.cells, t.done, t.remaining) == (2, 0, 2)
    assert t.jobs == {"train": 2, "min_train": 2, "min_test": 2, "measure": 2}
    assert t.submissions == 2 and p.other_jobs == {"prepare_data": 1, "gather": 1, "plots": 1,
                                                   "synthetic": 1}
    assert p.submissions == 2 + 4
    # by hand: train = 120 s + 5e-5 s × sample-steps; sample-steps = E · ⌊256/32⌋ · 32:
    # T=1e-3: E=20 → 5120; T=4e-3: E=5 → 1280; then min_train 300 + min_test 300 + measure 600
    seconds = (120 + 5e-5 * 5120 + 1200) + (120 + 5e-5 * 1280 + 1200)
    assert t.seconds == pytest.approx(seconds)
    assert t.cpu_hours == pytest.approx(seconds / 3600) and t.gpu_hours == 0
    assert not p.model.calibrated and p.rows[0].model == "prior"
    text = cost.format_plan(p)
    assert "uncalibrated" in text and "0.73" in text
    assert "uncalibrated" in cost.summary_line(p)
    assert cost.summary_line(p).startswith("shiftcurv plan: 0/2 cells done, 2 to run")


@pytest.fixture
def half_done(tmp_path):
    """T = 1e-3, 2e-3, 4e-3, 8e-3 (E = 20, 10, 5, 3): cells 1e-3 and 4e-3 finished, 2e-3 trained
    only, 8e-3 not started. Benchmarks: train = 10 s + 1 ms per sample-step exactly."""
    config = tiny_config(tmp_path, temperatures=[1e-3, 2e-3, 4e-3, 8e-3])
    rules = cost.CELL_RULES
    finish(tmp_path, cell_at(config, 1e-3), rules, steps=160,
           seconds={"train": 10 + 0.001 * 5120, "min_train": 2, "min_test": 3, "measure": 5})
    finish(tmp_path, cell_at(config, 4e-3), rules, steps=40,
           seconds={"train": 10 + 0.001 * 1280, "min_train": 4, "min_test": 3, "measure": 7})
    finish(tmp_path, cell_at(config, 2e-3), ["train"], steps=80,
           seconds={"train": 10 + 0.001 * 2560})
    return config, tmp_path


def test_finished_cells_calibrate_the_model_and_it_reports_its_error(half_done):
    config, root = half_done
    p = cost.plan(config, str(root))
    t = p.total
    assert (t.cells, t.done, t.remaining) == (4, 2, 2)
    assert t.jobs == {"train": 1, "min_train": 2, "min_test": 2, "measure": 2}
    f = p.model.fit_for("gaussian-teacher", "mlp", "train")
    assert (f.overhead, f.rate, f.source) == (pytest.approx(10), pytest.approx(0.001),
                                              "calibrated")
    # by hand: train at 8e-3 (E=3 → 768 sample-steps) = 10.768 s; min_train mean(2, 4) = 3,
    # min_test 3, measure mean(5, 7) = 6, for each of the two unfinished cells
    assert t.seconds == pytest.approx(10.768 + 2 * (3 + 3 + 6))
    assert t.cpu_hours == pytest.approx((10.768 + 24) / 3600)
    # error on its 9 jobs: train 0, 0, 0; min_train |3-2|/2, |3-4|/4; min_test 0, 0;
    # measure 1/5, 1/7 → median 0, worst 50%; the sums agree (least squares), total 0
    m = p.model
    assert m.n_jobs == 9 and m.calibrated
    assert sorted(m.errors) == pytest.approx(sorted([0, 0, 0, 0.5, 0.25, 0, 0, 0.2, 1 / 7]))
    assert m.total_error == pytest.approx(0, abs=1e-12)
    assert "calibrated on 9 finished jobs" in m.describe()
    assert "median 0%, worst 50% per job, +0% in total" in m.describe()
    assert p.rows[0].model == "calibrated"


def test_gpu_sweeps_count_gpu_hours_and_threads_count_cpu_hours(half_done):
    config, root = half_done
    config["train"]["device"] = "cuda"
    config["resources"]["threads"] = 4
    p = cost.plan(config, str(root), group_components=3)
    seconds = 10.768 + 24
    assert p.gpu and p.total.gpu_hours == pytest.approx(seconds / 3600)
    assert p.total.cpu_hours == pytest.approx(4 * seconds / 3600)
    assert p.total.submissions == 1  # 2 cells left, 3 per submission
    assert "1 GPU and 4 CPU(s)" in cost.format_plan(p)


def test_another_arch_borrows_the_calibration(half_done):
    config, root = half_done
    config["archs"]["wide"] = {"type": "mlp", "widths": [64]}
    p = cost.plan(config, str(root))
    wide = next(r for r in p.rows if r.arch == "wide")
    assert (wide.cells, wide.remaining, wide.model) == (4, 4, "borrowed")
    # the same fits as mlp's: trains at E = 20, 10, 5, 3 plus 4 × (3 + 3 + 6)
    train = sum(10 + 0.001 * e * 256 for e in (20, 10, 5, 3))
    assert wide.seconds == pytest.approx(train + 4 * 12)


def test_runtime_requests_follow_the_model_and_grow_with_attempt(half_done):
    config, root = half_done
    model = cost.calibrate(config, str(root))
    cell = cell_at(config, 8e-3)
    # 1.5 × 10.768 s + 180 s = 196 s → 4 min → at least 5 min; doubles per attempt
    assert [cost.runtime_minutes(model, config, cell, "train", a) for a in (1, 2, 3)] == \
        [5, 10, 20]
    big = cost.Fit(overhead=3600.0, rate=0.0, n=1, source="calibrated")
    model.fits[("gaussian-teacher", "mlp", "measure")] = big
    # 1.5 × 3600 + 180 = 5580 s = 93 min; capped at 24 h
    assert cost.runtime_minutes(model, config, cell, "measure", 1) == 93
    assert cost.runtime_minutes(model, config, cell, "measure", 6) == 24 * 60
    prior = cost.calibrate(config, str(root / "nowhere"))
    assert not prior.calibrated
    assert cost.runtime_minutes(prior, config, cell, "measure") == math.ceil(
        (1.5 * 600 + 180) / 60)


def test_a_cell_is_redone_downstream_of_a_missing_step():
    assert cost.to_run(frozenset()) == cost.CELL_RULES
    done = frozenset(cost.RECORD.values())
    assert cost.to_run(done) == ()
    assert cost.to_run(done - {"min_test.json"}) == ("min_test", "measure")
    assert cost.to_run(done - {"train.json"}) == cost.CELL_RULES


def test_fit_handles_degenerate_histories():
    assert cost.fit([(100.0, 5.0), (100.0, 7.0)], linear=True) == (0.0, 0.06)  # one work
    assert cost.fit([(100.0, 9.0), (200.0, 5.0)], linear=True) == (7.0, 0.0)   # rate < 0
    a, r = cost.fit([(100.0, 1.0), (200.0, 4.0)], linear=True)                 # overhead < 0
    assert a == 0 and r == pytest.approx((100 + 800) / (100**2 + 200**2))
    assert cost.fit([(0.0, 2.0), (0.0, 4.0)], linear=False) == (3.0, 0.0)


def test_unreadable_benchmarks_are_skipped(half_done):
    config, root = half_done
    bad = Path(root) / cell_at(config, 1e-3).dir / "benchmarks" / "measure.tsv"
    bad.write_text("garbage\n")
    assert cost.read_benchmark(str(bad)) is None
    assert cost.calibrate(config, str(root)).n_jobs == 8


def test_cli_prints_table_summary_and_json(half_done, capsys):
    config, root = half_done
    assert main(["plan", "-d", str(root)]) == 0
    out = capsys.readouterr().out
    assert "gaussian-teacher" in out and "calibrated on 9 finished jobs" in out
    assert main(["plan", "-d", str(root), "--summary"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("shiftcurv plan: 2/4 cells done, 2 to run (7 cell jobs, 6 SLURM")
    assert main(["plan", "-d", str(root), "--json", "--group-components", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["submissions"] == 1 and data["model"]["jobs"] == 9
    assert main(["plan", "-d", str(root / "missing")]) == 2
    assert main(["plan", "-d", str(root), "--group-components", "0"]) == 2


def test_ten_thousand_cells_plan_within_two_seconds(tmp_path):
    temps = [float(f"{1e-3 * (1 + i / 50):.6g}") for i in range(100)]
    config = tiny_config(tmp_path, temperatures=temps, seeds=list(range(10)),
                         batch_sizes=[1, 2, 4, 8, 16, 24, 32, 48, 64, 128])
    cells = sw.cells(config)
    assert len(cells) == 10_000
    for i, cell in enumerate(cells[:300]):  # some history: 300 finished cells
        finish(tmp_path, cell, cost.CELL_RULES, steps=100,
               seconds={"train": 5 + i % 7, "min_train": 2, "min_test": 2, "measure": 3})
    start = time.perf_counter()  # the real command, start-up included
    out = subprocess.run([sys.executable, "-m", "shiftcurv.cli", "plan", "-d", str(tmp_path),
                          "--summary"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("shiftcurv plan: 300/10000 cells done, 9700 to run")
    p = cost.plan(load_config(tmp_path / "config.yaml"), str(tmp_path))
    assert (p.total.done, p.total.remaining) == (300, 9_700) and p.model.n_jobs == 400
    assert elapsed < 2.0, f"shiftcurv plan took {elapsed:.2f} s for 10 000 cells"


def test_plan_reads_only_the_working_directory(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    os.makedirs("results/runs")
    assert cost.plan(config).total.remaining == 2


def test_flow_time_comes_from_the_paper_protocol():
    """τ = lr·⌈N/B⌉·max_epochs per split (App. G): CIFAR-10 VGG 10 / 2, ResNet 5 / 1; the default
    MNIST-1D (1600 / 400, B 5000) 1 / 1; a given tau_max (number or per split) wins."""
    paper = load_config(REPO / "configs/paper-cifar10.yaml")
    for arch, want in (("vgg16", (10, 2)), ("resnet10", (5, 1))):
        cell = next(c for c in sw.cells(paper) if c.arch == arch)
        got = tuple(sw.minimize_settings(paper, cell, split)["tau_max"]
                    for split in ("train", "test"))
        assert got == pytest.approx(want, rel=1e-12), arch
    default = load_config(REPO / "config.yaml")
    cell = sw.cells(default)[0]
    # the default sweep keeps τ = 10 on purpose (README: what a minimum is here) ...
    assert [sw.flow_time(default, cell, s) for s in ("train", "test")] == [10.0, 10.0]
    del default["minimize"]["tau_max"]  # ... where the paper protocol would give 1 and 1
    assert [sw.flow_time(default, cell, s) for s in ("train", "test")] == pytest.approx([1, 1])
    default["minimize"]["tau_max"] = {"train": 7.0, "test": 3.0}
    assert [sw.flow_time(default, cell, s) for s in ("train", "test")] == [7.0, 3.0]
    default["minimize"]["tau_max"] = 4.0
    assert sw.minimize_settings(default, cell, "test")["tau_max"] == 4.0


def test_capped_budgets_are_named_by_plan(tmp_path, capsys):
    config = tiny_config(tmp_path, temperatures=[5e-4, 1e-3, 4e-3])
    assert sw.capped_temperatures(config) == {"5e-04": (20, 40)}
    assert main(["plan", "--config", str(tmp_path / "config.yaml"), "-d", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "caps the 1 cell at T~5e-04" in err and "asks 40" in err
    assert main(["plan", "--json", "--config", str(tmp_path / "config.yaml"), "-d",
                 str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["capped_temperatures"] == {
        "5e-04": {"epochs": 20, "epochs_budget": 40}}
    # the paper config as shipped caps nothing (T = 2.5e-5 trains its 800 epochs)
    assert sw.capped_temperatures(load_config(REPO / "configs/paper-cifar10.yaml")) == {}


def test_fig5_runs_share_submissions_in_the_paper_config(tmp_path, capsys):
    """Each Fig. 5 run was one SLURM submission (10 + 560 + 175 = 745 in the paper config); in
    groups of K = ⌊24 h / fig5.runtime⌋ (240 / 480 / 480 min: 6 / 3 / 3 runs) they are
    2 + 187 + 59 = 248, each asking for at most a day on its first attempt."""
    paper = load_config(REPO / "configs/paper-cifar10.yaml")
    p = cost.plan(paper, str(tmp_path))
    runs = {g: p.other_jobs[g] for g in cost.FIG5_RULES}
    assert runs == {"fig5_stage1": 10, "fig5_stage2": 560, "fig5_shift": 175}
    assert p.fig5_group_components == cost.fig5_group_components(paper) == {
        "fig5_stage1": 6, "fig5_stage2": 3, "fig5_shift": 3}
    for g, k in p.fig5_group_components.items():
        assert k * paper["fig5"]["runtime"][g.removeprefix("fig5_")] <= 24 * 60
    assert p.fig5_submissions == 2 + 187 + 59 + 2  # + fig5_gather, fig5_plots
    ungrouped = cost.plan(paper, str(tmp_path), fig5_groups=dict.fromkeys(cost.FIG5_RULES, 1))
    assert ungrouped.fig5_submissions == 745 + 2
    assert ungrouped.submissions - p.submissions == 745 - 248
    # the shipped profile packs exactly these K
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert {g: int(k) for g, _, k in (x.partition("=") for x in profile["group-components"])} \
        == p.fig5_group_components
    # the CLI shows the count, and takes the profile's GROUP=K syntax
    paper_file = str(REPO / "configs/paper-cifar10.yaml")
    assert main(["plan", "--config", paper_file, "-d", str(tmp_path)]) == 0
    assert "Fig. 5: 745 runs left in 250 SLURM submissions" in capsys.readouterr().out
    assert main(["plan", "--config", paper_file, "-d", str(tmp_path), "--json",
                 "--group-components", "2", "fig5_stage2=4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fig5_group_components"]["fig5_stage2"] == 4
    assert data["fig5_submissions"] == 2 + 140 + 59 + 2 and data["group_components"] == 2
    assert main(["plan", "--config", paper_file, "-d", str(tmp_path),
                 "--group-components", "nosuch=2"]) == 2


@pytest.mark.slow
def test_paper_config_dry_run_with_the_slurm_profile_groups_fig5(tmp_path):
    """The real scheduler agrees with the plan: `snakemake -n --profile profiles/slurm` on the
    paper config (no data needed) lists 2 + 187 + 59 Fig. 5 group jobs."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--profile", str(REPO / "profiles/slurm"), "-n",
         "--configfile", str(REPO / "configs/paper-cifar10.yaml")],
        env=env, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "This was a dry-run" in text, text[-6000:]
    groups = {}
    for name in re.findall(r"Group job (\w+) ", text):
        groups[name] = groups.get(name, 0) + 1
    assert {g: groups.get(g) for g in cost.FIG5_RULES} == {
        "fig5_stage1": 2, "fig5_stage2": 187, "fig5_shift": 59}
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(fig5_\w+)\s+(\d+)$", text, re.M)}
    assert jobs == {"fig5_stage1": 10, "fig5_stage2": 560, "fig5_shift": 175,
                    "fig5_gather": 1, "fig5_plots": 1}
