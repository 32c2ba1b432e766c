"""The `shiftcurv` argument parser: one subparser per module of `shiftcurv.commands` (those
whose names do not start with "_"), each imported only when its command is the one parsed."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from shiftcurv import __version__, commands


def command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__)
                  if not m.name.startswith("_"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shiftcurv",
        description="Shift-curvature sweeps: train at SGD temperature T, find the train and test "
                    "minima, measure along the line between them, gather, plot.")
    parser.add_argument("--version", action="version", version=f"shiftcurv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_names():
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
