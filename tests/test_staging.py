"""Staged steps (commands._staging): a pack runs a cell's later step and the cell's own job takes
the result over only when it was made from the very same command line and input contents."""

from __future__ import annotations

import json

import pytest

from shiftcurv.cli import main
from shiftcurv.commands import _staging as staging
from shiftcurv.commands._staging import run_steps
from shiftcurv.train.signals import EXIT_INTERRUPTED, StopRequest

MINIMIZE = {"arch": {"type": "mlp", "widths": [6]}, "split": "train", "l2": 1e-5,
            "method": "flow", "tau_max": 2.0, "gtol": 1e-4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, teacher_file):
    """A cell's SGD solution (a few epochs on the tiny teacher set)."""
    d = tmp_path_factory.mktemp("cell")
    settings = {"arch": MINIMIZE["arch"], "temperature": 1e-3, "batch_size": 32, "seed": 0,
                "epochs_ref": 3, "temperature_ref": 1e-3, "max_epochs": 3}
    assert main(["train", "--data", str(teacher_file), "--settings", json.dumps(settings),
                 "--out-weights", str(d / "theta_sgd.safetensors"),
                 "--out-record", str(d / "train.json")]) == 0
    return d


def minimize_argv(data, d, out, **settings):
    return ["minimize", "--data", str(data), "--init", str(d / "theta_sgd.safetensors"),
            "--init-record", str(d / "train.json"),
            "--settings", json.dumps({**MINIMIZE, **settings}),
            "--out-weights", str(out / "theta_train.safetensors"),
            "--out-record", str(out / "min_train.json")]


def test_staged_names():
    assert staging.staged("a/b/theta_sgd.safetensors") == "a/b/theta_sgd.packed.safetensors"
    assert staging.staged("measure.json") == "measure.packed.json"
    assert str(staging.key_file(["a/min_train.json"])) == "a/min_train.packed.key"


def test_a_job_adopts_only_the_result_of_its_own_command_line(tmp_path, trained, teacher_file,
                                                              capsys):
    out = tmp_path
    argv = minimize_argv(teacher_file, trained, out)
    assert staging.run_staged(argv, print) == 0
    staged = [out / "theta_train.packed.safetensors", out / "min_train.packed.json"]
    assert all(p.exists() for p in staged) and not (out / "min_train.json").exists()
    assert staging.run_staged(argv, print) is None  # staged with this key: nothing to do

    # other settings (a different gtol), or other threads: only the settings count
    assert main([*minimize_argv(teacher_file, trained, out, gtol=1e-3), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "not adopting the staged theta_train.packed.safetensors: made from other" in err
    assert not any(p.exists() for p in staged)  # the job computed its own, set the stale aside
    assert json.loads((out / "min_train.json").read_text())["settings"]["gtol"] == 1e-3

    for p in (out / "min_train.json", out / "theta_train.safetensors"):
        p.unlink()
    assert staging.run_staged(argv, print) == 0
    reference = json.loads(staged[1].read_text())
    assert main([*argv, "--threads", "2"]) == 0  # --threads is not part of the key
    assert "adopted the pack's theta_train.packed.safetensors" in capsys.readouterr().err
    assert not staging.key_file([str(out / "theta_train.safetensors")]).exists()
    assert json.loads((out / "min_train.json").read_text()) == reference
    assert staging.run_staged(argv, print) is None  # its outputs are there: nothing to do


def test_changed_input_content_is_not_adopted(tmp_path, trained, teacher_file, capsys):
    cell = tmp_path / "cell"
    cell.mkdir()
    for name in ("theta_sgd.safetensors", "train.json"):
        (cell / name).write_bytes((trained / name).read_bytes())
    argv = minimize_argv(teacher_file, cell, cell)
    assert staging.run_staged(argv, print) == 0
    record = json.loads((cell / "train.json").read_text())
    record["note"] = "edited after the pack ran"
    (cell / "train.json").write_text(json.dumps(record))
    assert main(argv) == 0
    assert "made from other settings or inputs; computing here" in capsys.readouterr().err


def test_a_failing_step_is_left_to_its_job_and_its_pack_mates_go_on(tmp_path, trained,
                                                                    teacher_file, capsys):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    cells = [{"steps": [{"name": "min_train", "argv": minimize_argv(
                 teacher_file, trained, bad, split="validation")},
                        {"name": "min_test", "argv": minimize_argv(teacher_file, trained, bad)}]},
             {"steps": [{"name": "min_train", "argv": minimize_argv(teacher_file, trained,
                                                                     good)}]}]
    done, rc = run_steps(cells, StopRequest())
    assert rc == 0 and done[0] == {"min_train": {"rc": 2, "seconds": done[0]["min_train"][
        "seconds"]}}  # its next step (needing this one) is left to the cell's jobs too
    assert done[1]["min_train"]["rc"] == 0 and (good / "min_train.packed.json").exists()
    assert not list(bad.iterdir())  # nothing staged for the failed step
    err = capsys.readouterr().err
    assert "error: split must be train or test" in err and "(its own job will run it)" in err


def test_a_stop_signal_stops_between_steps(tmp_path, trained, teacher_file):
    stop = StopRequest()
    stop.signal = "SIGTERM"
    cells = [{"steps": [{"name": "min_train", "argv": minimize_argv(teacher_file, trained,
                                                                     tmp_path)}]}]
    assert run_steps(cells, stop) == ({}, EXIT_INTERRUPTED)
    assert not list(tmp_path.iterdir())


def test_bad_steps_are_refused_in_one_line(tmp_path, capsys):
    assert main(["run-steps", "--steps", "[]"]) == 2
    assert main(["run-steps", "--steps", '[{"name": "x", "argv": []}]']) == 2
    assert main(["run-steps", "--steps", f"@{tmp_path / 'missing.json'}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["shiftcurv run-steps: error: --steps must not be empty",
                   "shiftcurv run-steps: error: --steps must be a list of {name, argv}, argv a "
                   "non-empty list of strings",
                   f"shiftcurv run-steps: error: --steps file not found: {tmp_path}/missing.json"]
