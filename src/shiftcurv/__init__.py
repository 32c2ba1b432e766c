"""shiftcurv: how SGD temperature shapes the minima SGD finds.

Reproduces and extends Bradley, Gomez-Uribe & Vuyyuru, "Shift-curvature, SGD, and
generalization". Importing the package is cheap (no torch): the workflow imports
`shiftcurv.sweep` at parse time, and every step imports only what it needs.
"""

__version__ = "0.1.0"


class ShiftcurvError(Exception):
    """An error with a one-line message meant for the user (bad input, missing file, ...)."""
