"""The `shiftcurv` command line: one subcommand per workflow step.

Each subcommand lives in `shiftcurv/commands/<name>.py` and defines `HELP` (one line),
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their command
runs, so `shiftcurv --help` and light commands never pay for torch or Lightning.
Errors meant for the user (ShiftcurvError) print as one line and exit with status 2.
A step whose module names its file arguments (`INPUTS`, `OUTPUTS`) first takes over the result
a pack job staged for that very command line, if there is one (shiftcurv.staging).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from shiftcurv import ShiftcurvError, __version__, commands


def _command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__)
                  if not m.name.startswith("_"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shiftcurv",
        description="Shift-curvature sweeps: train at SGD temperature T, find the train and test "
                    "minima, measure along the line between them, gather, plot.")
    parser.add_argument("--version", action="version", version=f"shiftcurv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_names():
        cli_name = name.replace("_", "-")
        if only is not None and cli_name != only:
            # listed in --help without importing the module (keeps start-up fast)
            sub.add_parser(cli_name, add_help=False)
            continue
        mod = importlib.import_module(f"shiftcurv.commands.{name}")
        p = sub.add_parser(cli_name, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    names = [n.replace("_", "-") for n in _command_names()]
    parser = build_parser(only=first if first in names else None)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        if getattr(args._module, "OUTPUTS", None):
            from shiftcurv import staging
            from shiftcurv.commands._common import log

            if staging.adopt(args, log):  # a pack ran this very step (docs/packing.md)
                return 0
        return int(args._module.run(args) or 0)
    except ShiftcurvError as e:
        print(f"shiftcurv {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shiftcurv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
