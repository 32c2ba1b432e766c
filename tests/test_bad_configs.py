"""Bad configs are rejected before any job starts, one line per problem naming the key; config
values never reach a shell unquoted, and shell metacharacters are rejected outright."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import no_slurm_probe_dir

from shiftcurv import ShiftcurvError
from shiftcurv.config import normalise_numbers, validate
from shiftcurv.config.checks import semantic_problems

REPO = Path(__file__).resolve().parents[1]


BASE = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
DELETE = object()
PWNED = "touch PWNED"

# (id, {"a/b/c": value or DELETE}, the key the message must name)
BAD = [
    ("no-temperatures", {"temperatures": DELETE}, "temperatures"),
    ("empty-temperatures", {"temperatures": []}, "temperatures"),
    ("negative-temperature", {"temperatures": [1e-3, -2e-3]}, "temperatures"),
    ("zero-temperature", {"temperatures": [0]}, "temperatures"),
    ("text-temperature", {"temperatures": ["hot"]}, "temperatures"),
    ("infinite-temperature", {"temperatures": [float("inf")]}, "temperatures"),
    ("same-temperature-twice", {"temperatures": ["1e-3", 0.001]}, "temperatures"),
    ("seeds-not-a-list", {"seeds": "zero"}, "seeds"),
    ("negative-seed", {"seeds": [-1]}, "seeds"),
    ("duplicate-seeds", {"seeds": [0, 0]}, "seeds"),
    ("fractional-seed", {"seeds": [1.5]}, "seeds"),
    ("zero-batch-size", {"batch_sizes": [0]}, "batch_sizes"),
    ("batch-larger-than-train-set", {"batch_sizes": [1000]}, "batch_sizes"),
    ("duplicate-batch-sizes", {"batch_sizes": [32, 32]}, "batch_sizes"),
    ("no-archs", {"archs": {}}, "archs"),
    ("unknown-arch", {"archs/mlp/type": "transformer"}, "archs.mlp.type"),
    ("arch-without-type", {"archs/mlp/type": DELETE}, "archs.mlp"),
    ("zero-width", {"archs/mlp/widths": [0]}, "archs.mlp.widths"),
    ("unknown-arch-option", {"archs/mlp/depth": 3}, "archs.mlp.depth"),
    ("duplicate-arch", {"archs/mlp2": {"type": "mlp", "widths": [16]}}, "archs.mlp2"),
    ("shell-in-arch-name", {"archs": {f"a; {PWNED}": {"type": "mlp"}}}, "archs"),
    ("shell-in-arch-type", {"archs/mlp/type": f"mlp$({PWNED})"}, "archs.mlp.type"),
    ("unknown-dataset", {"datasets": {"cifar99": {}}}, "datasets.cifar99"),
    ("shell-in-dataset-type", {"datasets/gaussian-teacher/type": f"gaussian-teacher; {PWNED}"},
     "datasets.gaussian-teacher.type"),
    ("negative-train-size", {"datasets/gaussian-teacher/n_train": -5},
     "datasets.gaussian-teacher.n_train"),
    ("one-class", {"datasets/gaussian-teacher/n_classes": 1},
     "datasets.gaussian-teacher.n_classes"),
    ("misspelt-dataset-option", {"datasets/gaussian-teacher/n_tarin": 256},
     "datasets.gaussian-teacher.n_tarin"),
    ("fractional-test-size", {"datasets/gaussian-teacher/n_test": 12.5},
     "datasets.gaussian-teacher.n_test"),
    ("train-split-above-1", {"datasets/mnist1d": {"train_split": 1.5}},
     "datasets.mnist1d.train_split"),
    ("duplicate-dataset", {"datasets/teacher2": {"type": "gaussian-teacher", "n_train": 256,
                                                 "n_test": 128}}, "datasets.teacher2"),
    ("zero-max-epochs", {"train/max_epochs": 0}, "train.max_epochs"),
    ("negative-epochs-ref", {"train/epochs_ref": -1}, "train.epochs_ref"),
    ("zero-temperature-ref", {"train/temperature_ref": 0}, "train.temperature_ref"),
    ("negative-checkpoint-every", {"train/checkpoint_every": -1}, "train.checkpoint_every"),
    ("checkpoint-never-reached", {"train/checkpoint_every": 50}, "train.checkpoint_every"),
    ("unknown-device", {"train/device": "tpu"}, "train.device"),
    ("unknown-train-key", {"train/lr": 0.1}, "lr"),
    ("unknown-minimize-method", {"minimize/method": "newton"}, "minimize.method"),
    ("step-ratio-above-1", {"minimize/step_ratio": 2}, "minimize.step_ratio"),
    ("integrator-order-3", {"minimize/order": 3}, "minimize.order"),
    ("negative-flow-time", {"minimize/tau_max": -1.0}, "minimize.tau_max"),
    ("flow-time-split-missing", {"minimize/tau_max": {"train": 5.0}}, "minimize.tau_max"),
    ("flow-time-unknown-split", {"minimize/tau_max": {"train": 5.0, "test": 1.0, "val": 1.0}},
     "minimize.tau_max"),
    ("fit-window-beyond-margin", {"measure/fit_window": 1.5}, "measure.fit_window"),
    ("zero-fit-window", {"measure/fit_window": 0}, "measure.fit_window"),
    ("one-point-per-unit", {"measure/points_per_unit": 1}, "measure.points_per_unit"),
    ("unknown-measure", {"measure/hessian/measures": ["sharpness"]}, "measure.hessian.measures"),
    ("unknown-point", {"measure/hessian/points": ["middle"]}, "measure.hessian.points"),
    ("unknown-measure-option", {"measure/hessian/options": {"trace_probes": 10}},
     "measure.hessian.options.trace_probes"),
    ("shell-in-option-value", {"measure/hessian/options": {"trace_method": f"x'; {PWNED}; '"}},
     "measure.hessian.options.trace_method"),
    ("zero-threads", {"resources/threads": 0}, "resources.threads"),
    ("misspelt-top-level-key", {"temperature": [1e-3]}, "temperature"),
]


def patched(changes: dict) -> dict:
    config = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("/")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
    return config


def test_at_least_twenty_distinct_bad_configs():
    assert len({name for name, _, _ in BAD}) == len(BAD) >= 20
    assert len({yaml.safe_dump(patched(c)) for _, c, _ in BAD}) == len(BAD)


def test_the_shipped_configs_are_valid():
    for path in (REPO / "configs/tiny.yaml", REPO / "config.yaml"):
        validate(normalise_numbers(yaml.safe_load(path.read_text())))


@pytest.mark.parametrize("changes,key", [(c, k) for _, c, k in BAD], ids=[n for n, _, _ in BAD])
def test_rejected_by_the_cli_naming_the_key(changes, key):
    """What `shiftcurv gather/status --config` run: schema with defaults, then semantics."""
    with pytest.raises(ShiftcurvError) as e:
        validate(normalise_numbers(patched(changes)))
    lines = str(e.value).splitlines()
    assert lines[0] == "invalid config:"
    assert any(key in line for line in lines[1:]), str(e.value)
    assert all(re.match(r"  (\(top level\)|\S+): ", line) for line in lines[1:]), str(e.value)


@pytest.mark.parametrize("changes,key", [(c, k) for _, c, k in BAD], ids=[n for n, _, _ in BAD])
def test_rejected_at_workflow_parse_time(changes, key):
    """The two checks workflow/rules/common.smk runs when Snakemake parses the workflow:
    snakemake.utils.validate with the schema, then shiftcurv.config.checks.semantic_problems."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate as snakemake_validate

    config = normalise_numbers(patched(changes))
    try:
        snakemake_validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    except WorkflowError as e:
        text = str(e)
    else:
        text = "\n".join(semantic_problems(config))
    assert text, "accepted"
    assert key.split(".")[-1] in text, text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shell-in-arch-name", "shell-in-option-value",
                                  "shell-in-arch-type", "checkpoint-never-reached"])
