"""The sweep: config → cells → canonical paths and per-step settings.

Shared by the Snakefile (at parse time: keep this module free of torch) and by the CLI steps that
look at the whole sweep (gather, status, plan). A cell is (dataset, arch, temperature, batch size,
seed); its directory is

    results/runs/{dataset}/{arch}/T~{T}/B~{B}/seed~{seed}/

with T in one canonical format (`format_temperature`), so 1e-4, 0.0001 and 1.0e-04 are one cell.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from shiftcurv import ShiftcurvError
from shiftcurv.measure_options import DEFAULT_OPTIONS

RESULTS = "results"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # safe in paths and shell words
# per-cell step outputs, relative to the cell directory
TRAIN_OUT = {"weights": "theta_sgd.safetensors", "record": "train.json"}
MIN_OUT = {split: {"weights": f"theta_{split}.safetensors", "record": f"min_{split}.json"}
           for split in ("train", "test")}
MEASURE_OUT = "measure.json"
DATA_FILE = "results/data/{dataset}.npz"


def format_temperature(t: float | str) -> str:
    """Canonical spelling of a temperature: shortest round-trip mantissa, 2-digit exponent
    (1e-04, 2.5e-05). Equal floats always give the same string."""
    x = float(t)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
    mant, exp = f"{x:.15e}".split("e")
    mant = repr(float(mant))  # drop trailing zeros and float noise (e.g. 2.5000000000000000)
    mant = mant[:-2] if mant.endswith(".0") else mant
    return f"{mant}e{int(exp):+03d}"


@dataclass(frozen=True)
class Cell:
    dataset: str
    arch: str
    temperature: str  # canonical string
    batch_size: int
    seed: int

    @property
    def T(self) -> float:
        return float(self.temperature)

    @property
    def dir(self) -> str:
        return (f"{RESULTS}/runs/{self.dataset}/{self.arch}/T~{self.temperature}/"
                f"B~{self.batch_size}/seed~{self.seed}")

    @property
    def wildcards(self) -> dict:
        return {"dataset": self.dataset, "arch": self.arch, "T": self.temperature,
                "B": str(self.batch_size), "seed": str(self.seed)}


def cells(config: dict) -> list[Cell]:
    """Every cell of the sweep, in a stable order (config order on each axis)."""
    temps = list(dict.fromkeys(format_temperature(t) for t in config["temperatures"]))
    return [Cell(d, a, t, int(b), int(s)) for d, a, t, b, s in itertools.product(
        config["datasets"], config["archs"], temps, config["batch_sizes"], config["seeds"])]


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+$")


def normalise_numbers(obj):
    """YAML 1.1 (PyYAML, and so Snakemake) reads `1e-4` — no dot — as a string. Researchers
    write temperatures that way, so exponent-form strings become floats before validation."""
    if isinstance(obj, dict):
        return {k: normalise_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [normalise_numbers(v) for v in obj]
    if isinstance(obj, str) and _EXPONENT_FLOAT.match(obj.strip()):
        return float(obj)
    return obj


def load_config(path: str | Path) -> dict:
    """Read a YAML config, apply the schema's defaults, and check it (one line per problem)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ShiftcurvError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        msg = str(e).replace("\n", " ")
        raise ShiftcurvError(f"config file {path} is not valid YAML: {msg}") from None
    return validate(normalise_numbers(config))


SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"


def validate(config: dict) -> dict:
    """JSON-Schema validation (filling defaults) plus the semantic checks; raises with one line
    per problem naming the key and the value."""
    problems = schema_problems(config)
    if not problems:
        problems = semantic_problems(config)
    if problems:
        raise ShiftcurvError("invalid config:\n  " + "\n  ".join(problems))
    return config


def schema_problems(config: dict) -> list[str]:
    import jsonschema
    import yaml
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    real = SCHEMA.resolve()  # relative $refs (synthetic.schema.yaml) resolve next to the file

    def retrieve(uri: str):
        path = real.parent / Path(uri.removeprefix("file://")).name
        return Resource.from_contents(yaml.safe_load(path.read_text()),
                                      default_specification=DRAFT202012)

    schema = yaml.safe_load(real.read_text())
    schema["$id"] = real.as_uri()
    validator_cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, json.loads(json.dumps(sub["default"])))
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, schema)

    extended = jsonschema.validators.extend(validator_cls, {"properties": set_defaults})
    validator = extended(schema, registry=Registry(retrieve=retrieve))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in errors]


