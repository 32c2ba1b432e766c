"""Fig. 5 building blocks: momentum + step-decay SGD (bit-identical to a bare loop, resumable),
the shuffle / sample-size splits, the plan, the collapse statistics and the BN mismatch at fixed T
on exact cases."""

import json
import math
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_mlp
from safetensors.torch import load_file

from shiftcurv import ShiftcurvError
from shiftcurv.cli import main
from shiftcurv.data import splits
from shiftcurv.results.fig5 import (
    bn_mismatch,
    build_dataset,
    collapse,
    paired_difference,
    shared_temperatures,
    summary,
)
from shiftcurv.sweep import fig5
from shiftcurv.train.sgd import TrainSettings, TrainState, epoch_permutation, fit
from shiftcurv.train.signals import EXIT_INTERRUPTED


def stage1(**kw):
    base = dict(temperature=0.1 / 64, batch_size=64, momentum=0.9, lr_milestones=(0.5, 0.75),
                lr_decay=0.1, epochs_fixed=8, checkpoint_every=0, l2=5e-4)
    return TrainSettings(**(base | kw))


def params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_step_schedule_drops_at_the_milestones():
    s = stage1(epochs_fixed=20, lr_milestones=(0.5, 0.75, 0.9))
    lrs = [s.lr_at(e) for e in range(20)]
    assert lrs[:10] == [s.lr] * 10
    assert lrs[10:15] == pytest.approx([s.lr * 0.1] * 5, rel=1e-12)
    assert lrs[15:18] == pytest.approx([s.lr * 0.01] * 3, rel=1e-12)
    assert lrs[18:] == pytest.approx([s.lr * 0.001] * 2, rel=1e-12)
    assert s.epochs == 20  # fixed: no E·T budget
    assert TrainSettings(temperature=1e-3).lr_at(399) == TrainSettings(temperature=1e-3).lr


