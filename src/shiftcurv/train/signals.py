"""Graceful stop on the signals a cluster sends before it kills a job.

SLURM sends SIGTERM at the wall-time limit (then SIGKILL after `KillWait`), and the signal chosen
with `sbatch --signal=USR1@<seconds>` some time before it; a user's Ctrl-C is SIGINT. Inside
`stop_on_signals()` the first such signal only sets a flag (`StopRequest.signal`): the training
loop reads it once per epoch, at the epoch boundary, writes a checkpoint there (bit-identical
resume needs epoch-boundary state) and the step exits with `EXIT_INTERRUPTED`, so that
Snakemake's `--retries` (or the next run) starts the job again and it resumes. A second signal
means "now": the handler raises `Abandoned`, the step exits at once with the same status, and the
last checkpoint on disk (periodic or signal-written) is where the rerun resumes.

Lightning 2.6 installs its own SIGTERM handler during `Trainer.fit` (it records the signal and
raises `SIGTERMException`, a `SystemExit`, after the current batch) and keeps any handler that
was there before as part of a chain, so ours, installed first, still runs; `shiftcurv.train.sgd`
catches that exception and turns it into the same stop. Lightning's SLURM auto-requeue (SIGUSR1
→ `scontrol requeue`) is switched off (`SLURMEnvironment(auto_requeue=False)`): resubmission is
Snakemake's job, never both. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import signal
import threading

# sysexits.h EX_TEMPFAIL: "temporary failure, the user is invited to retry"
EXIT_INTERRUPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Abandoned(Exception):
    """A second stop signal: leave now, without waiting for the epoch boundary."""

    def __init__(self, name: str):
        super().__init__(f"second {name}: stopping at once")
        self.signal = name


class StopRequest:
    """The flag set by a stop signal; `signal` is its name (e.g. "SIGTERM") or None."""

    def __init__(self) -> None:
        self.signal: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def handler(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            raise Abandoned(name)
        self.signal = name


def run_until_stopped(step, command: str, kept) -> int:
    """`step(stop)` inside `stop_on_signals()`; on a second signal (`Abandoned`), one line
    "shiftcurv <command>: interrupted (...); <kept()>; rerun to resume" and EXIT_INTERRUPTED.
    `kept()` says what on disk the rerun resumes from (called only then)."""
    import sys

    with stop_on_signals() as stop:
        try:
            return step(stop)
        except Abandoned as e:
            print(f"shiftcurv {command}: interrupted ({e}); {kept()}; rerun to resume",
                  file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED


@contextlib.contextmanager
def stop_on_signals(signals=SIGNALS):
    """Install flag-setting handlers for `signals` (main thread only; elsewhere a no-op flag),
    restoring the previous handlers on exit. Yields the `StopRequest`."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in signals}
    try:
        for s in signals:
            signal.signal(s, stop.handler)
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