def semantic_problems(config: dict) -> list[str]:
    """What a schema cannot say: known names and options, positive values, budgets, duplicate
    cells, and no shell metacharacters anywhere. Runs after the schema (defaults filled in);
    one line per problem, naming the key and the value."""
    from shiftcurv import data, fig5, models

    out = list(unsafe_strings(config))
    good_datasets = []
    extra = config.get("fig5") or {}
    for prefix, table in (("datasets", config["datasets"]),
                          ("fig5.datasets", extra.get("datasets", {}))):
        for name, opts in table.items():
            kind = opts.get("type", name)
            if kind not in data.BUILDERS:
                out.append(f"{prefix}.{name}: unknown dataset {kind!r} (known: {data.known()})")
                continue
            problems = dataset_option_problems(name, kind, opts, prefix)
            out.extend(problems)
            if not problems and prefix == "datasets":
                good_datasets.append(name)
    for prefix, table in (("archs", config["archs"]), ("fig5.archs", extra.get("archs", {}))):
        for name, spec in table.items():
            if spec.get("type") not in models.ARCHITECTURES:
                out.append(f"{prefix}.{name}.type: unknown architecture {spec.get('type')!r} "
                           f"(known: {models.known()})")
            else:
                out.extend(option_problems(f"{prefix}.{name}", models.ARCHITECTURES[spec["type"]],
                                           spec, skip=("type", "in_shape", "n_classes")))
    for section, names in (("datasets", config["datasets"]), ("archs", config["archs"]),
                           ("fig5.datasets", extra.get("datasets", {})),
                           ("fig5.archs", extra.get("archs", {}))):
        for name in names:
            if not NAME_RE.match(str(name)):
                out.append(f"{section}.{name}: names may hold only letters, digits, '_', '.', '-'")
    if not out:  # the fig5 checks look names up in the tables checked above
        out.extend(fig5.problems(config))
    out.extend(duplicate_entries(config))
    seen: dict[str, object] = {}
    for t in config["temperatures"]:
        try:
            key = format_temperature(t)
        except (TypeError, ValueError):
            out.append(f"temperatures: {t!r} is not a number > 0")
            continue
        if key in seen:
            out.append(f"temperatures: {t!r} and {seen[key]!r} are the same temperature")
        seen[key] = t
    for axis in ("seeds", "batch_sizes"):
        vals = config[axis]
        if len(set(vals)) != len(vals):
            out.append(f"{axis}: duplicate values in {vals}")
    for name in good_datasets:
        opts = config["datasets"][name]
        n_train = dataset_train_size(opts | {"type": opts.get("type", name)})
        for b in config["batch_sizes"]:
            if n_train is not None and b > n_train:
                out.append(f"batch_sizes: {b} is larger than dataset {name!r}'s "
                           f"{n_train} training samples")
    tr = config["train"]
    if tr["max_epochs"] < 1:
        out.append(f"train.max_epochs: must be >= 1, got {tr['max_epochs']}")
    if tr["checkpoint_every"] > tr["max_epochs"]:
        out.append(f"train.checkpoint_every: {tr['checkpoint_every']} is more than "
                   f"train.max_epochs {tr['max_epochs']}: no checkpoint would ever be written "
                   f"(0 switches them off)")
    per_arch = config["minimize"]["batch_size"]
    if isinstance(per_arch, dict):
        for name in per_arch:
            if name != "default" and name not in config["archs"]:
                out.append(f"minimize.batch_size.{name}: not an arch of this sweep (known: "
                           f"{', '.join(config['archs'])}, default)")
    ms = config["measure"]
    if ms["fit_window"] > ms["margin"]:
        out.append(f"measure.fit_window: {ms['fit_window']} is more than measure.margin "
                   f"{ms['margin']}: the line grid u in [-margin, 1 + margin] must cover the "
                   f"train fit window u in [-fit_window, 0]")
    tau = config["minimize"].get("tau_max")
    if tau is None:
        for name, opts in config["datasets"].items():
            kind = opts.get("type", name)
            if kind in data.BUILDERS and dataset_train_size(opts | {"type": kind}) is None:
                out.append(f"minimize.tau_max: dataset {name!r} has no size known before it is "
                           f"built, so the flow time cannot come from the paper settings: give "
                           f"tau_max")
    options = config["measure"]["hessian"]["options"]
    known = list(DEFAULT_OPTIONS)
    for key in options:  # here, not hours later when the measure step starts
        if key not in known:
            out.append(f"measure.hessian.options.{key}: unknown option "
                       f"(known: {', '.join(known)})")
    return out


