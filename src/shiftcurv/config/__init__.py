"""The sweep config: read (YAML), normalise (YAML 1.1 numbers), fill the schema's defaults and
check it, one line per problem naming the key (`checks` holds what a schema cannot say).
Torch-free: the Snakefile and the CLI load configs with it."""

from __future__ import annotations

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


