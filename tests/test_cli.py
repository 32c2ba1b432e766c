"""Every CLI step round-trips on the tiny dataset; bad arguments give one-line errors."""

import json
import math

import numpy as np
import pytest

from shiftcurv.cli import main

ARCH = {"type": "mlp", "widths": [8]}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_cell(d, arch, minimize=None):
    """A whole cell run step by step through the CLI, in directory d."""
    assert main(["prepare-data", "--settings",
                 json.dumps({"name": "gaussian-teacher", "options": {"n_train": 256}}),
                 "--out", str(d / "data.npz")]) == 0
    train = {"arch": arch, "temperature": 2e-3, "batch_size": 32, "seed": 0, "epochs_ref": 8,
             "temperature_ref": 2e-3, "max_epochs": 8, "checkpoint_every": 3}
    assert main(["train", "--data", str(d / "data.npz"), "--settings", json.dumps(train),
                 "--out-weights", str(d / "sgd.safetensors"),
                 "--out-record", str(d / "train.json")]) == 0
    for split in ("train", "test"):
        mn = {"arch": arch, "split": split, "l2": 1e-5, "tau_max": 20.0, "gtol": 1e-5,
              **(minimize or {})}
        assert main(["minimize", "--data", str(d / "data.npz"),
                     "--init", str(d / "sgd.safetensors"),
                     "--init-record", str(d / "train.json"), "--settings", json.dumps(mn),
                     "--out-weights", str(d / f"theta_{split}.safetensors"),
                     "--out-record", str(d / f"min_{split}.json")]) == 0
    assert main(["measure", "--data", str(d / "data.npz"),
                 "--theta-train", str(d / "theta_train.safetensors"),
                 "--theta-test", str(d / "theta_test.safetensors"),
                 "--train-record", str(d / "train.json"),
                 "--min-records", str(d / "min_train.json"), str(d / "min_test.json"),
                 "--settings", json.dumps({"arch": arch, "points_per_unit": 10}),
                 "--out", str(d / "measure.json")]) == 0
    return d


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    return run_cell(tmp_path_factory.mktemp("cell"), ARCH)