def test_momentum_and_decay_equal_a_bare_torch_loop(teacher):
    """Stage 1's optimiser through Lightning is bit-identical to torch's SGD(momentum) with the
    lr changed at the milestone epochs, BN included."""
    x, y = teacher.tensors("train", dtype=torch.float32)
    s = stage1()
    model = tiny_mlp(teacher, batch_norm=True)
    fit(model, x, y, s)
    bare = tiny_mlp(teacher, batch_norm=True)
    opt = torch.optim.SGD(bare.parameters(), lr=s.lr, momentum=0.9, weight_decay=5e-4)
    bare.train()
    for epoch in range(s.epochs):
        for g in opt.param_groups:
            g["lr"] = s.lr * 0.1 ** ((epoch >= 4) + (epoch >= 6))
        perm = epoch_permutation(s.seed, epoch, len(y))
        for idx in perm[: (len(y) // 64) * 64].view(-1, 64):
            opt.zero_grad()
            F.cross_entropy(bare(x[idx]), y[idx]).backward()
            opt.step()
    assert torch.equal(params(model), params(bare))
    for a, b in zip(model.buffers(), bare.buffers(), strict=True):  # BN running statistics
        assert torch.equal(a, b)


def test_resume_with_momentum_is_bit_identical(teacher):
    x, y = teacher.tensors("train", dtype=torch.float32)
    saved = {}

    def checkpoint(module):
        saved[module.state.epoch] = ({k: v.clone() for k, v in module.model.state_dict().items()},
                                     module.momentum_buffers())

    full = tiny_mlp(teacher, batch_norm=True)
    final = fit(full, x, y, stage1(checkpoint_every=3), checkpoint=checkpoint)
    assert final.status == "ok" and sorted(saved) == [3, 6]
    weights, buffers = saved[3]  # before the first decay: the schedule must resume too
    assert buffers is not None and len(buffers) == len(list(full.parameters()))
    resumed = tiny_mlp(teacher, seed=7, batch_norm=True)
    resumed.load_state_dict(weights)
    state = TrainState(epoch=3, history={k: [0.0] * 3 for k in ("epoch", "loss", "accuracy",
                                                                 "seconds")},
                       momentum_buffers=buffers)
    fit(resumed, x, y, stage1(), state=state)
    assert torch.equal(params(full), params(resumed))
    # without the momentum state the same resume is not exact: the test can fail
    other = tiny_mlp(teacher, seed=7, batch_norm=True)
    other.load_state_dict(weights)
    fit(other, x, y, stage1(), state=TrainState(epoch=3, history=state.history | {}))
    assert not torch.equal(params(full), params(other))


def test_eval_every_logs_eval_mode_losses_of_both_sets(teacher):
    x, y = teacher.tensors("train", dtype=torch.float32)
    xt, yt = teacher.tensors("test", dtype=torch.float32)
    model = tiny_mlp(teacher, batch_norm=True)
    st = fit(model, x, y, stage1(eval_every=2, epochs_fixed=5), eval_data=(xt, yt))
    h = st.history
    assert h["eval_epoch"] == [2, 4, 5]  # and always the last epoch
    model.eval()
    with torch.no_grad():
        test_loss = float(F.cross_entropy(model(xt), yt))
        train_loss = float(F.cross_entropy(model(x), y))
    assert h["eval_test_loss"][-1] == pytest.approx(test_loss, rel=1e-6)
    assert h["eval_train_loss"][-1] == pytest.approx(train_loss, rel=1e-6)


# -- CLI: checkpoint files carry the momentum; --init starts stage 2 --------------------------
SETTINGS = {"arch": {"type": "mlp", "widths": [16], "batch_norm": True}, "temperature": 0.1 / 32,
            "batch_size": 32, "seed": 0, "momentum": 0.9, "lr_milestones": [0.5],
            "epochs_fixed": 40, "checkpoint_every": 1, "l2": 5e-4, "eval_every": 1,
            "final_window": 5}


def run_train(tmp, data, settings=SETTINGS, init=None, capsys=None):
    argv = ["train", "--data", str(data), "--settings", json.dumps(settings),
            "--out-weights", str(tmp / "w.safetensors"), "--out-record", str(tmp / "t.json"),
            "--threads", "1"] + (["--init", str(init)] if init else [])
    code = main(argv)
    err = capsys.readouterr().err if capsys else ""
    return code, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "teacher.npz"
    assert main(["prepare-data", "--settings", json.dumps(
        {"name": "gaussian-teacher", "options": {"n_train": 2048, "n_test": 256}}),
        "--out", str(path)]) == 0
    return path


def test_interrupted_momentum_run_resumes_bit_identically_through_the_cli(tmp_path, data,
                                                                          capsys):
    ref = tmp_path / "ref"
    ref.mkdir()
    assert run_train(ref, data)[0] == 0
    cut = tmp_path / "cut"
    cut.mkdir()
    ckpt = cut / "w.safetensors.ckpt"

    def go():
        t0 = time.monotonic()
        while not ckpt.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGUSR1)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    code, err = run_train(cut, data, capsys=capsys)
    thread.join()
    assert code == EXIT_INTERRUPTED and "interrupted by SIGUSR1" in err
    assert any(k.startswith("__momentum__.") for k in load_file(str(ckpt)))
    code, err = run_train(cut, data, capsys=capsys)
    assert code == 0 and "resuming from checkpoint" in err
    a, b = load_file(str(ref / "w.safetensors")), load_file(str(cut / "w.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rec = json.loads((ref / "t.json").read_text())
    window = rec["history"]["eval_test_loss"][-5:]
    assert rec["final_test_loss"] == pytest.approx(float(np.median(window)))
    assert rec["final_train_loss"] == pytest.approx(float(np.median(rec["history"]["loss"][-5:])))


def test_stage2_starts_from_the_init_weights_and_keys_its_checkpoint_on_them(tmp_path, data,
                                                                            capsys):
    s1 = tmp_path / "s1"
    s1.mkdir()
    assert run_train(s1, data, SETTINGS | {"epochs_fixed": 3})[0] == 0
    s2 = tmp_path / "s2"
    s2.mkdir()
    stage2 = SETTINGS | {"momentum": 0.0, "lr_milestones": [], "epochs_fixed": 1,
                         "temperature": 1e-9}  # lr ~ 0: stage 2 stays at the init
    assert run_train(s2, data, stage2, init=s1 / "w.safetensors")[0] == 0
    a, b = load_file(str(s1 / "w.safetensors")), load_file(str(s2 / "w.safetensors"))
    for k in a:
        if "running" in k or "num_batches" in k:
            continue  # one epoch of train-mode BN updates its running statistics
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    rec = json.loads((s2 / "t.json").read_text())
    assert rec["init_sha256"] and rec["init"].endswith("w.safetensors")


# -- splits -----------------------------------------------------------------------------------
def test_reshuffle_keeps_sizes_and_pool_and_depends_on_the_seed(teacher):
    a, b = splits.reshuffled(teacher, 0), splits.reshuffled(teacher, 1)
    assert (a.n_train, a.n_test) == (teacher.n_train, teacher.n_test)
    pool = np.sort(np.concatenate([teacher.x_train, teacher.x_test]).ravel())
    assert np.array_equal(np.sort(np.concatenate([a.x_train, a.x_test]).ravel()), pool)
    assert not np.array_equal(a.x_train, b.x_train)
    assert np.array_equal(splits.reshuffled(teacher, 0).x_train, a.x_train)
    # a random split mixes: about n_test/(n) of the new train set was test data before
    old_test = {r.tobytes() for r in teacher.x_test}
    frac = np.mean([r.tobytes() in old_test for r in a.x_train])
    assert 0.2 < frac < 0.47  # expected 128/384 = 0.33


def test_subsample_splits_proportionally(teacher):
    d = splits.subsampled(teacher, 300, 0)
    assert (d.n_train, d.n_test) == (200, 100)  # 256/384 of 300
    assert d.meta["sample_size"] == 300
    with pytest.raises(ShiftcurvError, match="sample_size 1000 is outside 2..384"):
        splits.subsampled(teacher, 1000, 0)
    assert splits.apply(teacher, {}) is teacher
    with pytest.raises(ShiftcurvError, match="unknown split"):
        splits.apply(teacher, {"shuffle": 1})


# -- plan -------------------------------------------------------------------------------------
def fig5_config(**changes):
    f = {"dataset": "d", "arch": "a", "datasets": {}, "archs": {}, "seeds": [0, 1],
         "experiments": ["temperature", "shuffle", "sample_size"], "checkpoint_every": 10,
         "stage1": {"batch_size": 64, "lr": 0.1, "lr_decay": 0.1, "lr_milestones": [0.5],
                    "epochs": 4, "momentum": 0.9, "weight_decay": 5e-4},
         "stage2": {"batch_sizes": [16, 32], "lrs": [0.01, 0.02, 0.04], "epochs": 3,
                    "momentum": 0.0, "weight_decay": 5e-4, "final_window": 2,
                    "temperature_range": None},
         "shift": {"trials": 2, "sample_sizes": [100, 200], "batch_size": 32, "lr": 0.1,
                   "lr_decay": 0.1, "lr_milestones": [0.5], "epochs": 3, "momentum": 0.0,
                   "weight_decay": 5e-4, "final_window": 2}}
    for k, v in changes.items():
        f[k] = f[k] | v if isinstance(v, dict) else v
    return {"datasets": {"d": {"type": "gaussian-teacher", "n_train": 256, "n_test": 128}},
            "archs": {"a": {"type": "mlp"}},
            "train": {"device": "cpu"}, "fig5": f}


def test_plan_counts_and_paths():
    c = fig5_config()
    files = fig5.record_files(c)
    assert len(files) == 2 + 3 * 2 * 2 + 2 + 2 + 2 * 2
    assert "results/fig5/d/a/stage2/lr~2e-02/B~32/seed~1/train.json" in files
    assert "results/fig5/d/a/shift/sample_size~200/seed~1/train.json" in files
    ranged = fig5_config(stage2={"temperature_range": [6e-4, 1.3e-3]})
    assert {(x.lr, x.batch_size) for x in fig5.stage2_cells(ranged)} == {
        ("1e-02", 16), ("2e-02", 16), ("2e-02", 32), ("4e-02", 32)}
    only = fig5_config(experiments=["shuffle"])
    assert {f.split("/")[5] for f in fig5.record_files(only)} == {"default", "shuffle_seed~0",
                                                                  "shuffle_seed~1"}


def test_settings_of_each_stage():
    c = fig5_config()
    s1 = fig5.stage1_settings(c, 1)
    assert s1["momentum"] == 0.9 and s1["lr"] == 0.1 and s1["epochs_fixed"] == 4
    assert s1["temperature"] * s1["batch_size"] == pytest.approx(0.1, rel=1e-15)
    s2 = fig5.stage2_settings(c, fig5.Stage2Cell("4e-02", 16, 0))
    assert s2["momentum"] == 0.0 and s2["lr_milestones"] == [] and s2["eval_every"] == 1
    assert s2["temperature"] == pytest.approx(0.04 / 16)
    sh = fig5.shift_settings(c, "sample_size~200", 1)
    assert sh["split"] == {"sample_size": 200, "sample_seed": 1}
    assert fig5.shift_settings(c, "shuffle_seed~1", 1)["split"] == {"shuffle_seed": 1}


@pytest.mark.parametrize("changes,needle", [
    ({"dataset": "nope"}, "fig5.dataset: 'nope' is not in `datasets` or fig5.datasets"),
    ({"arch": "nope"}, "fig5.arch: 'nope' is not in `archs`"),
    ({"stage1": {"batch_size": 1000}}, "fig5.stage1.batch_size: 1000 is larger than the 256"),
    ({"shift": {"sample_sizes": [500]}}, "fig5.shift.sample_sizes: 500 is more than the 384"),
    ({"shift": {"sample_sizes": [40]}}, "leaves 27 training samples, fewer than shift.batch"),
    ({"stage1": {"lr_milestones": [0.5, 1.5]}}, "fig5.stage1.lr_milestones: [1.5]"),
    ({"stage2": {"temperature_range": [1.0, 2.0]}}, "no (lr, B) of the grid"),
    ({"seeds": [0, 0]}, "fig5.seeds: duplicate"),
])
def test_config_problems_name_the_key(changes, needle):
    problems = fig5.problems(fig5_config(**changes))
    assert any(needle in p for p in problems), problems
    assert fig5.problems(fig5_config()) == []


# -- the statistics, on exact cases ------------------------------------------------------------
def test_collapse_statistics_on_an_exact_grid():
    lr = np.array([0.01, 0.02, 0.04])
    b = np.array([16, 32])
    T = lr[:, None] / b[None, :]
    loss = np.log(T) * -1.0  # a function of T only: a perfect collapse
    c = collapse(loss, T, lr)
    assert c["within_T"] == pytest.approx(0.0, abs=1e-12) and c["groups_T"] == 2
    assert c["r2_log_T"] == pytest.approx(1.0)
    # T groups: {6.25e-4}, {1.25e-3: 2 cells}, {2.5e-3: 2 cells}, {1.25e-3...}: exact means
    groups = {}
    for t, v in zip(T.ravel(), loss.ravel(), strict=True):
        groups.setdefault(round(t, 12), []).append(v)
    assert c["across_T"] == pytest.approx(np.std([np.mean(g) for g in groups.values()]))
    assert c["within_lr"] == pytest.approx(np.log(2) / 2)  # two B at each lr: std = ln2/2
    by_lr = collapse(np.log(lr)[:, None] + 0 * T, T, lr)  # a function of lr only
    assert by_lr["within_lr"] == pytest.approx(0.0, abs=1e-12) and by_lr["within_T"] > 0.3
    with_nan = loss.copy()
    with_nan[0, 0] = np.nan
    assert collapse(with_nan, T, lr)["cells"] == 5


def test_paired_difference():
    d = paired_difference([1.0, 2.0, 3.0, np.nan], [1.5, 2.5, 3.25, 9.0])
    assert d["n"] == 3 and d["mean"] == pytest.approx(5 / 12)
    sd = np.std([0.5, 0.5, 0.25], ddof=1)
    assert d["se"] == pytest.approx(sd / math.sqrt(3)) and d["t"] == pytest.approx(
        d["mean"] / d["se"])


# -- the BN mismatch: across B at fixed T, train mode against train mode ---------------------
LRS, BS = np.array([0.025, 0.05, 0.1, 0.2]), np.array([25, 50, 100])  # the default grid


def bn_dataset(first, final, stage1_last=(0.1, 0.3), stage1_eval=(0.01, 0.03)):
    """A fig5.nc-like dataset on the default (lr, B) grid with two seeds; `first` and `final`
    map (T, B, seed) to a loss."""
    import xarray as xr

    T = LRS[:, None] / BS[None, :]
    grid = np.stack([T] * 2, axis=-1), np.broadcast_to(BS[None, :, None], (4, 3, 2)), \
        np.broadcast_to(np.array([0, 1])[None, None, :], (4, 3, 2))
    dims = ("lr", "batch_size", "seed")
    return xr.Dataset(
        {"first_train_loss": (dims, first(*grid)), "final_train_loss": (dims, final(*grid)),
         "stage1_last_train_loss": ("seed", list(stage1_last), {"batch_size": 400}),
         "stage1_train_loss": ("seed", list(stage1_eval)),
         "stage1_test_loss": ("seed", [0.5, 0.7]),
         "final_test_loss": (dims, final(*grid))},
        coords={"lr": LRS, "batch_size": BS, "seed": [0, 1],
                "temperature": (("lr", "batch_size"), T)})


def bn_first(t, b, s):
    # T-driven (the SGD noise) plus a BN term that falls with B, plus a per-seed offset
    return 1000 * t + 5 / b + 0.2 * s


def test_bn_mismatch_compares_batch_sizes_at_fixed_temperature():
    ds = bn_dataset(bn_first, lambda t, b, s: 500 * t + 0 * s)
    # what the old summary did: average over all lrs at each B, so B = 25 gets T up to 8e-3 and
    # B = 100 only up to 2e-3: a 3.7-fold "BN effect", most of it temperature
    old = ds["first_train_loss"].mean(("lr", "seed")).values
    assert old == pytest.approx([3.75 + 0.2 + 0.1, 1.875 + 0.1 + 0.1, 0.9375 + 0.05 + 0.1])
    bn = bn_mismatch(ds)
    first = bn["first_epoch_train_loss"]
    # T = 1e-3 and 2e-3 at all three B, 5e-4 at B = 50, 100 and 4e-3 at B = 25, 50; the T run at
    # one B only (2.5e-4, 8e-3) are not compared
    assert {t: sorted(v) for t, v in first.items()} == {
        "5e-04": [50, 100], "1e-03": [25, 50, 100], "2e-03": [25, 50, 100], "4e-03": [25, 50]}
    # the same T at every B: only the 5/B BN term differs (a 1.13-fold effect at T = 1e-3)
    assert first["1e-03"] == pytest.approx({25: 1.3, 50: 1.2, 100: 1.15}, rel=1e-12)
    assert first["2e-03"] == pytest.approx({25: 2.3, 50: 2.2, 100: 2.15}, rel=1e-12)
    assert first["5e-04"] == pytest.approx({50: 0.7, 100: 0.65}, rel=1e-12)
    assert first["4e-03"] == pytest.approx({25: 4.3, 50: 4.2}, rel=1e-12)
    # train mode against train mode: the jump from stage 1's last epoch (0.1 and 0.3 per seed,
    # paired), not from the eval-mode stage-1 loss (0.01 and 0.03)
    assert bn["first_epoch_minus_stage1"]["1e-03"] == pytest.approx(
        {25: 1.1, 50: 1.0, 100: 0.95}, rel=1e-12)
    assert bn["final_train_loss"]["2e-03"] == pytest.approx({25: 1.0, 50: 1.0, 100: 1.0},
                                                            rel=1e-12)
    assert bn["stage1_last_epoch_train_loss"] == pytest.approx(0.2)
    assert bn["stage1_batch_size"] == 400
    numbers = summary(ds)
    assert numbers["bn_mismatch_at_fixed_T"] == bn
    assert numbers["stage1_eval_train_loss"] == pytest.approx(0.02)
    assert "bn_first_epoch_train_loss" not in numbers and "stage1_train_loss" not in numbers
    assert json.loads(json.dumps(numbers))["bn_mismatch_at_fixed_T"]["first_epoch_train_loss"][
        "1e-03"]["25"] == pytest.approx(1.3)


def test_bn_mismatch_without_a_bn_effect_is_flat_in_B_where_the_old_average_was_not():
    ds = bn_dataset(lambda t, b, s: 1000 * t + 0 * s, lambda t, b, s: 0 * t)
    assert ds["first_train_loss"].mean(("lr", "seed")).values == pytest.approx(
        [3.75, 1.875, 0.9375])  # the old key: a 4-fold fall with B from temperature alone
    first = bn_mismatch(ds)["first_epoch_train_loss"]
    for t, by_b in first.items():
        assert by_b == pytest.approx(dict.fromkeys(by_b, float(t) * 1000), rel=1e-12), t


def test_shared_temperatures_skip_missing_cells():
    T = LRS[:, None] / BS[None, :]
    ok = np.ones(T.shape, bool)
    assert [(round(t, 12), cells) for t, cells in shared_temperatures(T, ok)] == [
        (5e-4, [(0, 1), (1, 2)]), (1e-3, [(0, 0), (1, 1), (2, 2)]),
        (2e-3, [(1, 0), (2, 1), (3, 2)]), (4e-3, [(2, 0), (3, 1)])]
    ok[1, 0] = ok[2, 1] = False  # T = 2e-3 left at B = 100 only: nothing to compare it with
    assert [round(t, 12) for t, _ in shared_temperatures(T, ok)] == [5e-4, 1e-3, 4e-3]
    ds = bn_dataset(bn_first, lambda t, b, s: t)
    ds["first_train_loss"][1, 0, :] = np.nan
    ds["first_train_loss"][2, 1, :] = np.nan
    assert sorted(bn_mismatch(ds)["first_epoch_train_loss"]) == ["1e-03", "4e-03", "5e-04"]


def test_gather_takes_the_train_mode_losses_from_the_histories():
    c = fig5_config(experiments=["temperature"])
    records = {}
    for path in fig5.record_files(c):
        parts = dict(p.split("~") for p in path.split("/") if "~" in p)
        if "/stage1/" in path:
            seed = int(parts["seed"])
            records[path] = {"status": "ok", "train_loss": 0.01, "test_loss": 0.5,
                             "train_acc": 1.0, "test_acc": 0.8,
                             "history": {"loss": [0.9, 0.5, 0.2 + seed]}}
        else:
            lr, b = float(parts["lr"]), int(parts["B"])
            records[path] = {"status": "ok", "final_train_loss": lr, "final_eval_train_loss": lr,
                             "final_test_loss": lr,
                             "history": {"loss": [1000 * lr / b, 0.0, 0.0],
                                         "eval_train_loss": [0.0, 0.0, 0.0]}}
    ds = build_dataset(c, records)
    assert list(ds["stage1_last_train_loss"].values) == [0.2, 1.2]
    assert ds["stage1_last_train_loss"].attrs["batch_size"] == 64
    assert list(ds["stage1_train_loss"].values) == [0.01, 0.01]  # eval mode: unchanged
    bn = summary(ds)["bn_mismatch_at_fixed_T"]
    # lrs 0.01, 0.02, 0.04 at B = 16, 32: T = 6.25e-4 and 1.25e-3 at both B
    first = bn["first_epoch_train_loss"]
    assert sorted(first) == ["1.25e-03", "6.25e-04"]
    assert first["6.25e-04"] == pytest.approx({16: 0.625, 32: 0.625}, rel=1e-12)
    assert first["1.25e-03"] == pytest.approx({16: 1.25, 32: 1.25}, rel=1e-12)
    assert bn["first_epoch_minus_stage1"]["6.25e-04"] == pytest.approx(
        {16: 0.625 - 0.7, 32: 0.625 - 0.7}, rel=1e-12)
    assert bn["stage1_batch_size"] == 64


def test_bn_figure_draws_the_fixed_temperature_comparison(tmp_path):
    from shiftcurv.plots import fig5 as fig5_plots
    from shiftcurv.plots.sweep import _setup

    ds = bn_dataset(bn_first, lambda t, b, s: 500 * t + 0 * s)
    plt, _ = _setup()
    fig, ax = plt.subplots()
    fig5_plots.bn_panel(ax, ds, lambda n: [f"C{k}" for k in range(n)])
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert [k for k in lines if not k.startswith("_")] == [
        "T=5e-04", "T=1e-03", "T=2e-03", "T=4e-03", "stage 1, last epoch (B=400)"]
    first = lines["T=1e-03"]  # first stage-2 epoch, at the same T for every B
    assert list(first.get_xdata()) == [25, 50, 100]
    assert list(first.get_ydata()) == pytest.approx([1.3, 1.2, 1.15])
    assert list(lines["_T=4e-03, last epochs"].get_ydata()) == pytest.approx([2.0, 2.0])
    assert lines["stage 1, last epoch (B=400)"].get_ydata()[0] == pytest.approx(0.2)
    assert "fixed T" in ax.get_xlabel() and "train-mode" in ax.get_ylabel()
    assert "fixed T" in ax.get_title() and "train-mode BN throughout" in ax.get_title()
    plt.close(fig)
    fig5_plots.fig5_bn(ds.assign(final_eval_train_loss=ds["final_train_loss"] * 0.5),
                       tmp_path / "bn.png")
    assert (tmp_path / "bn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
