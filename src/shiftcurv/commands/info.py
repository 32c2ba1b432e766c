"""Print the parameter count of each architecture: for every dataset x arch of a config, or for
specs given on the command line.

Examples:
  shiftcurv info --config config.yaml
  shiftcurv info --arch '{"type": "mlp", "widths": [100, 100]}' --in-shape 40 --classes 10
"""

from __future__ import annotations

import json

HELP = "print architectures' parameter counts"


def add_arguments(p):
    p.add_argument("--arch", action="append", default=[], metavar="JSON",
                   help="architecture spec as JSON (repeatable)")
    p.add_argument("--config", help="a sweep config (YAML): every dataset x arch in it")
    p.add_argument("--in-shape", type=int, nargs="+", default=[40],
                   help="input shape for --arch (default 40)")
    p.add_argument("--classes", type=int, default=10, help="classes for --arch (default 10)")


def run(args) -> int:
    from shiftcurv import data, models
    from shiftcurv.config import load_config
    from shiftcurv.sweep import dataset_settings

    rows = [("--arch", f"arg{i}", json.loads(a), tuple(args.in_shape), args.classes)
            for i, a in enumerate(args.arch)]
    if args.config:
        config = load_config(args.config)
        for d in config["datasets"]:
            spec = dataset_settings(config, d)
            ds = data.build(spec["name"], **spec["options"])
            rows += [(d, a, arch, ds.in_shape, ds.n_classes) for a, arch in config["archs"].items()]
    for dataset, name, spec, in_shape, classes in rows:
        n = models.n_params(models.build(spec, in_shape, classes))
        print(f"{dataset:>16} {name:>12} {n:>10,d} parameters  {json.dumps(spec)}")
    return 0
