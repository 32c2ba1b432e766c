"""Train/test splits for the paper's shift experiments (Fig. 5 right, Appendix G.1).

*Shuffle*: pool the train and test sets and split them again at random, with the default split's
sizes. If the default split carried a distribution shift, a random split would remove it and the
test loss would fall. *Sample size*: draw `sample_size` samples from the pool and split them in the
default split's proportion. If the train/test shift comes from finite sampling, smaller samples
make it larger and the test loss rises.

Inputs are used as stored: datasets normalised with the default train split's statistics
(CIFAR-10) keep them, which shifts each new split's statistics by O(1/sqrt(n)) only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from shiftcurv import ShiftcurvError
from shiftcurv.data import Dataset


def pooled(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Train then test samples as one pool (inputs, labels)."""
    return (np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test]))


def _split(ds: Dataset, x: np.ndarray, y: np.ndarray, n_train: int, meta: dict) -> Dataset:
    return replace(ds, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                   y_test=y[n_train:], meta={**ds.meta, **meta})


def reshuffled(ds: Dataset, shuffle_seed: int) -> Dataset:
    """The pool split at random (seeded by `shuffle_seed`) into sets of the default sizes."""
    x, y = pooled(ds)
    order = np.random.default_rng([int(shuffle_seed), 0x5EED]).permutation(len(y))
    return _split(ds, x[order], y[order], ds.n_train, {"shuffle_seed": int(shuffle_seed)})


def subsampled(ds: Dataset, sample_size: int, sample_seed: int) -> Dataset:
    """`sample_size` samples drawn from the pool without replacement (seeded), split
    proportionally: round(sample_size · n_train / (n_train + n_test)) of them for training."""
    x, y = pooled(ds)
    if not 2 <= sample_size <= len(y):
        raise ShiftcurvError(f"sample_size {sample_size} is outside 2..{len(y)} (the pooled "
                             f"train and test sets of {ds.name})")
    n_train = round(sample_size * ds.n_train / len(y))
    n_train = min(max(n_train, 1), sample_size - 1)
    pick = np.random.default_rng([int(sample_seed), 0xC0DE]).choice(len(y), sample_size,
                                                                  replace=False)
    return _split(ds, x[pick], y[pick], n_train,
                  {"sample_size": int(sample_size), "sample_seed": int(sample_seed)})


def apply(ds: Dataset, split: dict | None) -> Dataset:
    """The split a run's settings ask for: {} (default), {"shuffle_seed": k}, or
    {"sample_size": n, "sample_seed": k}."""
    split = dict(split or {})
    if not split:
        return ds
    if set(split) == {"shuffle_seed"}:
        return reshuffled(ds, split["shuffle_seed"])
    if set(split) == {"sample_size", "sample_seed"}:
        return subsampled(ds, split["sample_size"], split["sample_seed"])
    raise ShiftcurvError(f"unknown split {split}: expected {{}}, {{shuffle_seed}} or "
                         f"{{sample_size, sample_seed}}")