def test_real_snakemake_refuses_to_start(tmp_path, name):
    """A real (not dry) run: it stops at parse time, before any job, and nothing is executed."""
    changes, key = next((c, k) for n, c, k in BAD if n == name)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(patched(changes)))
    env = dict(os.environ, PATH=f"{no_slurm_probe_dir()}:{Path(sys.executable).parent}:"
                                f"{os.environ['PATH']}")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--profile", str(REPO / "profiles/local"), "--cores", "1",
         "--configfile", str(tmp_path / "config.yaml")],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and key.split(".")[-1] in text, text
    assert not (tmp_path / "results").exists() and not (tmp_path / "PWNED").exists()
    assert not (Path.home() / "PWNED").exists()


def test_config_values_reach_the_shell_only_quoted():
    """Every `{params.*}` in a rule's shell command is quoted (`:q`); wildcards (names,
    temperatures, sizes) are restricted to safe characters by wildcard_constraints."""
    rules = REPO / "workflow/rules"
    for smk in rules.glob("*.smk"):
        text = smk.read_text()
        assert not re.findall(r"\{params\.\w+\}", text), smk.name  # unquoted
        assert "{wildcards." not in text, smk.name
    common = (rules / "common.smk").read_text()
    for name in ("dataset", "arch", "T", "B", "seed"):
        m = re.search(rf"^\s*{name}=r\"([^\"]+)\"", common, re.M)
        assert m and not re.search(r"[;&|`$<>\\'\" ]", m.group(1).replace("\\.", "")), name
