"""The compute plan and its cost model: which jobs of a sweep remain, how many SLURM submissions
they make, and how many GPU- and CPU-hours they cost.

No torch here: the Snakefile imports this at parse time (each cell rule's `runtime` resource),
and `shiftcurv plan` answers in well under 2 s for 10 000 cells.

Cost model. A job's wall time is modelled per (dataset, arch, rule) as

    seconds = overhead + rate × work

with work = SGD sample-steps for `train` (epochs × ⌊n_train/B⌋ × B: the epoch budget E(T) makes
it vary over temperatures and batch sizes; the rate is the per-arch cost per sample-step) and
work = 0 for `min_train`, `min_test` and `measure` (a per-job mean: their cost follows the flow
time and the line grid, not the epoch budget). Calibration: least squares on the jobs that
finished, from the `benchmark:` files they leave (`<cell>/benchmarks/<rule>.tsv`, column `s`,
wall seconds), with work read from the cell's train.json (steps × batch size); at most
`MAX_SAMPLES` cells per (dataset, arch, rule), spread over the sweep. A (dataset, arch) without
finished jobs borrows the fit of its dataset's other archs, else of all finished jobs
("borrowed"); with no finished job at all the model uses generous priors ("uncalibrated").
The model reports its own error on the jobs it was calibrated on.

A cell's four jobs run as one SLURM job (`group: "cell"`), which holds 1 GPU (when
`train.device` is cuda/auto) and `resources.threads` CPUs for their summed wall time:
GPU-hours = Σ seconds / 3600, CPU-hours = Σ seconds × threads / 3600. With
`--group-components cell=K`, K cells share one submission (run one after the other).

Packs (`pack: K`, shiftcurv.sweep.packs): a pack job trains its members' SGD at once, then
runs their later steps (minima, measures, Eq. 4 chains) one after the other in its process. Its
training time is fitted per (dataset, arch) as overhead + rate × the members' summed work, from
the pack records and benchmark files that finished packs left (`pack~*.json`, `.benchmark.tsv`,
the steps' seconds taken off), and without one it is the members' unpacked predictions added
up (an upper bound); its steps are the members' predicted step times. A packed cell's own jobs
only take the staged files over: their benchmarks are no compute times and are left out of the
fits, and the steps' seconds in the pack records stand in for them. Each pack is one more
submission (group "pack").

Fig. 5 runs (not in the cost model: their epochs are fixed, their wall time is `fig5.runtime`)
are one group per stage, `fig5_stage1`, `fig5_stage2` and `fig5_shift`; profiles/slurm packs
K = ⌊MAX_SUBMISSION_MIN / fig5.runtime[stage]⌋ runs of a stage into one submission
(`fig5_group_components`), so a submission asks for at most a day on its first attempt.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from shiftcurv import sweep as sw
from shiftcurv.sweep import packs
from shiftcurv.sweep.temperature import epoch_budget, steps_per_epoch

CELL_RULES = ("train", "min_train", "min_test", "measure")
# the Eq. 4 step (config `eq4`): one job per cell and sampler, in the cell's group; modelled like
# the other cell rules, with its benchmarks in sample_<sampler>.tsv
EQ4_RULE = "sample"
PACK_RULE = "train_pack"  # packed training, one job per pack (shiftcurv.sweep.packs)
MODEL_RULES = (*CELL_RULES, EQ4_RULE)
RECORD = {"train": sw.TRAIN_OUT["record"], "min_train": sw.MIN_OUT["train"]["record"],
          "min_test": sw.MIN_OUT["test"]["record"], "measure": sw.MEASURE_OUT}
UPSTREAM = {"train": (), "min_train": ("train",), "min_test": ("train",),
            "measure": ("train", "min_train", "min_test"),
            EQ4_RULE: ("train", "min_train", "min_test")}
# priors with no finished job anywhere: generous on purpose (a wall time that is too short costs
# a retry; one too long only worse backfill). Seconds per job, and seconds per sample-step.
PRIOR_OVERHEAD_S = {"train": 120.0, "min_train": 300.0, "min_test": 300.0, "measure": 600.0,
                    EQ4_RULE: 1800.0}
PRIOR_RATE_S = 5e-5                 # train: 20 000 sample-steps per second
MAX_SAMPLES = 100                   # calibration cells per (dataset, arch, rule)
# wall-time request of one rule: SAFETY × prediction + MARGIN_S (start-up, file system latency,
# the checkpoint signal 2 min before the end), doubled on every retry, capped per rule.
SAFETY = 1.5
MARGIN_S = 180.0
MIN_RUNTIME_MIN = 5
MAX_RUNTIME_MIN = 24 * 60
# Fig. 5: the longest first-attempt wall time of one grouped submission (K runs, times summed)
MAX_SUBMISSION_MIN = 24 * 60
FIG5_RULES = ("fig5_stage1", "fig5_stage2", "fig5_shift")   # each its own group, same name
FIG5_PACK_RULE = "fig5_pack"  # packed Fig. 5 runs: one submission each (group "pack")


# -- reading what finished jobs left ---------------------------------------------------------
def scan(config: dict, root: str = ".") -> dict[sw.Cell, frozenset[str]]:
    """The files present in every cell directory (one directory listing per cell that exists)."""
    cells = sw.cells(config)
    if not os.path.isdir(os.path.join(root, sw.RESULTS, "runs")):
        return {c: frozenset() for c in cells}
    out = {}
    for c in cells:
        try:
            out[c] = frozenset(os.listdir(os.path.join(root, c.dir)))
        except OSError:
            out[c] = frozenset()
    return out


def to_run(files: frozenset[str], chains: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The cell rules Snakemake will run for a cell with these files: a missing record, or an
    upstream step that runs (existence only; `snakemake -n` also sees changed params/code);
    `sample` once per Eq. 4 chain whose record is missing."""
    todo: list[str] = []
    for rule in CELL_RULES:
        if RECORD[rule] not in files or any(u in todo for u in UPSTREAM[rule]):
            todo.append(rule)
    upstream = any(u in todo for u in UPSTREAM[EQ4_RULE])
    todo += [EQ4_RULE for c in chains if upstream or sw.EQ4_OUT.format(chain=c) not in files]
    return tuple(todo)


