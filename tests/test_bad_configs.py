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
    ("eq4-unknown-sampler", {"eq4/sampler": "metropolis"}, "eq4"),
    ("eq4-batches-more-than-samples", {"eq4/samples": 8, "eq4/batches": 10}, "eq4.batches"),
    ("eq4-min-batches-more-than-batches", {"eq4/min_batches": 30}, "eq4.min_batches"),
    ("eq4-seed-not-swept", {"eq4/seeds": [7]}, "eq4.seeds"),
    ("eq4-thin-past-max-epochs", {"eq4/thin": 100, "eq4/max_epochs": 50}, "eq4.max_epochs"),
    ("eq4-one-batch", {"eq4/batches": 1}, "eq4"),
    ("eq4-unknown-key", {"eq4/sampels": 10}, "eq4"),
    ("eq4-ladder-zero", {"eq4/ladder": [0, 2]}, "eq4.ladder"),
    ("eq4-ladder-huge", {"eq4/ladder": [1e4]}, "eq4.ladder"),
]

# issue 17: numbers torch / numpy / SLURM cannot take (seeds past 2**64, sizes whose tensors or
# ranges overflow, floats whose products leave the finite range) are refused at parse time too
FIG5 = {"dataset": "gaussian-teacher", "arch": "mlp"}
BIG = 1e308  # a valid JSON-schema number
BAD += [
    ("seed-2-to-the-70", {"seeds": [2**70]}, "seeds"),
    ("seed-2-to-the-64", {"seeds": [0, 2**64]}, "seeds"),
    ("batch-size-2-to-the-40", {"batch_sizes": [2**40]}, "batch_sizes"),
    ("tiny-temperature", {"temperatures": [1e-300]}, "temperatures"),
    ("huge-temperature", {"temperatures": [BIG]}, "temperatures"),
    ("width-2-to-the-40", {"archs/mlp/widths": [16, 2**40]}, "archs.mlp.widths"),
    ("channels-2-to-the-33", {"archs/cnn": {"type": "cnn1d", "channels": [2**33]}},
     "archs.cnn.channels"),
    ("huge-kernel", {"archs/cnn": {"type": "cnn1d", "kernel_size": 2**31}},
     "archs.cnn.kernel_size"),
    ("max-epochs-2-to-the-63", {"train/max_epochs": 2**63}, "train.max_epochs"),
    ("huge-epochs-ref", {"train/epochs_ref": BIG}, "train.epochs_ref"),
    ("tiny-temperature-ref", {"train/temperature_ref": 1e-300}, "train.temperature_ref"),
    ("huge-l2", {"train/l2": BIG}, "train.l2"),
    ("checkpoint-every-2-to-the-62", {"train/checkpoint_every": 2**62},
     "train.checkpoint_every"),
    ("minimize-max-steps-2-to-the-63", {"minimize/max_steps": 2**63}, "minimize.max_steps"),
    ("minimize-huge-chunk", {"minimize/chunk_size": 2**40}, "minimize.chunk_size"),
    ("minimize-huge-batch-per-arch", {"minimize/batch_size": {"mlp": 2**40}},
     "minimize.batch_size"),
    ("minimize-huge-lr", {"minimize/lr": BIG}, "minimize.lr"),
    ("minimize-huge-flow-time", {"minimize/tau_max": BIG}, "minimize.tau_max"),
    ("minimize-epochs-2-to-the-40", {"minimize/max_epochs": 2**40}, "minimize.max_epochs"),
    ("huge-points-per-unit", {"measure/points_per_unit": 10**9}, "measure.points_per_unit"),
    ("huge-margin", {"measure/margin": BIG}, "measure.margin"),
    ("line-grid-too-long", {"measure/points_per_unit": 10000, "measure/margin": 100},
     "measure.points_per_unit"),
    ("measure-huge-chunk", {"measure/chunk_size": 2**40}, "measure.chunk_size"),
    ("huge-trace-matvecs", {"measure/hessian/options": {"trace_matvecs": 10**12}},
     "measure.hessian.options.trace_matvecs"),
    ("zero-eps", {"measure/hessian/options": {"eps": [0.0]}}, "measure.hessian.options.eps"),
    ("dataset-seed-2-to-the-32", {"datasets/gaussian-teacher/seed": 2**32},
     "datasets.gaussian-teacher.seed"),
    ("dataset-train-size-10-to-the-12", {"datasets/gaussian-teacher/n_train": 10**12},
     "datasets.gaussian-teacher.n_train"),
    ("dataset-too-many-values", {"datasets/gaussian-teacher/n_train": 10**7,
                                 "datasets/gaussian-teacher/dim": 1000},
     "datasets.gaussian-teacher.dim"),
    ("huge-label-noise", {"datasets/gaussian-teacher/label_noise": BIG},
     "datasets.gaussian-teacher.label_noise"),
    ("cifar-more-images-than-it-has", {"datasets/cifar10": {"root": "cifar",
                                                            "train_samples": 60000}},
     "datasets.cifar10.train_samples"),
    ("threads-2-to-the-31", {"resources/threads": 2**31}, "resources.threads"),
    ("fig5-seed-2-to-the-64", {"fig5": FIG5 | {"seeds": [2**64]}}, "fig5.seeds"),
    ("fig5-checkpoint-every-2-to-the-40", {"fig5": FIG5 | {"checkpoint_every": 2**40}},
     "fig5.checkpoint_every"),
    ("fig5-runtime-2-to-the-40", {"fig5": FIG5 | {"runtime": {"stage1": 2**40}}},
     "fig5.runtime.stage1"),
    ("fig5-stage1-epochs-2-to-the-63", {"fig5": FIG5 | {"stage1": {"epochs": 2**63}}},
     "fig5.stage1.epochs"),
    ("fig5-stage1-milestone-past-the-end", {"fig5": FIG5 | {"stage1": {"lr_milestones": [1.5]}}},
     "fig5.stage1.lr_milestones"),
    ("fig5-stage2-batch-2-to-the-40", {"fig5": FIG5 | {"stage2": {"batch_sizes": [2**40]}}},
     "fig5.stage2.batch_sizes"),
    ("fig5-stage2-huge-lr", {"fig5": FIG5 | {"stage2": {"lrs": [BIG]}}}, "fig5.stage2.lrs"),
    ("fig5-shift-trials-10-to-the-9", {"fig5": FIG5 | {"shift": {"trials": 10**9}}},
     "fig5.shift.trials"),
    ("fig5-shift-sample-size-2-to-the-40",
     {"fig5": FIG5 | {"shift": {"sample_sizes": [2**40]}}}, "fig5.shift.sample_sizes"),
    ("fig5-shift-huge-weight-decay", {"fig5": FIG5 | {"shift": {"weight_decay": BIG}}},
     "fig5.shift.weight_decay"),
    ("synthetic-walkers-10-to-the-12", {"synthetic/simulation/walkers": 10**12},
     "synthetic.simulation.walkers"),
    ("synthetic-seed-2-to-the-64", {"synthetic/simulation/seed": 2**64},
     "synthetic.simulation.seed"),
    ("synthetic-max-steps-2-to-the-63", {"synthetic/simulation/max_steps": 2**63},
     "synthetic.simulation.max_steps"),
    ("synthetic-theta-num-10-to-the-12", {"synthetic/theta/num": 10**12},
     "synthetic.theta.num"),
    ("synthetic-huge-theta-range", {"synthetic/theta/max": BIG}, "synthetic.theta.max"),
    ("synthetic-temperature-num-10-to-the-9", {"synthetic/temperatures/num": 10**9},
     "synthetic.temperatures"),
    ("synthetic-basin-seed-2-to-the-70",
     {"synthetic/basin_sets/deep": {"minima": [0.0], "weights": [1.0], "sigmas": [0.1],
                                    "seed": 2**70}}, "synthetic.basin_sets.deep.seed"),
    ("synthetic-huge-wscale",
     {"synthetic/basin_sets/deep": {"minima": [0.0], "weights": [1.0], "sigmas": [0.1],
                                    "wscale": 1000.0}}, "synthetic.basin_sets.deep.wscale"),
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


def test_out_of_range_numbers_cover_every_section():
    """Issue 17: the too-large-number class is tested across the whole config, not one key."""
    start = next(i for i, (name, _, _) in enumerate(BAD) if name == "seed-2-to-the-70")
    keys = {key for _, _, key in BAD[start:]}
    assert len(keys) >= 12
    for section in ("seeds", "batch_sizes", "train.", "minimize.", "measure.", "datasets.",
                    "archs.", "resources.", "fig5.", "synthetic."):
        assert any(k.startswith(section) for k in keys), section


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
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
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
