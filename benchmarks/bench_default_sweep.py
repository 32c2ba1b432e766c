"""The whole default sweep, packed (config.yaml's `pack: 12`) against one process per step
(`pack: 1`, as before packing), one after the other on this machine: wall time, CPU time and
job count of `snakemake --profile profiles/local` from nothing, each in a fresh copy of the
repository's committed tree. Issue 16's goal: packed >= 1.8x faster. About 10 minutes on 2 cores.

    python benchmarks/bench_default_sweep.py [--packs 1,12] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_of_repo(dest: Path) -> None:
    """The committed tree (what a fresh clone has), without results or caches."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def run_sweep(work: Path, pack: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # as scripts/run-default.sh: no SLURM probe (10 s per snakemake start where scontrol is
    # installed without a controller; the packs' `run:` jobs start one each)
    env = dict(os.environ, SLURM_CONF=os.devnull)
    out = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/local",
                          "--config", f"pack={pack}"], cwd=work, capture_output=True, text=True,
                         env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"pack={pack}: snakemake failed\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    log = max((work / ".snakemake/log").glob("*.snakemake.log"), key=os.path.getmtime)
    jobs = log.read_text().count("Finished jobid")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"pack": pack, "wall": wall, "cpu": cpu, "jobs": jobs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packs", default="1,12", help="pack sizes to run, the first the baseline")
    p.add_argument("--keep", action="store_true", help="keep the working copies")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-default-"))
    rows = []
    try:
        for k in (int(x) for x in args.packs.split(",")):
            work = root / f"pack{k}"
            copy_of_repo(work)
            rows.append(run_sweep(work, k))
            r = rows[-1]
            print(f"pack={k:3d}: {r['wall']:6.1f} s wall, {r['cpu']:6.1f} s CPU, "
                  f"{r['jobs']} jobs", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    base = rows[0]
    print(f"\n{os.cpu_count()} CPUs; baseline pack={base['pack']}")
    print("| pack | wall s | CPU s | jobs | wall ratio | CPU ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pack']} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['jobs']} | "
              f"{base['wall'] / r['wall']:.2f}x | {base['cpu'] / r['cpu']:.2f}x |")


if __name__ == "__main__":
    main()