def eq4_benchmarks(files: frozenset[str]) -> list[str]:
    """The Eq. 4 records of a cell directory's listing, as their benchmark file names."""
    prefix, suffix = sw.EQ4_OUT.split("{chain}")
    return [f"sample_{f[len(prefix):-len(suffix)]}.tsv" for f in sorted(files)
            if f.startswith(prefix) and f.endswith(suffix)]


def read_benchmark(path: str) -> float | None:
    """Mean wall seconds (`s`) of a Snakemake benchmark TSV (one row per repeat); None when it is
    missing or unreadable."""
    try:
        with open(path) as f:
            lines = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
        col = lines[0].index("s")
        values = [float(row[col]) for row in lines[1:]]
    except (OSError, ValueError, IndexError):
        return None
    values = [v for v in values if math.isfinite(v) and v >= 0]
    return sum(values) / len(values) if values else None


def _record_work(path: str) -> float | None:
    """Sample-steps a finished training did: steps × batch size from its train.json."""
    try:
        with open(path) as f:
            rec = json.load(f)
        return float(rec["steps"]) * float(rec["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _packed(cell_dir: str) -> bool:
    try:
        with open(os.path.join(cell_dir, RECORD["train"])) as f:
            return "pack" in json.load(f)
    except (OSError, ValueError):
        return False


def pack_samples(config: dict, root: str = ".") -> dict[tuple[str, str, str],
                                                        list[tuple[float, float]]]:
    """(summed sample-steps of the cells it trained, wall seconds of its training) of every
    finished pack job of this config's (dataset, arch) pairs, keyed (dataset, arch, PACK_RULE);
    and (0, seconds) of each later step it ran, keyed by the step's rule."""
    out: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for dataset in config["datasets"]:
        for arch in config["archs"]:
            d = os.path.join(root, sw.RESULTS, "packs", dataset, arch)
            try:
                batch_dirs = os.listdir(d)
            except OSError:
                continue
            for b in batch_dirs:
                for name in sorted(os.listdir(os.path.join(d, b))):
                    if not packs.RECORD_NAME.fullmatch(name):
                        continue
                    path = os.path.join(d, b, name)
                    seconds = read_benchmark(path[:-len(".json")] + ".benchmark.tsv")
                    try:
                        with open(path) as f:
                            cells = json.load(f)["cells"]
                        work = sum(float(c.get("work", 0.0)) for c in cells)
                        steps = [(step_rule(name), float(st["seconds"]), st["rc"] == 0)
                                 for c in cells for name, st in c.get("steps", {}).items()]
                    except (OSError, ValueError, KeyError, TypeError, AttributeError):
                        continue
                    for rule, step_seconds, ok in steps:
                        if ok:  # a failed step's time says nothing of the step's cost
                            out.setdefault((dataset, arch, rule), []).append((0.0, step_seconds))
                    if seconds is not None and work > 0:
                        seconds = max(0.0, seconds - sum(t for _, t, _ in steps))
                        out.setdefault((dataset, arch, PACK_RULE), []).append((work, seconds))
    return out


def step_rule(name: str) -> str:
    """The rule of a pack's step name: min_train, min_test, measure; sample_<chain> -> sample."""
    return EQ4_RULE if name.startswith(EQ4_RULE + "_") else name


def pack_steps_seconds(model: CostModel, config: dict, members: list[sw.Cell]) -> float:
    """The members' later steps, run in the pack after training (their predicted times)."""
    sampled = set(sw.eq4_cells(config))
    chains = len(sw.eq4_chains(config))
    return sum(predict_seconds(model, config, c, rule)
               for c in members for rule in CELL_RULES[1:]) + sum(
        chains * predict_seconds(model, config, c, EQ4_RULE) for c in members if c in sampled)


def pack_seconds(model: CostModel, config: dict, members: list[sw.Cell],
                 _cache: dict | None = None) -> float:
    """A pack job's predicted wall time: its training (the fit of finished packs of its
    (dataset, arch) on the members' summed work, else their unpacked train predictions added
    up) and the members' later steps."""
    if not members:
        return 0.0
    f = model.fits.get((members[0].dataset, members[0].arch, PACK_RULE))
    steps = pack_steps_seconds(model, config, members)
    if f is not None:
        return f.seconds(sum(train_work(config, c, _cache) for c in members)) + steps
    return sum(predict_seconds(model, config, c, "train", _cache) for c in members) + steps


def pack_runtime_minutes(model: CostModel, config: dict, members: list[sw.Cell],
                         attempt: int = 1) -> int:
    """The wall time to request for a pack job, as `runtime_minutes` for a cell rule."""
    seconds = SAFETY * pack_seconds(model, config, members) + MARGIN_S
    base = max(MIN_RUNTIME_MIN, math.ceil(seconds / 60))
    return int(min(MAX_RUNTIME_MIN, base * 2 ** (max(1, int(attempt)) - 1)))


# -- the model ----------------------------------------------------------------------------------
@dataclass
class Fit:
    overhead: float          # seconds per job
    rate: float              # seconds per unit of work (train: per sample-step)
    n: int                   # jobs it was fitted on (0 for the prior)
    source: str              # "calibrated", "borrowed" or "prior"

    def seconds(self, work: float) -> float:
        return self.overhead + self.rate * work


def fit(samples: list[tuple[float, float]], linear: bool) -> tuple[float, float]:
    """(overhead, rate) by least squares on (work, seconds) samples, both kept ≥ 0: a line
    through two or more distinct works, a proportional fit for a single work, the mean when the
    work does not vary by design (linear=False)."""
    ys = [s for _, s in samples]
    mean_y = sum(ys) / len(ys)
    if not linear:
        return mean_y, 0.0
    ws = [w for w, _ in samples]
    if len(set(ws)) >= 2:
        mean_w = sum(ws) / len(ws)
        sxx = sum((w - mean_w) ** 2 for w in ws)
        sxy = sum((w - mean_w) * (y - mean_y) for w, y in samples)
        rate = sxy / sxx
        overhead = mean_y - rate * mean_w
        if rate < 0:
            return mean_y, 0.0
        if overhead < 0:
            return 0.0, sum(w * y for w, y in samples) / sum(w * w for w in ws)
        return overhead, rate
    return (0.0, mean_y / ws[0]) if ws[0] > 0 else (mean_y, 0.0)


@dataclass
class CostModel:
    fits: dict[tuple[str, str, str], Fit]
    n_jobs: int = 0                       # finished jobs calibrated on
    errors: list[float] = field(default_factory=list)   # per job |pred − actual| / actual
    total_error: float = 0.0              # Σ predicted / Σ actual − 1 over those jobs

    @property
    def calibrated(self) -> bool:
        return self.n_jobs > 0

    def fit_for(self, dataset: str, arch: str, rule: str) -> Fit:
        return self.fits[(dataset, arch, rule)]

    def source(self, dataset: str, arch: str) -> str:
        """The weakest source among a (dataset, arch)'s four rules."""
        order = ["calibrated", "borrowed", "prior"]
        return max((self.fits[(dataset, arch, r)].source for r in CELL_RULES), key=order.index)

    def describe(self) -> str:
        if not self.calibrated:
            return ("uncalibrated: no finished jobs yet, so the estimate uses generous priors "
                    "(it can be off by 10x; it calibrates itself from the benchmark files of the "
                    "first finished cells)")
        errs = sorted(self.errors)
        median = errs[len(errs) // 2] if len(errs) % 2 else 0.5 * (
            errs[len(errs) // 2 - 1] + errs[len(errs) // 2])
        return (f"calibrated on {self.n_jobs} finished jobs; its error on them: median "
                f"{100 * median:.0f}%, worst {100 * errs[-1]:.0f}% per job, "
                f"{100 * self.total_error:+.0f}% in total")


def train_work(config: dict, cell: sw.Cell, _cache: dict | None = None) -> float:
    """SGD sample-steps of a cell's training: E(T) × ⌊n_train/B⌋ × B (E(T) alone when the
    dataset's size is unknown before building it)."""
    tr = config["train"]
    key = (cell.dataset, cell.temperature, cell.batch_size)
    if _cache is not None and key in _cache:
        return _cache[key]
    epochs = epoch_budget(cell.T, tr["epochs_ref"], tr["temperature_ref"], tr["max_epochs"])
    opts = config["datasets"][cell.dataset]
    n_train = sw.dataset_train_size(opts | {"type": opts.get("type", cell.dataset)})
    work = float(epochs if n_train is None
                 else epochs * steps_per_epoch(n_train, cell.batch_size) * cell.batch_size)
    if _cache is not None:
        _cache[key] = work
    return work


def calibrate(config: dict, root: str = ".",
              state: dict[sw.Cell, frozenset[str]] | None = None) -> CostModel:
    """Fit the model on the benchmark files of the sweep's finished jobs."""
    state = scan(config, root) if state is None else state
    finished: dict[tuple[str, str, str], list[sw.Cell]] = {}
    for cell, files in state.items():
        if "benchmarks" not in files:
            continue
        for rule in CELL_RULES:
            if RECORD[rule] in files:
                finished.setdefault((cell.dataset, cell.arch, rule), []).append(cell)
        if eq4_benchmarks(files):
            finished.setdefault((cell.dataset, cell.arch, EQ4_RULE), []).append(cell)
    samples: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    packed: dict[sw.Cell, bool] = {}
    for key, cells in finished.items():
        rule = key[2]
        if len(cells) > MAX_SAMPLES:  # evenly spread over the sweep (config order)
            step = len(cells) / MAX_SAMPLES
            cells = [cells[int(i * step)] for i in range(MAX_SAMPLES)]
        for cell in cells:
            d = os.path.join(root, cell.dir)
            if cell not in packed:  # read once per cell, not once per rule
                packed[cell] = packs.STAGED["record"] in state[cell] or _packed(d)
            if packed[cell]:
                continue  # its jobs took a pack's results over: the pack records say the time
            if rule == EQ4_RULE:  # one job per sampler: each a sample of the per-job mean
                for name in eq4_benchmarks(state[cell]):
                    seconds = read_benchmark(os.path.join(d, "benchmarks", name))
                    if seconds is not None:
                        samples.setdefault(key, []).append((0.0, seconds))
                continue
            seconds = read_benchmark(os.path.join(d, "benchmarks", f"{rule}.tsv"))
            if seconds is None:
                continue
            work = 0.0
            if rule == "train":
                work = _record_work(os.path.join(d, RECORD["train"]))
                if work is None:
                    work = train_work(config, cell)
            samples.setdefault(key, []).append((work, seconds))

    for key, s in pack_samples(config, root).items():
        samples.setdefault(key, []).extend(s)
    fits: dict[tuple[str, str, str], Fit] = {}
    model = CostModel(fits)
    for key, s in samples.items():
        fits[key] = Fit(*fit(s, key[2] in ("train", PACK_RULE)), n=len(s), source="calibrated")
    for dataset in config["datasets"]:
        for arch in config["archs"]:
            for rule in MODEL_RULES:
                if (dataset, arch, rule) in fits:
                    continue
                pools = ([s for (d, _, r), v in samples.items() if d == dataset and r == rule
                          for s in v],
                         [s for (_, _, r), v in samples.items() if r == rule for s in v])
                pool = next((p for p in pools if p), None)
                if pool:
                    fits[(dataset, arch, rule)] = Fit(*fit(pool, rule == "train"),
                                                      n=len(pool), source="borrowed")
                else:
                    fits[(dataset, arch, rule)] = Fit(
                        PRIOR_OVERHEAD_S[rule], PRIOR_RATE_S if rule == "train" else 0.0,
                        n=0, source="prior")
    # its own error on the jobs it was calibrated on
    pred_total = actual_total = 0.0
    for key, s in samples.items():
        f = fits[key]
        for work, seconds in s:
            pred = f.seconds(work)
            model.errors.append(abs(pred - seconds) / max(seconds, 1e-3))
            pred_total += pred
            actual_total += seconds
    model.n_jobs = len(model.errors)
    model.total_error = pred_total / actual_total - 1 if actual_total > 0 else 0.0
    return model


def predict_seconds(model: CostModel, config: dict, cell: sw.Cell, rule: str,
                    _cache: dict | None = None) -> float:
    f = model.fit_for(cell.dataset, cell.arch, rule)
    return f.seconds(train_work(config, cell, _cache) if rule == "train" else 0.0)


def runtime_minutes(model: CostModel, config: dict, cell: sw.Cell, rule: str,
                    attempt: int = 1) -> int:
    """The wall time to request for a cell rule (SLURM `--time`, minutes): SAFETY × the
    prediction + MARGIN_S, at least MIN_RUNTIME_MIN, doubled on each retry, at most
    MAX_RUNTIME_MIN (a training cut off at the wall time resumes from its checkpoint)."""
    seconds = SAFETY * predict_seconds(model, config, cell, rule) + MARGIN_S
    base = max(MIN_RUNTIME_MIN, math.ceil(seconds / 60))
    return int(min(MAX_RUNTIME_MIN, base * 2 ** (max(1, int(attempt)) - 1)))


# -- the plan -----------------------------------------------------------------------------------
def uses_gpu(config: dict) -> bool:
    return config["train"].get("device", "cpu") in ("cuda", "auto")


@dataclass
class Row:
    dataset: str
    arch: str
    cells: int = 0
    done: int = 0
    remaining: int = 0
    jobs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CELL_RULES, 0))
    submissions: int = 0
    seconds: float = 0.0     # remaining wall seconds of the cell jobs
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    model: str = "prior"


@dataclass
class Plan:
    rows: list[Row]
    total: Row
    other_jobs: dict[str, int]       # prepare_data, gather, plots, synthetic
    submissions: int                 # SLURM submissions of the whole remaining run
    group_components: int
    gpu: bool
    threads: int
    model: CostModel
    # Fig. 5: runs per submission per group, and the submissions of its runs left (+ gather/plots)
    fig5_group_components: dict[str, int] = field(default_factory=dict)
    fig5_submissions: int = 0

    def as_dict(self) -> dict:
        def row(r: Row) -> dict:
            return {k: getattr(r, k) for k in ("dataset", "arch", "cells", "done", "remaining",
                                               "jobs", "submissions", "seconds", "gpu_hours",
                                               "cpu_hours", "model")}
        m = self.model
        return {"rows": [row(r) for r in self.rows], "total": row(self.total),
                "other_jobs": self.other_jobs, "submissions": self.submissions,
                "group_components": self.group_components, "gpu": self.gpu,
                "threads": self.threads,
                "fig5_group_components": self.fig5_group_components,
                "fig5_submissions": self.fig5_submissions,
                "model": {"calibrated": m.calibrated, "jobs": m.n_jobs,
                          "errors": m.errors, "total_error": m.total_error,
                          "description": m.describe()}}


def plan(config: dict, root: str = ".", group_components: int = 1,
         fig5_groups: dict[str, int] | None = None) -> Plan:
    """Cells total / done / remaining, jobs per rule, SLURM submissions after grouping and the
    GPU/CPU-hours left, per dataset × arch, from the config and the results directory.
    `fig5_groups`: Fig. 5 runs per submission per group (default: `fig5_group_components`, what
    profiles/slurm sets for the default wall times)."""
    k = max(1, int(group_components))
    state = scan(config, root)
    model = calibrate(config, root, state)
    samplers = sw.eq4_chains(config)
    sampled = set(sw.eq4_cells(config))
    gpu, threads = uses_gpu(config), int(config["resources"]["threads"])
    rules = MODEL_RULES if samplers else CELL_RULES
    rows = {(d, a): Row(d, a, jobs=dict.fromkeys(rules, 0), model=model.source(d, a))
            for d in config["datasets"] for a in config["archs"]}
    total = Row("total", "", jobs=dict.fromkeys(rules, 0),
                model="calibrated" if model.calibrated else "prior")
    cache: dict = {}
    packed, _ = packs.assign(config, root)  # as the workflow would form them (nothing saved)
    pack_left: dict[str, list[sw.Cell]] = {}
    for cell, files in state.items():
        row = rows[(cell.dataset, cell.arch)]
        row.cells += 1
        todo = to_run(files, samplers if cell in sampled else ())
        if not todo:
            row.done += 1
            continue
        row.remaining += 1
        in_pack = "train" in todo and cell in packed  # its pack job does it all: counted below
        if in_pack:
            pack_left.setdefault(packed[cell], []).append(cell)
        for rule in todo:
            row.jobs[rule] += 1
            if not in_pack:
                row.seconds += predict_seconds(model, config, cell, rule, cache)
    for members in pack_left.values():
        rows[(members[0].dataset, members[0].arch)].seconds += pack_seconds(
            model, config, members, cache)
    for row in rows.values():
        row.submissions = math.ceil(row.remaining / k)
        row.gpu_hours = row.seconds / 3600 if gpu else 0.0
        row.cpu_hours = row.seconds * threads / 3600
        for name in ("cells", "done", "remaining", "seconds", "gpu_hours", "cpu_hours"):
            setattr(total, name, getattr(total, name) + getattr(row, name))
        for rule in rules:
            total.jobs[rule] += row.jobs[rule]
    total.submissions = math.ceil(total.remaining / k)
    from shiftcurv.sweep import fig5

    datasets = [*config["datasets"], *(fig5.catalog(config, "datasets") if fig5.section(config)
                                       else [])]
    data = [d for d in dict.fromkeys(datasets)
            if not os.path.exists(os.path.join(root, sw.DATA_FILE.format(dataset=d)))]
    gather = int(total.remaining > 0 or not os.path.exists(os.path.join(root, "results",
                                                                         "sweep.nc")))
    from shiftcurv.plots.sweep import figure_names  # light (no matplotlib at import)

    plots = int(gather or not all(os.path.exists(os.path.join(root, f))
                                  for f in figure_names(config)))
    synthetic = int(not os.path.exists(os.path.join(root, "results", "synthetic.nc")))
    other = {"prepare_data": len(data), **({PACK_RULE: len(pack_left)} if packed else {}),
             "gather": gather, "plots": plots, "synthetic": synthetic,
             **fig5_jobs_left(config, root)}
    groups = {**fig5_group_components(config), **(fig5_groups or {})}
    groups = {g: max(1, int(groups.get(g, 1))) for g in FIG5_RULES if g in other}
    f5_subs = fig5_submissions(other, groups)
    ungrouped = sum(v for name, v in other.items()
                    if not name.startswith("fig5_") or name == FIG5_PACK_RULE)
    return Plan(list(rows.values()), total, other, total.submissions + ungrouped + f5_subs,
                k, gpu, threads, model, groups, f5_subs)


def fig5_group_components(config: dict) -> dict[str, int]:
    """Fig. 5 runs per SLURM submission per group (`--group-components fig5_stage2=K`): as many as
    fit in MAX_SUBMISSION_MIN at the configured first-attempt wall time (`fig5.runtime`),
    at least 1. Empty without a `fig5` section."""
    from shiftcurv.sweep import fig5

    section = fig5.section(config)
    if section is None:
        return {}
    return {f"fig5_{stage}": max(1, MAX_SUBMISSION_MIN // int(minutes))
            for stage, minutes in section["runtime"].items()}


def fig5_submissions(jobs_left: dict[str, int], groups: dict[str, int]) -> int:
    """SLURM submissions of the Fig. 5 jobs left: ⌈runs / K⌉ per grouped stage (a group job's
    members may come from several seeds; it waits for their stage-1 runs), plus gather/plots."""
    return (sum(math.ceil(jobs_left.get(g, 0) / groups.get(g, 1)) for g in FIG5_RULES)
            + jobs_left.get("fig5_gather", 0) + jobs_left.get("fig5_plots", 0))


def fig5_jobs_left(config: dict, root: str) -> dict[str, int]:
    """Fig. 5 runs without a record, per rule (not in the cost model: their epochs are fixed by
    the config, not by T; `fig5_submissions` counts their SLURM submissions after grouping)."""
    from shiftcurv.sweep import fig5

    if fig5.section(config) is None:
        return {}
    left = {"fig5_stage1": 0, "fig5_stage2": 0, "fig5_shift": 0}
    packed, _ = packs.assign_fig5(config, root)  # as the workflow would form them
    pack_left = set()
    for path in fig5.record_files(config):
        if not os.path.exists(os.path.join(root, path)):
            left["fig5_" + path.split("/")[4]] += 1
            pack_left.add(packed.get(os.path.dirname(path)))
    pack_left.discard(None)
    stale = sum(left.values()) > 0 or not os.path.exists(os.path.join(root, fig5.NC))
    return {**left, **({FIG5_PACK_RULE: len(pack_left)} if packed else {}),
            "fig5_gather": int(stale),
            "fig5_plots": int(stale or not all(os.path.exists(os.path.join(root, f))
                                               for f in fig5.figure_files(config)))}


def _hours(h: float) -> str:
    if h >= 100:
        return f"{h:,.0f}"
    return f"{h:.1f}" if h >= 1 else (f"{h:.2g}" if h else "0")


def format_plan(p: Plan) -> str:
    """The table `shiftcurv plan` prints."""
    rules = list(p.total.jobs)
    head = ["dataset", "arch", "cells", "done", "left", *rules, "submissions",
            "GPU-h left", "CPU-h left", "cost model"]
    body = []
    for r in [*p.rows, p.total]:
        body.append([r.dataset, r.arch, str(r.cells), str(r.done), str(r.remaining),
                     *(str(r.jobs[x]) for x in rules), str(r.submissions),
                     _hours(r.gpu_hours), _hours(r.cpu_hours),
                     r.model if r is not p.total else ""])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 or i == len(head) - 1 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in [head, *body]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    o = p.other_jobs
    per_job = (f"{p.group_components} cells per submission (--group-components "
               f"cell={p.group_components})" if p.group_components > 1 else
               "one submission per cell (group 'cell')")
    fig5 = ""
    if p.fig5_group_components:
        runs = sum(o.get(g, 0) for g in FIG5_RULES)
        packing = ", ".join(f"{g}={n}" for g, n in p.fig5_group_components.items())
        fig5 = (f"Fig. 5: {runs} runs left in {p.fig5_submissions} SLURM submissions "
                f"(runs per submission: --group-components {packing}; incl. gather/plots)")
    lines += [
        "",
        "other jobs: " + ", ".join(f"{k} {v}" for k, v in o.items()),
        *([fig5] if fig5 else []),
        f"SLURM submissions: {p.submissions} ({per_job}; plus the other jobs)",
        f"each cell job holds {'1 GPU and ' if p.gpu else ''}{p.threads} CPU(s) "
        f"(resources.threads); GPU-h/CPU-h are wall time x what the job holds",
        f"cost model: {p.model.describe()}",
        "existence of outputs only: `snakemake -n` also reruns jobs whose params or code "
        "changed",
    ]
    return "\n".join(lines)


def summary_line(p: Plan) -> str:
    """One line: what the workflow's onstart prints."""
    t = p.total
    cost = (f"~{_hours(t.gpu_hours)} GPU-h, {_hours(t.cpu_hours)} CPU-h left" if p.gpu
            else f"~{_hours(t.cpu_hours)} CPU-h left")
    model = (f"cost model calibrated on {p.model.n_jobs} jobs, "
             f"{100 * p.model.total_error:+.0f}% on them" if p.model.calibrated
             else "cost model uncalibrated")
    return (f"shiftcurv plan: {t.done}/{t.cells} cells done, {t.remaining} to run "
            f"({sum(t.jobs.values())} cell jobs, {p.submissions} SLURM submissions); "
            f"{cost} ({model})")