# characters that mean something to a shell; config strings are names, enums and options, so
# none of them ever needs one (values reach the shell quoted anyway: defence in depth)
_SHELL_UNSAFE = re.compile(r"[;&|`$<>\\'\"(){}*?!#~\x00-\x1f\x7f]")


def unsafe_strings(obj, key: str = ""):
    """A problem line for every key or string value (anywhere) holding shell metacharacters."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{key}.{k}" if key else str(k)
            if isinstance(k, str) and _SHELL_UNSAFE.search(k):
                yield f"{path}: the key {k!r} holds shell metacharacters"
            yield from unsafe_strings(v, path)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from unsafe_strings(v, f"{key}[{i}]")
    elif isinstance(obj, str) and _SHELL_UNSAFE.search(obj):
        yield f"{key}: {obj!r} holds shell metacharacters"


def option_problems(where: str, fn, opts: dict, skip=()) -> list[str]:
    """Unknown option names for builder `fn` (from its signature), and values whose type does
    not match the default's (int/float/bool)."""
    import inspect

    params = {k: p for k, p in inspect.signature(fn).parameters.items() if k not in skip}
    out = []
    for k, v in opts.items():
        if k in skip:
            continue
        if k not in params:
            out.append(f"{where}.{k}: unknown option {k!r} (known: {', '.join(params)})")
            continue
        default = params[k].default
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(default, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else:
            ok = True
        if not ok:
            kind = {bool: "a boolean", int: "an integer"}.get(type(default), "a number")
            out.append(f"{where}.{k}: {v!r} is not {kind}")
    return out


# dataset options with a range: (low, high, low inclusive)
_DATASET_RANGES = {
    "seed": (0, None, True), "num_samples": (2, None, True), "train_split": (0, 1, False),
    "n_train": (1, None, True), "n_test": (1, None, True), "dim": (1, None, True),
    "n_classes": (2, None, True), "label_noise": (0, None, True),
    "train_samples": (1, None, True), "test_samples": (1, None, True),
}


def dataset_option_problems(name: str, kind: str, opts: dict,
                            prefix: str = "datasets") -> list[str]:
    """Unknown or out-of-range builder options, and builders whose package is missing."""
    import importlib.util

    from shiftcurv import data

    where = f"{prefix}.{name}"
    out = option_problems(where, data.BUILDERS[kind], opts, skip=("type",))
    if out:
        return out
    for k, v in opts.items():
        lo, hi, inclusive = _DATASET_RANGES.get(k, (None, None, True))
        if (lo is not None and (v < lo if inclusive else v <= lo)) or \
                (hi is not None and v >= hi):
            bounds = (f">= {lo}" if inclusive else f"> {lo}") + (f" and < {hi}" if hi else "")
            out.append(f"{where}.{k}: must be {bounds}, got {v!r}")
    if not out and kind == "mnist1d":
        n_train = dataset_train_size(opts | {"type": kind})
        if n_train < 1 or n_train >= opts.get("num_samples", 5000):
            out.append(f"{where}: num_samples x train_split leaves an empty train or test set")
        if importlib.util.find_spec("mnist1d") is None:
            out.append(f"{where}: the `mnist1d` package that generates it is not installed "
                       f"(pip install mnist1d)")
    return out


def _resolved(fn, opts: dict, skip=()) -> str:
    """`opts` with the builder's defaults filled in, as canonical JSON (for duplicate checks)."""
    import inspect

    full = {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if k not in skip and p.default is not inspect.Parameter.empty}
    full.update({k: v for k, v in opts.items() if k not in skip})
    return json.dumps(full, sort_keys=True, default=str)


def duplicate_entries(config: dict) -> list[str]:
    """Two datasets (or two archs) that resolve to the same thing would make duplicate cells."""
    from shiftcurv import data, models

    out = []
    for section, table, get_fn, skip in (
            ("datasets", config["datasets"],
             lambda n, o: data.BUILDERS.get(o.get("type", n)), ("type",)),
            ("archs", config["archs"],
             lambda n, o: models.ARCHITECTURES.get(o.get("type")),
             ("type", "in_shape", "n_classes"))):
        seen: dict[str, str] = {}
        for name, opts in table.items():
            fn = get_fn(name, opts)
            if fn is None:
                continue
            kind = opts.get("type", name)
            key = f"{kind}:{_resolved(fn, opts, skip)}"
            if key in seen:
                out.append(f"{section}.{name}: the same as {section}.{seen[key]} (same type and "
                           f"options): duplicate cells")
            else:
                seen[key] = name
    return out


def dataset_train_size(opts: dict) -> int | None:
    """Training-set size implied by a dataset's options (None when unknown before building)."""
    if opts["type"] == "mnist1d":
        return int(opts.get("num_samples", 5000) * opts.get("train_split", 0.8))
    if opts["type"] == "gaussian-teacher":
        return int(opts.get("n_train", 512))
    if opts["type"] == "cifar10":
        return int(opts.get("train_samples", 50000))
    return None


def dataset_test_size(opts: dict) -> int | None:
    """Test-set size implied by a dataset's options (None when unknown before building)."""
    if opts["type"] == "mnist1d":
        n = opts.get("num_samples", 5000)
        return n - int(n * opts.get("train_split", 0.8))
    if opts["type"] == "gaussian-teacher":
        return int(opts.get("n_test", 256))
    if opts["type"] == "cifar10":
        return int(opts.get("test_samples", 10000))
    return None


def data_source_problems(config: dict) -> list[str]:
    """Whether the local files a dataset reads (CIFAR-10's `root:`) are there and look right,
    one line each. Not part of semantic_problems: a dry run must work without the data, so the
    caller decides when. Cheap (names and sizes, no unpickling); relative roots are relative to
    the current directory."""
    from shiftcurv import cifar

    out = []
    tables = (("datasets", config["datasets"]),
              ("fig5.datasets", (config.get("fig5") or {}).get("datasets", {})))
    for prefix, name, opts in ((p, n, o) for p, t in tables for n, o in t.items()):
        if opts.get("type", name) != "cifar10":
            continue
        where, root = f"{prefix}.{name}.root", opts.get("root", "")
        if not isinstance(root, str) or not root:
            out.append(f"{where}: missing: give the folder holding CIFAR-10 (the extracted "
                       f"cifar-10-batches-bin/ or cifar-10-batches-py/, or its parent)")
            continue
        out.extend(f"{where}: {p}" for p in cifar.source_problems(root))
    return out


# -- per-step settings: only the cell's own resolved values (Snakemake's params rerun trigger) ----
def dataset_settings(config: dict, dataset: str) -> dict:
    from shiftcurv.fig5 import catalog

    opts = dict(catalog(config, "datasets")[dataset])
    return {"name": opts.pop("type", dataset), "options": opts}


def train_settings(config: dict, cell: Cell) -> dict:
    from shiftcurv.temperature import epoch_budget, learning_rate

    tr = config["train"]
    return {
        "arch": config["archs"][cell.arch], "temperature": cell.T, "batch_size": cell.batch_size,
        "seed": cell.seed, "l2": tr["l2"], "epochs_ref": tr["epochs_ref"],
        "temperature_ref": tr["temperature_ref"], "max_epochs": tr["max_epochs"],
        "checkpoint_every": tr["checkpoint_every"], "device": tr["device"],
        # derived, so a change of rule shows in the params too
        "lr": learning_rate(cell.T, cell.batch_size),
        "epochs": epoch_budget(cell.T, tr["epochs_ref"], tr["temperature_ref"], tr["max_epochs"]),
    }


def _device(config: dict) -> dict:
    """Minimum finding and measures compute where training does; stated only when not the CPU,
    so that CPU sweeps keep the params (and so the finished jobs) they had."""
    device = config["train"]["device"]
    return {} if device == "cpu" else {"device": device}


def paper_batch_size(config: dict, arch: str) -> int:
    """The paper method's minibatch size for `arch` (paper: 5000 VGG, 10000 ResNet)."""
    b = config["minimize"]["batch_size"]
    return int(b.get(arch, b.get("default", 5000)) if isinstance(b, dict) else b)


def split_size(config: dict, dataset: str, split: str) -> int | None:
    opts = config["datasets"][dataset]
    opts = opts | {"type": opts.get("type", dataset)}
    return dataset_train_size(opts) if split == "train" else dataset_test_size(opts)


def flow_time(config: dict, cell: Cell, split: str) -> float:
    """τ_max of the split's minimum: `minimize.tau_max` (a number, or {train, test}) when the
    config gives it, else the flow time the paper's protocol reaches on this split (App. G:
    minibatch GD at lr with batch B_arch, no shuffle, last batch kept, max_epochs epochs),

        τ = lr · ⌈N_split / B_arch⌉ · max_epochs

    (CIFAR-10: train 10 (VGG, B 5000) / 5 (ResNet, B 10000), test 2 / 1; the default MNIST-1D:
    1 and 1). So `method: flow` and `method: paper` reach the same endpoint from one config."""
    mn = config["minimize"]
    given = mn.get("tau_max")
    if isinstance(given, dict):
        return float(given[split])
    if given is not None:
        return float(given)
    n = split_size(config, cell.dataset, split)
    if n is None:
        raise ShiftcurvError(f"minimize.tau_max: the size of dataset {cell.dataset!r}'s {split} "
                             f"split is not known before it is built: give tau_max")
    return float(mn["lr"]) * math.ceil(n / paper_batch_size(config, cell.arch)) * \
        int(mn["max_epochs"])


def minimize_settings(config: dict, cell: Cell, split: str) -> dict:
    mn = dict(config["minimize"])
    mn["batch_size"] = paper_batch_size(config, cell.arch)
    mn["tau_max"] = flow_time(config, cell, split)
    return {"arch": config["archs"][cell.arch], "split": split, "l2": config["train"]["l2"],
            **mn, **_device(config)}


def capped_temperatures(config: dict) -> dict[str, tuple[int, int]]:
    """{temperature: (epochs run, epochs the E·T budget asks)} for every temperature whose budget
    train.max_epochs cuts: those cells train for less E·T than the others."""
    from shiftcurv.temperature import epoch_budget

    tr = config["train"]
    out = {}
    for t in dict.fromkeys(format_temperature(t) for t in config["temperatures"]):
        want = epoch_budget(float(t), tr["epochs_ref"], tr["temperature_ref"], 2**62)
        if want > tr["max_epochs"]:
            out[t] = (int(tr["max_epochs"]), want)
    return out


def capped_lines(config: dict) -> list[str]:
    """One warning line per capped temperature, naming its cells (none when nothing is capped)."""
    per_t = len(cells(config)) // max(1, len(dict.fromkeys(
        format_temperature(t) for t in config["temperatures"])))
    tr = config["train"]
    cells_at = f"{per_t} cell{'s' if per_t != 1 else ''}"
    return [f"shiftcurv: warning: train.max_epochs {run} caps the {cells_at} at T~{t} "
            f"(runs/*/*/T~{t}/...): {run} epochs where E*T = {tr['epochs_ref']:g} x "
            f"{tr['temperature_ref']:g} asks {want}, so they train for E*T = {run * float(t):.3g} "
            f"instead of {want * float(t):.3g}"
            for t, (run, want) in capped_temperatures(config).items()]


def measure_settings(config: dict, cell: Cell) -> dict:
    return {"arch": config["archs"][cell.arch], "l2": config["train"]["l2"], "seed": cell.seed,
            **config["measure"], **_device(config)}


def as_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
