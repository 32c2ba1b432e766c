"""What a JSON schema cannot say about a config: known names and options, ranges of builder
options, budgets, duplicate cells, shell metacharacters, and whether local dataset files exist.
One line per problem, naming the key and the value. Torch-free."""

from __future__ import annotations

import json
import math
import re

from shiftcurv.config.measure_options import DEFAULT_OPTIONS
from shiftcurv.sweep.cells import NAME_RE, dataset_train_size, format_temperature


def semantic_problems(config: dict) -> list[str]:
    """What a schema cannot say: known names and options, positive values, budgets, duplicate
    cells, and no shell metacharacters anywhere. Runs after the schema (defaults filled in);
    one line per problem, naming the key and the value."""
    from shiftcurv import data, models
    from shiftcurv.sweep import fig5

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
    out.extend(eq4_problems(config.get("eq4") or {}, config["seeds"]))
    tau = config["minimize"].get("tau_max")
    if tau is None:
        for name, opts in config["datasets"].items():
            kind = opts.get("type", name)
            if kind in data.BUILDERS and dataset_train_size(opts | {"type": kind}) is None:
                out.append(f"minimize.tau_max: dataset {name!r} has no size known before it is "
                           f"built, so the flow time cannot come from the paper settings: give "
                           f"tau_max")
    out.extend(number_range_problems(config))
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


# dataset options with a range: (low, high, low inclusive); high is exclusive for train_split
# and inclusive otherwise. Every option is bounded (issue 17: a value the builder cannot take
# must fail here, not in a queued job): seed < 2**32 (mnist1d seeds numpy's legacy RandomState,
# which refuses larger; default_rng takes it too); generated sizes <= 1e7 samples and dim <= 1e5
# features (gaussian-teacher draws an n x dim float64 array: bounded together below); CIFAR-10
# subsets <= the 50000 train / 10000 test images the set has (the builder raises otherwise);
# label_noise finite, <= 1e6.
_DATASET_RANGES = {
    "seed": (0, 2**32 - 1, True), "num_samples": (2, 10**7, True), "train_split": (0, 1, False),
    "n_train": (1, 10**7, True), "n_test": (1, 10**7, True), "dim": (1, 10**5, True),
    "n_classes": (2, 10**5, True), "label_noise": (0, 1e6, True),
    "train_samples": (1, 50000, True), "test_samples": (1, 10000, True),
}
_EXCLUSIVE_HIGH = {"train_split"}
_MAX_GENERATED_VALUES = 10**9  # gaussian-teacher: (n_train + n_test) x dim float64 (8 GB)

# measure.hessian.options with a range (low, high), both inclusive (None values skip it); the
# measure step would otherwise fail (or run for ever) hours after queueing. Iteration counts
# and probe/pair counts <= 1e6 (each is a Hessian-vector product or an optimiser step), and
# integers (they are loop counts); graph_memory <= 2**50 bytes (a byte count: 4.0e9 is fine);
# sample counts are COUNTs (32-bit indexing); tolerances finite, in [0, 1]; eps in (0, 1e6].
_OPTION_RANGES = {
    "graph_memory": (0, 2**50), "eig_tol": (0, 1), "eig_max_iter": (1, 10**6),
    "trace_matvecs": (1, 10**6), "eps_maxiter": (1, 10**6),
    "nonuniformity_samples": (1, 2**31 - 1), "nonuniformity_tol": (0, 1),
    "noise_samples": (1, 2**31 - 1), "coherence_pairs": (1, 10**6),
}
_MAX_LINE_POINTS = 10**6  # line grid points (each a full loss evaluation per split)


def number_range_problems(config: dict) -> list[str]:
    """Bounds a schema cannot say: measure.hessian.options (free-form in the schema) and the
    size of the line grid, points_per_unit x (1 + 2 margin)."""
    out = []
    options = config["measure"]["hessian"]["options"]
    for key, (lo, hi) in _OPTION_RANGES.items():
        v = options.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or (isinstance(DEFAULT_OPTIONS[key], int) and key != "graph_memory"
                    and not isinstance(v, int)) \
                or not lo <= v <= hi:
            out.append(f"measure.hessian.options.{key}: must be a number in [{lo}, {hi}], "
                       f"got {v!r}")
    eps = options.get("eps")
    if eps is not None:
        vals = eps if isinstance(eps, list) else []  # measure_point iterates over it
        if not vals or not all(isinstance(e, (int, float)) and not isinstance(e, bool)
                               and math.isfinite(e) and 0 < e <= 1e6 for e in vals):
            out.append(f"measure.hessian.options.eps: must be a non-empty list of numbers in "
                       f"(0, 1e6], got {eps!r}")
    ms = config["measure"]
    points = ms["points_per_unit"] * (1 + 2 * math.ceil(ms["margin"]))
    if points > _MAX_LINE_POINTS:
        out.append(f"measure.points_per_unit: {ms['points_per_unit']} points per unit over "
                   f"margin {ms['margin']} make ~{points} line points, each a full loss "
                   f"evaluation (at most {_MAX_LINE_POINTS})")
    return out


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
        if k not in _DATASET_RANGES or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        high_ok = v < hi if k in _EXCLUSIVE_HIGH else v <= hi
        if (v < lo if inclusive else v <= lo) or not high_ok:
            bounds = ((f">= {lo}" if inclusive else f"> {lo}")
                      + (f" and < {hi}" if k in _EXCLUSIVE_HIGH else f" and <= {hi}"))
            out.append(f"{where}.{k}: must be {bounds}, got {v!r}")
    if not out and kind == "gaussian-teacher":
        n = (opts.get("n_train", 512) + opts.get("n_test", 256)) * opts.get("dim", 8)
        if n > _MAX_GENERATED_VALUES:
            out.append(f"{where}.dim: (n_train + n_test) x dim = {n} generated values, more "
                       f"than {_MAX_GENERATED_VALUES} (float64 in memory)")
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


def data_source_problems(config: dict) -> list[str]:
    """Whether the local files a dataset reads (CIFAR-10's `root:`) are there and look right,
    one line each. Not part of semantic_problems: a dry run must work without the data, so the
    caller decides when. Cheap (names and sizes, no unpickling); relative roots are relative to
    the current directory."""
    from shiftcurv.data import cifar

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


def eq4_problems(eq4: dict, seeds: list[int]) -> list[str]:
    """What the schema cannot say about the `eq4` section: the jackknife needs every batch to
    hold a sample, an early stop needs its batches to exist, sampled seeds must be swept."""
    out = [f"eq4.seeds: {s} is not one of the sweep's seeds {seeds}"
           for s in eq4.get("seeds") or [] if s not in seeds]
    samples, batches = eq4.get("samples", 200), eq4.get("batches", 20)
    if batches > samples:
        out.append(f"eq4.batches: {batches} batches need at least as many samples "
                   f"(eq4.samples is {samples})")
    if eq4.get("min_batches", 10) > batches:
        out.append(f"eq4.min_batches: {eq4.get('min_batches', 10)} is more than eq4.batches "
                   f"{batches}")
    if "thin" in eq4 and eq4["thin"] * (samples // max(batches, 1)) > eq4.get("max_epochs",
                                                                              2000):
        out.append(f"eq4.max_epochs: {eq4.get('max_epochs', 2000)} chain epochs cannot hold one "
                   f"batch of {samples // max(batches, 1)} samples {eq4['thin']} epochs apart")
    return out
