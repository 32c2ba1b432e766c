"""Build a dataset once and write it to an .npz file that every later step loads in milliseconds.

Example:  shiftcurv prepare-data --settings '{"name": "mnist1d", "options": {}}' --out d.npz
"""

from __future__ import annotations

from shiftcurv.commands._common import add_settings_argument, log, parse_settings, require

HELP = "build a dataset (mnist1d, gaussian-teacher) into an .npz file"


def add_arguments(p):
    add_settings_argument(p)
    p.add_argument("--out", required=True, help="output .npz path")


def run(args) -> int:
    from shiftcurv import data

    s = parse_settings(args.settings)
    require(s, "name")
    ds = data.prepare(s["name"], args.out, **s.get("options", {}))
    log(f"dataset {ds.name}: {ds.n_train} train / {ds.n_test} test, input {ds.in_shape}, "
        f"{ds.n_classes} classes -> {args.out}")
    return 0
