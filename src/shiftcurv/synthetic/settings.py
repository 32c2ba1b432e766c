"""The synthetic study's settings: the config's `synthetic` section, the paper's Appendix G
tables, and the θ and temperature grids.

workflow/schemas/synthetic.schema.yaml checks every value and holds every default (nowhere
else): `resolve_settings` validates a section against it with the config loader's machinery
(`shiftcurv.config.document_problems`, which fills the defaults), then checks only what a schema
cannot say (finite numbers, equal list lengths, max > min, at least one basin set, no clash with
a paper table's name) and gives numbers their type (integers where the schema says integer,
floats elsewhere), so that the same settings always resolve to the same JSON.

Torch-free and light (yaml, jsonschema): the Snakefile calls `figure_names` at parse time.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

from shiftcurv import ShiftcurvError

SCHEMA_FILE = "synthetic.schema.yaml"   # next to config.schema.yaml (workflow/schemas/)

# Appendix G, "Figure 4 and G.2.6": the four parameter tables, as printed (the paper's data,
# not defaults: every key is given).
PAPER_BASIN_SETS: dict[str, dict] = {
    "fig4_left": {"minima": [-1.0, 1.0], "weights": [0.021, 0.1], "sigmas": [0.1, 0.5],
                  "c": 0.001, "stddev_shift": 0.1, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                  "description": "Fig. 4 left: -1 deeper but narrower than +1"},
    "fig4_right": {"minima": [-1.0, 1.0], "weights": [0.019, 0.1], "sigmas": [0.1, 0.5],
                   "c": 0.001, "stddev_shift": 0.1, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                   "description": "Fig. 4 right: +1 deeper and wider than -1"},
    "fig6_left": {"minima": [0.0], "weights": [0.1], "sigmas": [0.1],
                  "c": 0.001, "stddev_shift": 0.03, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                  "description": "Fig. 6 left: one basin"},
    "fig6_right": {"minima": [-1.0, 0.0, 1.0], "weights": [0.1, 0.051, 0.3],
                   "sigmas": [0.1, 0.05, 0.3],
                   "c": 0.001, "stddev_shift": 0.1, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                   "description": "Fig. 6 right: 0 deepest and narrowest; -1 and +1 equally "
                                  "deep, +1 wider"},
}


# --------------------------------------------------------------------------------------------
# The schema: validation, defaults, number types
# --------------------------------------------------------------------------------------------

def schema_path() -> Path:
    from shiftcurv.config import SCHEMA

    return SCHEMA.resolve().parent / SCHEMA_FILE


def _validated(doc, pointer: str, where: str) -> dict:
    """`doc` (not modified) checked against the schema (or its part at `pointer`), with the
    schema's defaults filled in; one line naming the key(s) on error."""
    from shiftcurv.config import document_problems, normalise_numbers

    doc = normalise_numbers(doc)   # a copy; YAML 1.1 reads 1e-3 as a string, as in load_config
    problems = document_problems(doc, SCHEMA_FILE, pointer=pointer, where=where)
    if problems:
        raise ShiftcurvError("; ".join(problems))
    return doc


@functools.cache
def _integer_keys() -> frozenset[str]:
    """The keys the schema types as integer (num, seed, walkers, ...); other numbers are floats."""
    import yaml

    ints, other = set(), set()

    def walk(node):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "type" in sub:
                    (ints if sub["type"] == "integer" else other).add(name)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(schema_path().read_text()))
    assert not ints & other, f"{SCHEMA_FILE}: keys both integer and not: {ints & other}"
    return frozenset(ints)


