"""Packed cells (shiftcurv.train.packed, `shiftcurv train-pack`): a cell's weights do not depend
on its pack-mates (bit for bit on CPU), each keeps its own epoch budget and divergence status,
and a pack killed (SIGKILL) or stopped (SIGTERM) mid-run resumes every cell bit-identically."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny
from safetensors import safe_open
from safetensors.torch import load_file

from shiftcurv import models
from shiftcurv.cli import main
from shiftcurv.train import packed_grouped
from shiftcurv.train.packed import check_packable, fit_packed
from shiftcurv.train.sgd import TrainSettings, fit
from shiftcurv.train.signals import EXIT_INTERRUPTED

# conftest sets SLURM_CONF=/dev/null: no 10-s SLURM probe at each Snakemake start
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
ARCHS = {"mlp": {"type": "mlp", "widths": [6]},
         "cnn1d": {"type": "cnn1d", "channels": [4, 4]},
         "mlp-bn": {"type": "mlp", "widths": [6], "batch_norm": True},
         "cnn1d-bn": {"type": "cnn1d", "channels": [4, 4], "batch_norm": True}}
# (T, seed): budgets 6, 3 and 2 epochs (E = ceil(6 * 2e-3 / T))
CELLS = [(2e-3, 0), (4e-3, 1), (6e-3, 2)]


def settings(temperature, seed, **kw):
    return TrainSettings(**({"temperature": temperature, "batch_size": 32, "seed": seed,
                             "epochs_ref": 6, "temperature_ref": 2e-3, "max_epochs": 6,
                             "checkpoint_every": 0} | kw))


def build(ds, arch, seed):
    torch.manual_seed(seed)  # as `shiftcurv train` and `train-pack` do
    return models.build(ARCHS[arch], ds.in_shape, ds.n_classes)


def pack(ds, arch, cells, **kw):
    x, y = ds.tensors("train", dtype=torch.float32)
    nets = [build(ds, arch, seed) for _, seed in cells]
    finished = {}

    def on_finish(k):
        finished[k] = {n: t.clone() for n, t in nets[k].state_dict().items()}

    states = fit_packed(nets, x, y, [settings(t, s, **kw) for t, s in cells],
                        on_finish=on_finish)
    return nets, states, finished


def assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_a_packed_cell_equals_the_same_cell_in_a_pack_of_one(teacher, arch):
    nets, states, finished = pack(teacher, arch, CELLS)
    # the plain MLP and CNN run grouped kernels, the BN nets vmap: both paths are covered here
    assert (packed_grouped.plan(nets[0]) is not None) == ("bn" not in arch)
    assert [s.status for s in states] == ["ok"] * 3
    assert [s.epoch for s in states] == [6, 3, 2]  # each its own budget
    assert [len(s.history["loss"]) for s in states] == [6, 3, 2]
    for k, cell in enumerate(CELLS):
        alone, state, _ = pack(teacher, arch, [cell])
        assert_same(nets[k], alone[0])
        assert state[0].history["loss"] == states[k].history["loss"]
        # a cell that is done stops moving: its weights at its end are its final weights
        assert all(torch.equal(finished[k][n], t) for n, t in nets[k].state_dict().items())
    if "bn" in arch:  # batch-norm statistics are each cell's own
        stats = [n.state_dict()["2.running_mean"] for n in nets]
        assert not torch.equal(stats[0], stats[1])


def test_a_pack_of_one_equals_the_unpacked_trainer_on_the_mlp(teacher):
    """The 1-D CNN's pack of one differs from `sgd.fit` in the last bits (vmap's grouped
    convolution, see shiftcurv.train.packed_model); the MLP's kernels are the same."""
    x, y = teacher.tensors("train", dtype=torch.float32)
    packed, _, _ = pack(teacher, "mlp", [CELLS[0]])
    unpacked = build(teacher, "mlp", CELLS[0][1])
    fit(unpacked, x, y, settings(*CELLS[0]))
    assert_same(packed[0], unpacked)


