"""Subcommands of the `shiftcurv` CLI, one module each (see `shiftcurv.cli`)."""
