"""Progress lines for long steps: one line per report in batch logs, a live line in a terminal.
Kept free of torch and Lightning so that every step can import it cheaply."""

from __future__ import annotations

import math
import sys
import time


class Progress:
    """One line per report in batch logs; a live, rewritten line when stderr is a terminal."""

    def __init__(self, stream=None, every_seconds: float = 10.0):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every = 0.0 if self.live else every_seconds
        self.last = -math.inf

    def __call__(self, msg: str, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or now - self.last >= self.every):
            return
        self.last = now
        if self.live and not force:
            self.stream.write("\r" + msg[:150].ljust(150))
        else:
            self.stream.write(("\n" if self.live else "") + msg + "\n")
        self.stream.flush()