def test_train_record(cell):
    rec = json.loads((cell / "train.json").read_text())
    assert rec["status"] == "ok" and rec["epochs"] == 8 and rec["steps"] == 8 * (256 // 32)
    assert rec["lr"] == pytest.approx(0.064) and len(rec["history"]["loss"]) == 8
    assert rec["provenance"]["shiftcurv_version"]
    assert not (cell / "sgd.safetensors.ckpt").exists()  # superseded by the final weights


def test_minimize_records(cell):
    for split in ("train", "test"):
        rec = json.loads((cell / f"min_{split}.json").read_text())
        assert rec["status"] == "ok" and rec["method"] == "flow"
        assert rec["stop_reason"] in ("tau", "gtol") and rec["grad_norm"] >= 0
        assert rec["tau"] > 0 and rec["grad_evals"] >= rec["steps"]


def test_measure_record(cell):
    rec = json.loads((cell / "measure.json").read_text())
    sc = rec["scalars"]
    assert rec["status"] == "ok"
    for key in ("c_train", "c_test", "shift_curvature", "c_train_hvp", "c_test_hvp"):
        assert math.isfinite(sc[key]), key
    assert sc["c_train"] > 0 and sc["c_test"] > 0
    assert sc["shift_curvature"] == pytest.approx(sc["c_test"] * sc["shift_norm"] ** 2)
    assert len(rec["u"]) == len(rec["profiles"]["test_loss_line"]) == 31
    # θ_tr is a train minimum, θ_test a test minimum, along the line
    prof = rec["profiles"]
    i0, i1 = rec["u"].index(0.0), rec["u"].index(1.0)
    assert prof["train_loss_line"][i0] < prof["train_loss_line"][i1]
    assert prof["test_loss_line"][i1] < prof["test_loss_line"][i0]
    assert sc["test_loss_at_train_min"] == prof["test_loss_line"][i0]
    assert sc["train_loss_at_test_min"] == prof["train_loss_line"][i1]


def _objective(cell, split, weights):
    from shiftcurv import data, models
    from shiftcurv.io import load_state
    from shiftcurv.landscape.objective import Objective

    ds = data.load(cell / "data.npz")
    model = models.build(ARCH, ds.in_shape, ds.n_classes).double()
    model.load_state_dict(load_state(cell / weights)[0])  # float64, as the flow wrote them
    x, y = ds.tensors(split)
    obj = Objective(model, x, y)
    return obj, obj.theta_of()


def test_measure_first_order_terms_are_exact_gradients(cell):
    """g_testᵀs and g_trᵀs from an independent gradient; the first-order predictions follow
    their formulas (Eq. 3 with the first-order term, shiftcurv.landscape.line)."""
    sc = json.loads((cell / "measure.json").read_text())["scalars"]
    test_obj, theta_test = _objective(cell, "test", "theta_test.safetensors")
    train_obj, theta_tr = _objective(cell, "train", "theta_train.safetensors")
    s = theta_test - theta_tr
    g_test = test_obj.value_and_grad(theta_test)[1]
    g_tr = train_obj.value_and_grad(theta_tr)[1]
    assert sc["first_order_test"] == pytest.approx(float(g_test @ s), rel=1e-9, abs=1e-12)
    assert sc["first_order_train"] == pytest.approx(float(g_tr @ s), rel=1e-9, abs=1e-12)
    n2 = sc["shift_norm"] ** 2
    assert sc["taylor_prediction_first_order"] == pytest.approx(
        sc["U_test_min"] - sc["first_order_test"] + 0.5 * sc["c_test_first_order"] * n2)
    assert sc["train_taylor_prediction_first_order"] == pytest.approx(
        sc["U_tr_min"] + sc["first_order_train"] + 0.5 * sc["c_train_first_order"] * n2)
    assert sc["fit_window"] == 1.0 and sc["c_test_fit_points"] == 11


def test_a_minimum_stopped_by_its_step_cap_is_measured_but_unconverged(tmp_path):
    """max_steps ends the flow before τ_max: status "unconverged" from minimize on, measures
    kept, and sweep.nc / the figures keep it apart from ok cells."""
    from shiftcurv.plots.sweep import status_counts
    from shiftcurv.results.gather import build_dataset
    from shiftcurv.sweep import Cell

    d = run_cell(tmp_path, ARCH, {"max_steps": 2})
    for split in ("train", "test"):
        rec = json.loads((d / f"min_{split}.json").read_text())
        assert rec["stop_reason"] == "max_steps" and rec["status"] == "unconverged"
        assert rec["tau"] < rec["tau_max"] == 20.0
    rec = json.loads((d / "measure.json").read_text())
    assert rec["status"] == "unconverged" and math.isfinite(rec["scalars"]["c_test"])
    config = {"datasets": {"g": {}}, "archs": {"m": {}}, "batch_sizes": [32], "seeds": [0, 1],
              "train": {"epochs_ref": 8, "temperature_ref": 2e-3}}
    ok = json.loads((d / "measure.json").read_text()) | {"status": "ok"}
    ds = build_dataset(config, {Cell("g", "m", "2e-03", 32, 0): rec,
                                Cell("g", "m", "2e-03", 32, 1): ok})
    assert list(ds["status"].values.ravel()) == ["unconverged", "ok"]
    assert list(ds["stop_reason_test_min"].values.ravel()) == ["max_steps", "max_steps"]
    assert np.isfinite(ds["test_loss_line"].values).all()  # kept, for inspection
    assert ds.attrs["cells_unconverged"] == 1
    assert status_counts(ds) == "1 of 2 cells ok; 1 unconverged masked"


def test_batch_norm_keeps_the_sgd_statistics(tmp_path):
    """The pipeline does not recompute BN statistics (docs/measures.md): θ_tr and θ_test carry
    θ_SGD's running statistics bit for bit, and the measured losses along the line are plain
    eval-mode losses with those statistics."""
    import torch
    import torch.nn.functional as F

    from shiftcurv import data, models
    from shiftcurv.io import load_state

    arch = {"type": "mlp", "widths": [8], "batch_norm": True}
    d = run_cell(tmp_path, arch, {"tau_max": 2.0})
    sgd = load_state(d / "sgd.safetensors")[0]
    stats = [k for k in sgd if "running_" in k]
    assert stats and any(float(sgd[k].abs().sum()) > 0 for k in stats)
    states = {split: load_state(d / f"theta_{split}.safetensors")[0]
              for split in ("train", "test")}
    for st in states.values():
        for k in stats:
            assert torch.equal(st[k], sgd[k]), k
    rec = json.loads((d / "measure.json").read_text())
    assert rec["status"] == "ok"
    ds = data.load(d / "data.npz")
    model = models.build(arch, ds.in_shape, ds.n_classes).double().eval()
    model.load_state_dict({k: v.double() if v.is_floating_point() else v
                           for k, v in states["train"].items()})
    x, y = ds.tensors("test")
    with torch.no_grad():
        u_test_at_tr = float(F.cross_entropy(model(x.double()), y))
    assert rec["scalars"]["test_loss_at_train_min"] == pytest.approx(u_test_at_tr, rel=1e-12)


def test_info_prints_parameter_counts(capsys):
    code, out, _ = run(capsys, "info", "--arch", json.dumps({"type": "mlp", "widths": [100, 100]}))
    assert code == 0 and "15,210 parameters" in out


@pytest.mark.parametrize("argv,needle", [
    (["prepare-data", "--settings", '{"name": "nope"}', "--out", "x.npz"], "unknown dataset"),
    (["prepare-data", "--settings", "{not json", "--out", "x.npz"], "not valid JSON"),
    (["train", "--data", "missing.npz", "--settings", '{"arch": {}, "temperature": 1, '
      '"batch_size": 1, "seed": 0}', "--out-weights", "w", "--out-record", "r"],
     "dataset file not found: missing.npz"),
    (["train", "--data", "DATA", "--settings", '{"arch": {"type": "mlp"}, "temperature": -1, '
      '"batch_size": 8, "seed": 0}', "--out-weights", "w", "--out-record", "r"],
     "temperature must be > 0"),
    (["train", "--data", "DATA", "--settings", '{"arch": {"type": "mlp"}, "temperature": 1e-3, '
      '"batch_size": 100000, "seed": 0}', "--out-weights", "w", "--out-record", "r"],
     "exceeds the 256 training samples"),
    (["train", "--data", "DATA", "--settings", '{"temperature": 1e-3}',
      "--out-weights", "w", "--out-record", "r"], "lacks arch"),
    (["gather", "--config", "nope.yaml"], "config file not found: nope.yaml"),
    (["plot", "--sweep", "nope.nc"], "gathered dataset not found: nope.nc"),
])
def test_bad_arguments_give_one_line_errors(capsys, tmp_path, teacher_file, argv, needle):
    argv = [str(teacher_file) if a == "DATA" else a for a in argv]
    argv = [str(tmp_path / a) if a in ("x.npz", "w", "r") else a for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err


def test_flow_and_paper_methods_reach_one_endpoint_from_one_config(cell, tmp_path):
    """With tau_max left to the paper settings (lr·⌈N/B⌉·max_epochs = 5e-4·1·2000 = 1 on each
    split), `method: flow` and `method: paper` end within 1 % of ‖s‖ of each other."""
    from pathlib import Path

    import torch
    import yaml

    from shiftcurv import sweep as sw
    from shiftcurv.config import normalise_numbers, validate
    from shiftcurv.io import load_state

    config = yaml.safe_load((Path(__file__).parents[1] / "configs/tiny.yaml").read_text())
    config["archs"] = {"mlp": ARCH}
    config["minimize"] = {"lr": 5e-4, "max_epochs": 2000, "gtol": 0.0}  # GD's O(lr) error small
    config = validate(normalise_numbers(config))
    c = sw.cells(config)[0]
    ends = {}
    for method in ("flow", "paper"):
        config["minimize"]["method"] = method
        for split in ("train", "test"):
            settings = sw.minimize_settings(config, c, split)
            assert settings["tau_max"] == pytest.approx(1.0)
            out = tmp_path / f"{method}_{split}"
            assert main(["minimize", "--data", str(cell / "data.npz"),
                         "--init", str(cell / "sgd.safetensors"),
                         "--init-record", str(cell / "train.json"),
                         "--settings", sw.as_json(settings),
                         "--out-weights", f"{out}.safetensors",
                         "--out-record", f"{out}.json"]) == 0
            rec = json.loads(Path(f"{out}.json").read_text())
            assert rec["status"] == "ok" and rec["tau"] == pytest.approx(1.0), rec
            state = load_state(f"{out}.safetensors")[0]
            ends[method, split] = torch.cat([v.double().ravel() for k, v in state.items()])
    shift = (ends["flow", "test"] - ends["flow", "train"]).norm()
    for split in ("train", "test"):
        gap = (ends["flow", split] - ends["paper", split]).norm()
        assert gap <= 0.01 * shift, (split, float(gap / shift))