def test_a_diverging_cell_stops_alone(teacher):
    cells = [CELLS[0], (1e4, 1), CELLS[2]]
    nets, states, finished = pack(teacher, "mlp", cells)
    assert [s.status for s in states] == ["ok", "diverged", "ok"]
    assert states[1].epoch == 1 and states[0].epoch == 6 and sorted(finished) == [0, 1, 2]
    for k in (0, 2):
        alone, _, _ = pack(teacher, "mlp", [cells[k]])
        assert_same(nets[k], alone[0])


def test_cells_that_cannot_share_a_pack_are_refused():
    with pytest.raises(ValueError, match="must share batch_size"):
        check_packable([settings(1e-3, 0), settings(1e-3, 1, batch_size=64)])
    with pytest.raises(ValueError, match="momentum 0.9.*shiftcurv train"):
        check_packable([settings(1e-3, 0, momentum=0.9)])


# -- the command: kill -9 and SIGTERM mid-pack, then resume --------------------------------------
ARCH = {"type": "mlp", "widths": [16]}
# 64 steps per epoch on 2048 samples; budgets 30, 60 and 120 epochs, a checkpoint every epoch
PACK = [(4e-3, 0), (2e-3, 1), (1e-3, 2)]


def cells_json(out: Path) -> str:
    return json.dumps([
        {"settings": {"arch": ARCH, "temperature": t, "batch_size": 32, "seed": s,
                      "epochs_ref": 120, "temperature_ref": 1e-3, "max_epochs": 120,
                      "checkpoint_every": 1},
         "out_weights": str(out / f"c{k}" / "w.safetensors"),
         "out_record": str(out / f"c{k}" / "t.json")} for k, (t, s) in enumerate(PACK)])


def argv(data, out):
    return ["train-pack", "--data", str(data), "--cells", cells_json(out), "--threads", "1"]


@pytest.fixture(scope="module")
def data(teacher_2048_file):
    return teacher_2048_file


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """The uninterrupted pack (in this process: the same code, settings and thread count)."""
    out = tmp_path_factory.mktemp("reference")
    assert main(argv(data, out)) == 0
    return out


