"""Run several steps (each a `shiftcurv` command line) one after the other in one process.

What a pack job does for runs it cannot vectorize (the Fig. 5 runs: momentum, a given init,
subsampled data; docs/packing.md): torch, Lightning and the data are loaded once, not once per
run. Each step writes its outputs under staging names, and the step's own Snakemake job (the
same command line) takes them over (commands._staging); a step that fails is left to its own
job, which runs it and reports why, while the others go on.

--steps is a JSON list (text, or @FILE) of {"name": NAME, "argv": ["train", "--data", ...]}.
--out-record writes the steps' exit statuses and seconds when all have run. Stop signals
(SIGTERM, SIGUSR1, SIGINT): the running step stops as its command does (a training run
checkpoints at its epoch boundary), nothing after it starts, and the command exits 75; rerun it
to go on (steps already staged or done are skipped).

Example:
  shiftcurv run-steps --steps @steps.json --out-record steps.record.json
"""

from __future__ import annotations

from shiftcurv import ShiftcurvError
from shiftcurv.commands._common import add_threads_argument, parse_json_argument

HELP = "run several steps' command lines in one process, staged for their own jobs"


def add_arguments(p):
    p.add_argument("--steps", required=True, metavar="JSON|@FILE",
                   help="a JSON list of {name, argv}")
    p.add_argument("--out-record", help="the steps' record (.json), written when all have run")
    add_threads_argument(p)


def parse_steps(text: str) -> list[dict]:
    from shiftcurv.commands._staging import steps_problem

    steps = parse_json_argument(text, "--steps")
    problem = steps_problem(steps) or (None if steps else "must not be empty")
    if problem:
        raise ShiftcurvError(f"--steps {problem}")
    return steps


def run(args) -> int:
    from shiftcurv.train.signals import run_until_stopped

    steps = parse_steps(args.steps)
    return run_until_stopped(lambda stop: run_all(args, steps, stop), "run-steps",
                             lambda: "the steps' checkpoints stay the resume points")


def run_all(args, steps: list[dict], stop) -> int:
    import sys

    from shiftcurv.commands import _staging as staging
    from shiftcurv.commands._common import provenance
    from shiftcurv.io import write_json

    done, rc = staging.run_steps([{"steps": [st]} for st in steps], stop, args.threads)
    if rc:
        print("shiftcurv run-steps: interrupted by a stop signal; rerun to go on",
              file=sys.stderr, flush=True)
        return rc
    if args.out_record:
        write_json(args.out_record, {
            "steps": [{"name": st["name"], **done.get(k, {}).get(st["name"], {"skipped": True})}
                      for k, st in enumerate(steps)],
            "provenance": provenance()})
    return 0
