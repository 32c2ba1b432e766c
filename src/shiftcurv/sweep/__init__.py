"""The sweep, torch-free (the Snakefile imports it at parse time): cells and their paths
(`cells`), each step's settings (`settings`), the SGD temperature and epoch budget
(`temperature`), the Fig. 5 catalogue (`fig5`), the compute plan and cost model (`cost`) and
where every cell stands (`status`).

May import: numpy, the standard library and `shiftcurv.sweep.*`, `shiftcurv.plots.sweep` (figure
names only); never torch, never `shiftcurv.config` (the config checks import the sweep).
The names most callers want are here: `from shiftcurv import sweep as sw; sw.cells(config)`.
"""

from shiftcurv.sweep.cells import (
    DATA_FILE,
    EQ4_OUT,
    MEASURE_OUT,
    MIN_OUT,
    NAME_RE,
    RESULTS,
    TRAIN_OUT,
    Cell,
    cells,
    config_hash,
    dataset_test_size,
    dataset_train_size,
    format_temperature,
)
from shiftcurv.sweep.settings import (
    as_json,
    capped_lines,
    capped_temperatures,
    dataset_settings,
    eq4_cells,
    eq4_chain_name,
    eq4_chains,
    eq4_ladder,
    eq4_samplers,
    eq4_settings,
    flow_time,
    measure_settings,
    minimize_settings,
    paper_batch_size,
    parse_eq4_chain,
    split_size,
    train_settings,
)

__all__ = ["DATA_FILE", "EQ4_OUT", "MEASURE_OUT", "MIN_OUT", "NAME_RE", "RESULTS", "TRAIN_OUT",
           "Cell", "as_json", "capped_lines", "capped_temperatures", "cells", "config_hash",
           "dataset_settings", "dataset_test_size", "dataset_train_size", "eq4_cells",
           "eq4_chain_name", "eq4_chains", "eq4_ladder", "eq4_samplers", "eq4_settings",
           "flow_time", "parse_eq4_chain",
           "format_temperature", "measure_settings", "minimize_settings", "paper_batch_size",
           "split_size", "train_settings"]