def start(data, out):
    return subprocess.Popen([sys.executable, "-m", "shiftcurv.cli", *argv(data, out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc, timeout=60.0):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"ended before {path} appeared:\n{proc.communicate()[1]}"
        assert time.monotonic() - t0 < timeout, f"{path} did not appear in {timeout} s"
        time.sleep(0.005)


def checkpoint_epoch(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(json.loads(f.metadata()["epoch"]))


def assert_same_outputs(out, ref):
    for k in range(len(PACK)):
        a, b = (load_file(str(d / f"c{k}/w.safetensors")) for d in (out, ref))
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), k
        ra, rb = (json.loads((d / f"c{k}/t.json").read_text()) for d in (out, ref))
        assert ra["history"]["loss"] == rb["history"]["loss"] and ra["status"] == "ok"
        assert not (out / f"c{k}/w.safetensors.ckpt").exists()


def test_sigterm_checkpoints_every_cell_exits_75_and_the_rerun_resumes(tmp_path, data,
                                                                      reference, capsys):
    proc = start(data, tmp_path)
    wait_for(tmp_path / "c1/w.safetensors.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    running = [k for k in range(len(PACK)) if not (tmp_path / f"c{k}/t.json").exists()]
    assert 2 in running, "SIGTERM came after the pack ended"
    epochs = {checkpoint_epoch(tmp_path / f"c{k}/w.safetensors.ckpt") for k in running}
    assert len(epochs) == 1  # every cell still training, at the same epoch boundary
    epoch = epochs.pop()
    assert all(f"cell {k} interrupted by SIGTERM at epoch {epoch}/" in err for k in running)
    done = {k: (tmp_path / f"c{k}/t.json").stat().st_mtime_ns for k in range(3)
            if k not in running}
    assert main(argv(data, tmp_path)) == 0
    err = capsys.readouterr().err
    assert all(f"cell {k}: resuming from checkpoint" in err for k in running)
    assert all((tmp_path / f"c{k}/t.json").stat().st_mtime_ns == t for k, t in done.items())
    assert_same_outputs(tmp_path, reference)


def with_steps(out: Path, data) -> Path:
    """The pack's cells, each with two later steps (its minima), as a --cells file."""
    cells = json.loads(cells_json(out))
    for k, c in enumerate(cells):
        c["steps"] = [{"name": f"min_{split}", "argv": [
            "minimize", "--data", str(data), "--init", c["out_weights"],
            "--init-record", c["out_record"], "--settings", json.dumps(
                {"arch": ARCH, "split": split, "l2": 1e-5, "tau_max": 20.0, "gtol": 1e-7}),
            "--out-weights", str(out / f"c{k}/theta_{split}.safetensors"),
            "--out-record", str(out / f"c{k}/min_{split}.json")]} for split in ("train", "test")]
    path = out / "cells.json"
    path.write_text(json.dumps(cells))
    return path


def test_sigterm_during_the_cells_steps_exits_75_and_the_rerun_goes_on(tmp_path, data):
    """A stop signal after training, while the pack runs its cells' later steps: the running
    step ends, no other starts, exit 75; the rerun trains nothing, keeps the staged steps and
    runs the rest."""
    from shiftcurv.commands import _staging as staging

    spec = with_steps(tmp_path, data)
    cmd = ["train-pack", "--data", str(data), "--cells", f"@{spec}", "--threads", "1",
           "--out-record", str(tmp_path / "pack.json")]
    proc = subprocess.Popen([sys.executable, "-m", "shiftcurv.cli", *cmd], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = staging.key_file([str(tmp_path / "c0/theta_train.safetensors")])
    wait_for(first, proc, timeout=120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted by a stop signal between the cells' steps" in err
    keys = sorted(tmp_path.glob("c*/*.packed.key"))
    assert 1 <= len(keys) < 6 and not (tmp_path / "pack.json").exists()
    dated = {p: p.stat().st_mtime_ns for p in keys}
    assert main(cmd) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in dated.items())  # not run again
    assert len(list(tmp_path.glob("c*/*.packed.key"))) == 6
    record = json.loads((tmp_path / "pack.json").read_text())
    assert record["trained"] == 0  # every cell was done: no training in the rerun
    ran = sum(len(c.get("steps", {})) for c in record["cells"])
    assert ran == 6 - len(keys) and all(st["rc"] == 0 for c in record["cells"]
                                        for st in c.get("steps", {}).values())


# -- the workflow: `pack: K` -------------------------------------------------------------------
def snakemake_cmd(workdir, *args):
    """Snakemake on the tiny config's cells (each cell's measure and Eq. 4 records)."""
    import yaml

    from shiftcurv import sweep as sw
    from shiftcurv.config import validate

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    try:
        config = validate(config)
        targets = [f"{c.dir}/{f}" for c in sw.cells(config) for f in (
            sw.MEASURE_OUT, *(sw.EQ4_OUT.format(chain=ch) for ch in sw.eq4_chains(config)
                              if c in sw.eq4_cells(config)))]
    except Exception:  # a bad config: Snakemake itself must refuse it
        targets = []
    repo = Path(__file__).resolve().parents[1]
    return [sys.executable, "-m", "snakemake", *targets, "-s", str(repo / "Snakefile"),
            "-d", str(workdir), "--profile", str(repo / "profiles/local"), "--cores", "2", *args,
            "--configfile", str(workdir / "config.yaml")]


def snakemake(workdir, *args, check=True):
    out = subprocess.run(snakemake_cmd(workdir, *args), env=ENV, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_a_bad_pack_setting_is_refused_at_parse_time(tmp_path):
    out = snakemake(tiny(tmp_path, pack=0), "-n", check=False)
    assert out.returncode != 0 and "instance['pack']" in out.stdout + out.stderr


EQ4_TINY = {"enabled": True, "samples": 8, "batches": 4, "min_batches": 4, "pilot_epochs": 5,
            "max_epochs": 40}


def test_adding_seeds_to_a_packed_sweep_retrains_no_finished_cell(tmp_path):
    """A packed sweep: the pack trains its cells and runs their minima, measures and Eq. 4
    chains; every cell job takes its staged result over (none computes); the results are the
    ones the cells' own commands compute. Then a seed is added: new packs of the new cells
    only, no finished cell redone or re-dated."""
    from shiftcurv import sweep as sw
    from shiftcurv.config import load_config
    from shiftcurv.sweep import packs

    work = tiny(tmp_path, pack=4, seeds=[0, 1], eq4=EQ4_TINY)
    snakemake(work)
    runs = sorted((work / "results/runs").glob("*/*/*/*/*"))
    assert len(runs) == 4
    outputs = ["train.json", "min_train.json", "min_test.json", "measure.json", "eq4_rr.json"]
    first = {d / f: (d / f).stat().st_mtime_ns for d in runs for f in outputs}
    records = [json.loads((d / "train.json").read_text()) for d in runs]
    assert {r["pack"]["size"] for r in records} == {4} and {r["status"] for r in records} == {"ok"}
    assert not list(work.glob("results/runs/**/*.packed*"))  # every staged result taken over
    for d in runs:  # each job adopted its step (none recomputed it)
        for log in ("train", "min_train", "min_test", "measure", "sample_rr"):
            assert "adopted the pack's" in (d / f"logs/{log}.log").read_text(), (d, log)
    pack = json.loads(next(work.glob("results/packs/*/*/*/pack~??????????.json")).read_text())
    assert [sorted(c["steps"]) for c in pack["cells"]] == [
        ["measure", "min_test", "min_train", "sample_rr"]] * 4
    assert {st["rc"] for c in pack["cells"] for st in c["steps"].values()} == {0}
    # a cell's steps by its own commands, here: the same numbers as the pack's
    config = load_config(work / "config.yaml")
    cell = sw.cells(config)[3]
    for step in packs.cell_steps(config, cell)[2:]:  # measure and the chain
        out = step["argv"].index("--out") + 1
        mine = tmp_path / f"mine_{step['name']}.json"
        argv = [*step["argv"][:out], str(mine), *step["argv"][out + 1:]]
        subprocess.run([sys.executable, "-m", "shiftcurv.cli", *argv], cwd=work, env=ENV,
                       check=True, capture_output=True)
        assert same_numbers(json.loads(mine.read_text()),
                            json.loads((work / step["argv"][out]).read_text())), step["name"]

    tiny(tmp_path, pack=4, seeds=[0, 1, 2], eq4=EQ4_TINY)  # a seed added
    index = json.loads((work / packs.INDEX).read_text())
    plan = snakemake(work, "-n").stdout
    assert "train_pack        1" in plan and "train             2" in plan  # the new cells only
    assert json.loads((work / packs.INDEX).read_text()) == index  # a dry run records nothing
    snakemake(work)
    assert {p: p.stat().st_mtime_ns for p in first} == first  # nothing redone or re-dated
    index = json.loads((work / packs.INDEX).read_text())
    assert len(index) == 6 and len(set(index.values())) == 2
    seed2 = [json.loads(p.read_text()) for p in work.glob("results/runs/*/*/*/*/seed~2/train.json")]
    assert len(seed2) == 2 and {r["pack"]["size"] for r in seed2} == {2}
    assert "Nothing to be done" in snakemake(work, "-n").stdout


def same_numbers(a, b) -> bool:
    """Two records equal but for wall times, paths and provenance."""
    if isinstance(a, dict) and isinstance(b, dict):
        skip = lambda k: "seconds" in k or k in ("provenance", "time")  # noqa: E731
        keys = {k for k in a if not skip(k)}
        return keys == {k for k in b if not skip(k)} and all(same_numbers(a[k], b[k])
                                                             for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)  # NaN equals NaN here


# -- packs in the plan and the cost model (no torch, no Snakemake) --------------------------------
def tiny_config(tmp_path, **changes):
    from shiftcurv.config import load_config

    return load_config(tiny(tmp_path, **changes) / "config.yaml")


def test_packs_form_from_missing_cells_and_stick(tmp_path):
    from shiftcurv import sweep as sw
    from shiftcurv.sweep import packs

    config = tiny_config(tmp_path, pack=4, seeds=[0, 1, 2])  # 6 cells: packs of 4 and 2
    done = sw.cells(config)[0]  # trained before packing: stays unpacked
    for f in sw.TRAIN_OUT.values():
        (tmp_path / done.dir).mkdir(parents=True, exist_ok=True)
        (tmp_path / done.dir / f).write_text("{}")
    assignment, new = packs.assign(config, str(tmp_path))
    assert new and done not in assignment and len(assignment) == 5
    assert sorted(len(packs.members(assignment, r)) for r in set(assignment.values())) == [1, 4]
    packs.save_index(assignment, str(tmp_path))
    more = tiny_config(tmp_path, pack=4, seeds=[0, 1, 2, 3])  # a seed added: a new pack
    again, new = packs.assign(more, str(tmp_path))
    assert all(again[c] == r for c, r in assignment.items())  # sticky
    added = [c for c in again if c not in assignment]
    assert new and len(added) == 2 and again[added[0]] not in assignment.values()


CELL_STEPS = ("train", "min_train", "min_test", "measure")


def test_the_plan_counts_packs_and_calibrates_on_finished_ones(tmp_path):
    from shiftcurv.sweep import cost, packs

    config = tiny_config(tmp_path, pack=4, seeds=[0, 1, 2])
    p = cost.plan(config, str(tmp_path))
    assert p.other_jobs["train_pack"] == 2 and p.total.jobs["train"] == 6
    assert p.submissions == 6 + 2 + 4  # cells, packs, prepare_data + gather + plots + synthetic
    assignment, _ = packs.assign(config, str(tmp_path))
    members = packs.members(assignment, next(iter(assignment.values())))
    prior = cost.pack_seconds(p.model, config, members)
    assert prior == pytest.approx(sum(cost.predict_seconds(p.model, config, c, rule)
                                      for c in members for rule in CELL_STEPS))
    assert p.total.seconds == pytest.approx(sum(  # the packs' predictions, nothing twice
        cost.pack_seconds(p.model, config, packs.members(assignment, r))
        for r in set(assignment.values())))
    # a finished pack of this (dataset, arch): 100 s of training for 1e6 sample-steps, and its
    # cells' steps (min_train 2 s, min_test 3 s, measure 4 s; a failed one is no sample)
    steps = {"min_train": {"rc": 0, "seconds": 2.0}, "min_test": {"rc": 0, "seconds": 3.0},
             "measure": {"rc": 0, "seconds": 4.0}}
    record = tmp_path / "results/packs/gaussian-teacher/mlp/B~32/pack~0123456789.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"cells": [
        {"work": 5e5, "steps": steps}, {"work": 5e5, "steps": steps},
        {"skipped": True, "steps": {"measure": {"rc": 2, "seconds": 0.5}}}]}))
    record.with_suffix(".benchmark.tsv").write_text("s\th:m:s\n118.5\t0:01:58\n")
    record.with_suffix(".cells.json").write_text("[]")  # the job's --cells: not a record
    model = cost.calibrate(config, str(tmp_path))
    work = sum(cost.train_work(config, c) for c in members)
    assert cost.pack_seconds(model, config, members) == pytest.approx(
        100.0 * work / 1e6 + 9.0 * len(members))


def test_a_pack_killed_mid_sweep_resumes_every_cell_bit_identically(tmp_path, capsys):
    """kill -9 of the whole sweep (Snakemake and the pack job, as a node that dies) mid-pack;
    the rerun resumes the pack from its members' checkpoints, and every cell ends with the
    weights of an uninterrupted pack."""
    from safetensors.torch import load_file

    from shiftcurv import sweep as sw
    from shiftcurv.config import load_config
    from shiftcurv.sweep import packs

    # 2048 samples (64 steps an epoch); budgets 200 (T = 1e-3) and 50 epochs, a checkpoint every 5
    work = tiny(tmp_path, pack=4, seeds=[0, 1],
                datasets={"gaussian-teacher": {"n_train": 2048, "n_test": 128}},
                train={"epochs_ref": 200, "max_epochs": 200, "checkpoint_every": 5})
    config = load_config(work / "config.yaml")
    slow = next(c for c in sw.cells(config) if c.T == 1e-3)
    proc = subprocess.Popen(snakemake_cmd(work), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(work / slow.dir / packs.PACKED_CKPT, proc, timeout=120)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / slow.dir / "train.json").exists(), "the kill was not mid-pack"
    snakemake(work, "--unlock")
    snakemake(work)  # the profile reruns the incomplete pack job
    log = next(work.glob("results/packs/*/*/*/pack~*.log")).read_text()
    assert f"resuming from checkpoint {slow.dir}/{packs.PACKED_CKPT}" in log
    # the reference: the same cells packed here, uninterrupted
    assignment, _ = packs.assign(config, str(work))
    cells = packs.cells_argument(config, assignment, assignment[slow])
    for k, c in enumerate(cells):
        c.update(out_weights=str(tmp_path / f"ref{k}.safetensors"),
                 out_record=str(tmp_path / f"ref{k}.json"), checkpoint=None, done_if=[])
        del c["job_argv"], c["steps"]  # the training alone, into the reference files
    assert main(["train-pack", "--data", str(work / "results/data/gaussian-teacher.npz"),
                 "--cells", json.dumps(cells), "--threads", "1"]) == 0
    capsys.readouterr()
    for k, c in enumerate(packs.members(assignment, assignment[slow])):
        a = load_file(str(work / c.dir / "theta_sgd.safetensors"))
        b = load_file(str(tmp_path / f"ref{k}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), c.dir
        assert not list((work / c.dir).glob("*.packed*"))


# -- Fig. 5 runs in packs ------------------------------------------------------------------------
def test_fig5_stage2_packs_train_vectorized_and_match_the_runs_own_commands(tmp_path):
    """pack: 4 on the two-stage Fig. 5 run: stage 1 (momentum) in a `run-steps` pack, stage 2
    (plain SGD from the stage-1 weights, eval every epoch) in one vectorized pack per batch
    size; every run's own job takes its result over; a stage-2 run equals what its own command
    computes up to float rounding (batch-norm statistics summed in another order)."""
    from test_workflow import TINY_FIG5

    from shiftcurv.config import load_config
    from shiftcurv.sweep import packs

    work = tiny(tmp_path / "w", pack=4, fig5=TINY_FIG5)
    out = subprocess.run([sys.executable, "-m", "snakemake", "fig5", "-s",
                          str(Path(__file__).resolve().parents[1] / "Snakefile"), "-d", str(work),
                          "--profile", str(Path(__file__).resolve().parents[1] / "profiles/local"),
                          "--cores", "2", "--configfile", str(work / "config.yaml")],
                         env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "fig5_train_pack        2" in out.stderr and "fig5_pack              1" in out.stderr
    logs = list(work.glob("results/fig5/*/*/stage*/**/train.log"))
    assert len(logs) == 2 + 8 and all("adopted the pack's" in p.read_text() for p in logs)
    stage2 = [r for r in packs.fig5_runs(load_config(work / "config.yaml"))
              if r["stage"] == "stage2"]
    records = sorted(work.glob("results/packs/fig5/*/*/stage2/B~*/pack~??????????.json"))
    assert [len(json.loads(p.read_text())["cells"]) for p in records] == [4, 4]
    run = stage2[-1]
    argv = [*run["argv"][:-4], "--out-weights", str(tmp_path / "mine.safetensors"),
            "--out-record", str(tmp_path / "mine.json")]
    subprocess.run([sys.executable, "-m", "shiftcurv.cli", *argv], cwd=work, env=ENV,
                   check=True, capture_output=True)
    mine, packed = (load_file(str(p)) for p in (tmp_path / "mine.safetensors",
                                                work / run["dir"] / "theta.safetensors"))
    assert all(torch.allclose(mine[k], packed[k], rtol=0, atol=1e-6) for k in mine)
    a, b = (json.loads(p.read_text()) for p in (tmp_path / "mine.json",
                                                work / run["dir"] / "train.json"))
    assert a["history"]["eval_epoch"] == b["history"]["eval_epoch"] == [1, 2, 3, 4]
    for key in ("final_train_loss", "final_eval_train_loss", "final_test_loss", "test_loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-6), key
    assert b["init_sha256"] == a["init_sha256"] and b["status"] == "ok"
