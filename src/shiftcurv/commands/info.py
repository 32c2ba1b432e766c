"""Print the parameter count of each architecture in a config or given on the command line.

Example:  shiftcurv info --arch '{"type": "mlp", "widths": [100, 100]}' --in-shape 40
"""

from __future__ import annotations

import json

HELP = "print architectures' parameter counts"


def add_arguments(p):
    p.add_argument("--arch", action="append", default=[], metavar="JSON",
                   help="architecture spec as JSON (repeatable)")
    p.add_argument("--config", help="a sweep config (YAML): report every arch x dataset in it")
    p.add_argument("--in-shape", type=int, nargs="+", default=[40], help="input shape (default 40)")
    p.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")


def run(args) -> int:
    from shiftcurv import models
    from shiftcurv.sweep import load_config

    specs = {f"arg{i}": json.loads(a) for i, a in enumerate(args.arch)}
    if args.config:
        specs.update(load_config(args.config)["archs"])
    for name, spec in specs.items():
        m = models.build(spec, args.in_shape, args.classes)
        print(f"{name:>16}  {models.n_params(m):>10,d} parameters  {json.dumps(spec)}")
    return 0