def _typed(obj, key: str = ""):
    """Numbers as the schema types them: int for its integer keys, float for every other (so
    `theta: {min: -3}` resolves, and is written to the netCDF attributes, as -3.0)."""
    if isinstance(obj, dict):
        return {k: _typed(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_typed(v, key) for v in obj]
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        return obj
    return int(obj) if key in _integer_keys() else float(obj)


def _not_finite(obj, key: str) -> list[str]:
    """JSON Schema cannot reject inf/nan (YAML's .inf, Python's json 'Infinity')."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _not_finite(v, f"{key}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _not_finite(v, f"{key}[{i}]")]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"{key}: must be finite, got {obj!r}"]
    return []


@functools.cache
def _defaults_json() -> str:
    return json.dumps(_validated({}, "", "synthetic"))


def default_settings() -> dict:
    """The schema-filled empty section: the four paper tables, the `shallow` example set, 36
    temperatures from 1e-3 to 3, a θ grid of 4801 points on [-3, 3], 3000 walkers."""
    return json.loads(_defaults_json())


# --------------------------------------------------------------------------------------------
# Resolving a section, a basin set, a noise spec
# --------------------------------------------------------------------------------------------

def _basin_set_problems(spec: dict, key: str) -> list[str]:
    """What the schema cannot say about a schema-valid basin set of finite numbers."""
    if not len(spec["minima"]) == len(spec["weights"]) == len(spec["sigmas"]):
        return [f"{key}: minima, weights and sigmas must have the same length"]
    return []


def resolve_noise(spec, key: str = "noise") -> dict:
    """A noise spec ({kind: constant, D} or {kind: loss, D0, alpha}) with defaults filled."""
    spec = _validated(spec, "/definitions/basin_set/properties/noise", key)
    problems = _not_finite(spec, key)
    if problems:
        raise ShiftcurvError("; ".join(problems))
    return _typed(spec)


def resolve_basin_set(spec, key: str) -> dict:
    """One basin set (the Appendix G keys) with defaults filled; errors name `key`."""
    spec = _validated(spec, "/definitions/basin_set", key)
    problems = _not_finite(spec, key) or _basin_set_problems(spec, key)
    if problems:
        raise ShiftcurvError("; ".join(problems))
    return _typed(spec)


def resolve_settings(settings: dict | None) -> dict:
    """The config's `synthetic` section with the schema's defaults filled in and checked.

    Bad values raise ShiftcurvError, one line naming the key(s) (e.g. `synthetic.theta.num`).
    Idempotent: resolving a resolved section returns it unchanged.
    """
    s = _validated({} if settings is None else settings, "", "synthetic")
    problems = _not_finite(s, "synthetic")
    if problems:
        raise ShiftcurvError("; ".join(problems))
    for name, spec in s["basin_sets"].items():
        problems += _basin_set_problems(spec, f"synthetic.basin_sets.{name}")
        if name in s["paper_sets"]:
            problems.append(f"synthetic.basin_sets.{name}: clashes with a paper set name "
                            "(rename it, or drop it from paper_sets)")
    if not s["paper_sets"] and not s["basin_sets"]:
        problems.append("synthetic.paper_sets: no basin sets (give paper_sets or basin_sets)")
    t = s["temperatures"]
    if isinstance(t, dict) and (t["max"] < t["min"] or (t["num"] > 1 and t["max"] == t["min"])):
        problems.append("synthetic.temperatures.max: must be > min")
    if s["theta"]["max"] <= s["theta"]["min"]:
        problems.append("synthetic.theta.max: must be > synthetic.theta.min")
    if problems:
        raise ShiftcurvError("; ".join(problems))
    out = _typed(s)
    if isinstance(out["temperatures"], list):
        out["temperatures"] = sorted(set(out["temperatures"]))
    return out


def basin_set_specs(resolved: dict) -> dict[str, dict]:
    """name -> full basin-set spec: the chosen paper tables, then the user's sets."""
    specs = {n: resolve_basin_set(PAPER_BASIN_SETS[n], n) for n in resolved["paper_sets"]}
    specs.update(resolved["basin_sets"])
    return specs


# --------------------------------------------------------------------------------------------
# Names and grids
# --------------------------------------------------------------------------------------------

def set_names(settings: dict | None) -> list[str]:
    """Basin-set names in order, without checking every value (cheap: used at DAG parse)."""
    s = settings or {}
    defaults = default_settings()
    paper = s.get("paper_sets", defaults["paper_sets"])
    user = s.get("basin_sets", defaults["basin_sets"]) or {}
    return list(dict.fromkeys([*paper, *user]))


def figure_names(settings: dict | None, outdir: str = "results/figures") -> list[str]:
    """The PNGs `shiftcurv synthetic` writes: one 4-panel figure per basin set, and the checks."""
    return ([f"{outdir}/synthetic_{name}.png" for name in set_names(settings)]
            + [f"{outdir}/synthetic_checks.png"])


def temperature_grid(resolved: dict) -> np.ndarray:
    """The SGD temperatures T = lr / batch size: the explicit list, or a log grid."""
    t = resolved["temperatures"]
    if isinstance(t, list):
        return np.asarray(t, float)
    return np.geomspace(t["min"], t["max"], t["num"])


def theta_grid(resolved: dict) -> np.ndarray:
    """The uniform θ grid on which ρ of Eq. 5 is computed and integrated."""
    th = resolved["theta"]
    return np.linspace(th["min"], th["max"], th["num"])
