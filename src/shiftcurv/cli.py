"""The `shiftcurv` command line: one subcommand per workflow step.

Each subcommand lives in `shiftcurv/commands/<name>.py` and defines `HELP` (one line),
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their command
runs, so `shiftcurv --help` and light commands never pay for torch or Lightning.
Errors meant for the user (ShiftcurvError) print as one line and exit with status 2.
A step whose module names its file arguments (`INPUTS`, `OUTPUTS`) first takes over the result
a pack job staged for that very command line, if there is one (shiftcurv.commands._staging).
"""

from __future__ import annotations

import sys

from shiftcurv import ShiftcurvError
from shiftcurv.commands._parser import build_parser, command_names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    names = [n.replace("_", "-") for n in command_names()]
    parser = build_parser(only=first if first in names else None)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        if getattr(args._module, "OUTPUTS", None):
            from shiftcurv.commands import _staging as staging
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
