# Packs (`pack: K` in the config, shiftcurv.sweep.packs): the cells whose training outputs are
# missing when the DAG is built go K at a time to one `train_pack` job, which trains them and
# runs their later steps, staged in their own directories; each of a cell's jobs then takes its
# staged result over (shiftcurv.commands._staging). Fig. 5 runs pack the same way (fig5.smk).
# A pack is recorded once, in results/packs/index.json, by the process that plans the run, so
# adding cells forms new packs and never touches a finished one. With `pack: 1` or none, every
# cell's jobs run as plain rules.
import sys

from shiftcurv.sweep import packs  # noqa: E402  (light: no torch)


def dry_run():
    """`-n` / `--dry-run` on the command line (Snakemake knows it only after parsing)."""
    return any(
        a in ("--dry-run", "--dryrun")
        or (a[:1] == "-" and a[1:2] != "-" and a[1:].isalpha() and "n" in a)
        for a in sys.argv[1:]
    )


PACK_OF, _new_packs = packs.assign(config)
FIG5_PACK_OF, _new_fig5_packs = packs.assign_fig5(config)
if (_new_packs or _new_fig5_packs) and not (
    workflow.remote_exec or workflow.subprocess_exec or dry_run()
):
    packs.save_index({**PACK_OF, **FIG5_PACK_OF})


def pack_record_of(wildcards):
    """A packed cell's pack record (ancient: a pack rerun for new members never re-dates the
    finished ones), nothing for an unpacked cell (its inputs stay what they were)."""
    record = PACK_OF.get(cell_of(wildcards))
    return [ancient(record)] if record else []


PACK = "results/packs/{dataset}/{arch}/B~{B}/pack~{pack}"
FIG5_PACK = "results/packs/fig5/{dataset}/{arch}/{stage}/pack~{pack}"
FIG5_STAGE2_PACK = "results/packs/fig5/{dataset}/{arch}/stage2/B~{B}/pack~{pack}"


def fig5_pack_record_of(run_dir):
    """A Fig. 5 rule's pack record (ancient, as for cells), from its run directory pattern."""

    def record(wildcards):
        r = FIG5_PACK_OF.get(run_dir.format(**wildcards))
        return [ancient(r)] if r else []

    return record


FIG5_MEMBERS = packs.fig5_by_record(config, FIG5_PACK_OF)  # one pass, not one per pack


def fig5_pack_runs(pattern):
    """The runs of the Fig. 5 pack whose record `pattern` names (FIG5_PACK, FIG5_STAGE2_PACK)."""
    return lambda wildcards: FIG5_MEMBERS.get(pattern.format(**wildcards) + ".json", [])


def fig5_pack_runtime(pattern):
    """Minutes (SLURM --time): the runs' `fig5.runtime` of their stage, summed (the pack runs
    them one after the other, or vectorized, faster), at most a day, doubled on each retry."""

    def runtime(wildcards, attempt):
        runs = fig5_pack_runs(pattern)(wildcards)
        minutes = sum(config["fig5"]["runtime"][r["stage"]] for r in runs)
        return min(24 * 60, minutes * 2 ** (attempt - 1))

    return runtime


PACK_MEMBERS = packs.by_record(PACK_OF)  # one pass over the cells, not one per pack


def pack_members(wildcards):
    record = PACK.format(**wildcards) + ".json"
    return packs.cells_argument(config, PACK_OF, record, PACK_MEMBERS)


def pack_runtime(wildcards, attempt):
    """Minutes (SLURM --time): the cost model's prediction for the pack (cost.pack_seconds),
    doubled on each retry."""
    members = PACK_MEMBERS.get(PACK.format(**wildcards) + ".json", [])
    return cost.pack_runtime_minutes(cost_model(), config, members, attempt)


def write_pack_spec(record, cells):
    """`cells` (JSON text) to <pack>.cells.json, the pack job's --cells (--steps) @FILE."""
    spec = record[: -len(".json")] + ".cells.json"
    with open(spec, "w") as f:
        f.write(cells)
    return spec
