"""The sweep config: read (YAML), normalise (YAML 1.1 numbers), fill the schema's defaults and
check it, one line per problem naming the key (`checks` holds what a schema cannot say).
Torch-free: the Snakefile and the CLI load configs with it."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from shiftcurv import ShiftcurvError

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
    from shiftcurv.config.checks import semantic_problems

    problems = schema_problems(config)
    if not problems:
        problems = semantic_problems(config)
    if problems:
        raise ShiftcurvError("invalid config:\n  " + "\n  ".join(problems))
    return config


def schema_problems(config: dict) -> list[str]:
    """The whole config against config.schema.yaml, its `properties` defaults filled in place.
    A $ref'd file (synthetic.schema.yaml) is checked but not filled: the synthetic rule passes
    that section as written (its params: filling it would rerun the job on finished results),
    and the synthetic step validates and fills it itself (`document_problems`)."""
    real = SCHEMA.resolve()
    validator = _filling_validator(json.loads(_schema_json(real)) | {"$id": real.as_uri()},
                                   real, fill_refs=False)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in errors]


@functools.cache
def _schema_json(path: Path) -> str:
    """A schema file as JSON text, read once (YAML parsing is slow; callers parse a copy)."""
    import yaml

    return json.dumps(yaml.safe_load(path.read_text()))


def _filling_validator(schema: dict, real: Path, *, fill_refs: bool):
    """A jsonschema validator for `schema` that sets each `properties` default where its key is
    absent, then validates; $refs resolve to files next to `real`. A $ref'd file that declares
    its own `$schema` is validated by a plain validator (jsonschema's rule), so with fill_refs
    its `$schema` is dropped and its defaults are filled too."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    base = jsonschema.validators.validator_for(schema)

    def retrieve(uri: str):
        contents = json.loads(_schema_json(real.parent / Path(uri.removeprefix("file://")).name))
        if fill_refs:
            contents.pop("$schema", None)
        return Resource.from_contents(contents, default_specification=DRAFT202012)

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, json.loads(json.dumps(sub["default"])))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    extended = jsonschema.validators.extend(base, {"properties": set_defaults})
    return extended(schema, registry=Registry(retrieve=retrieve))


def document_problems(doc, schema_file: str | Path, *, pointer: str = "",
                      where: str = "") -> list[str]:
    """Validate `doc` against one schema file (a name is looked up next to config.schema.yaml;
    `pointer`, e.g. "/definitions/basin_set", picks a part of it) and fill the schema's defaults
    into `doc` in place, as `schema_problems` does for a whole config: a `properties` default is
    set where its key is absent (so a `oneOf` must tell its branches apart by type, else a failing
    branch's defaults stay). For a sub-document that did not come through `load_config` (the
    synthetic CLI's --settings); a $ref'd file is checked with the same defaults.

    One line per problem, naming the key (prefixed by `where`, list items as `[i]`); for a
    `oneOf` mismatch the reason from the branch that came closest.
    """
    from jsonschema.exceptions import best_match

    real = (SCHEMA.resolve().parent / schema_file).resolve()
    validator = _filling_validator({"$ref": f"{real.as_uri()}#{pointer}"}, real, fill_refs=True)

    def key(error) -> str:
        out = where
        for part in error.absolute_path:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out = f"{out}.{part}" if out else str(part)
        return out or "(top level)"

    errors = [best_match([e]) for e in validator.iter_errors(doc)]
    return [f"{key(e)}: {e.message}"
            for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])]
