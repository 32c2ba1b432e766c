"""Every CLI step round-trips on the tiny dataset; bad arguments give one-line errors."""

import json
import math

import pytest

from shiftcurv.cli import main

ARCH = {"type": "mlp", "widths": [8]}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """A whole cell run step by step through the CLI."""
    d = tmp_path_factory.mktemp("cell")
    assert main(["prepare-data", "--settings",
                 json.dumps({"name": "gaussian-teacher", "options": {"n_train": 256}}),
                 "--out", str(d / "data.npz")]) == 0
    train = {"arch": ARCH, "temperature": 2e-3, "batch_size": 32, "seed": 0, "epochs_ref": 8,
             "temperature_ref": 2e-3, "max_epochs": 8, "checkpoint_every": 3}
    assert main(["train", "--data", str(d / "data.npz"), "--settings", json.dumps(train),
                 "--out-weights", str(d / "sgd.safetensors"),
                 "--out-record", str(d / "train.json")]) == 0
    for split in ("train", "test"):
        mn = {"arch": ARCH, "split": split, "l2": 1e-5, "tau_max": 20.0, "gtol": 1e-5}
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
                 "--settings", json.dumps({"arch": ARCH, "points_per_unit": 10}),
                 "--out", str(d / "measure.json")]) == 0
    return d


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
