"""Datasets: a small registry of in-memory classification sets with a fixed train/test split.

A dataset is built once per sweep by `prepare` into an `.npz` file (no pickle) that every later
step loads in milliseconds with `load`. Inputs are stored as float32, labels as int64.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shiftcurv import ShiftcurvError
from shiftcurv.io import atomic_path


@dataclass
class Dataset:
    """Train and test arrays (numpy; convert with `tensors()`), plus what built them."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    meta: dict = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    def tensors(self, split: str, device=None, dtype=None):
        """(x, y) of `split` ('train' or 'test') as torch tensors."""
        import torch

        x, y = {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test)}[split]
        x = torch.as_tensor(x, device=device)
        return (x.to(dtype) if dtype is not None else x), torch.as_tensor(y, device=device)


def _mnist1d(seed: int = 42, num_samples: int = 5000, train_split: float = 0.8) -> Dataset:
    """MNIST-1D (Greydanus), generated offline; defaults are the package's own (4000/1000, 40)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.num_samples, args.train_split = int(seed), int(num_samples), float(train_split)
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG: leave it as it was
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return Dataset("mnist1d", d["x"], d["y"], d["x_test"], d["y_test"], n_classes=10,
                   meta={"seed": seed, "num_samples": num_samples, "train_split": train_split})


def _gaussian_teacher(seed: int = 0, n_train: int = 512, n_test: int = 256, dim: int = 8,
                      n_classes: int = 3, label_noise: float = 0.5) -> Dataset:
    """Gaussian inputs labelled by a random one-hidden-layer tanh teacher, with Gumbel label
    noise of scale `label_noise` so that train and test minima differ. Tiny: for tests."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(dim, 16)) / np.sqrt(dim)
    w2 = rng.normal(size=(16, n_classes)) * 2.0
    n = n_train + n_test
    x = rng.normal(size=(n, dim))
    logits = np.tanh(x @ w1) @ w2 + label_noise * rng.gumbel(size=(n, n_classes))
    y = logits.argmax(axis=1)
    return Dataset("gaussian-teacher", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                   n_classes=n_classes,
                   meta={"seed": seed, "n_train": n_train, "n_test": n_test, "dim": dim,
                         "label_noise": label_noise})


def _cifar10(root: str = "", train_samples: int = 50000, test_samples: int = 10000, seed: int = 0,
             normalise: bool = True) -> Dataset:
    """CIFAR-10 read from the user's local copy (compute nodes are offline: never downloaded).
    A seeded random subset of `train_samples` / `test_samples` images (the paper's
    TRAIN_SAMPLE_COUNT; nested: a smaller count keeps a subset of a larger one's images), scaled
    to [0, 1] and, with `normalise`, standardised per channel with the training subset's own
    mean and std (the test set reuses them). No augmentation: the loss landscape must be fixed."""
    from shiftcurv.data import cifar

    if not root:
        raise ShiftcurvError("datasets.cifar10 needs `root:` (the extracted cifar-10-batches-bin/ "
                             "or cifar-10-batches-py/ folder, or the folder holding it); it is "
                             "never downloaded")
    fmt, directory, _ = cifar.find_cifar10(root)
    x_train, y_train, x_test, y_test = cifar.read_cifar10(directory)
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)  # test subset not tied to train's
    picked = []
    for split, x, y, k, rng in (("train", x_train, y_train, train_samples, train_rng),
                                ("test", x_test, y_test, test_samples, test_rng)):
        if not 1 <= k <= len(y):
            raise ShiftcurvError(f"datasets.cifar10: {split}_samples={k} but {directory} holds "
                                 f"{len(y)} {split} images (ask for 1 to {len(y)})")
        idx = np.sort(rng.permutation(len(y))[:k]) if k < len(y) else slice(None)
        picked.append((x[idx], y[idx]))
    (x_train, y_train), (x_test, y_test) = picked
    mean, std = cifar.channel_stats(x_train) if normalise else ((0.0,) * 3, (1.0,) * 3)
    meta = {"root": str(root), "format": fmt, "directory": str(directory.resolve()),
            "train_samples": len(y_train), "test_samples": len(y_test), "seed": seed,
            "normalise": normalise, "mean": list(mean), "std": list(std)}
    return Dataset("cifar10", cifar.scale(x_train, mean, std), y_train,
                   cifar.scale(x_test, mean, std), y_test, n_classes=10, meta=meta)


BUILDERS: dict[str, Callable[..., Dataset]] = {
    "mnist1d": _mnist1d,
    "gaussian-teacher": _gaussian_teacher,
    "cifar10": _cifar10,
}


def known() -> str:
    return ", ".join(sorted(BUILDERS))


def build(name: str, **options) -> Dataset:
    if name not in BUILDERS:
        raise ShiftcurvError(f"unknown dataset {name!r}; known datasets: {known()}")
    try:
        return BUILDERS[name](**options)
    except TypeError as e:
        raise ShiftcurvError(f"bad options for dataset {name!r}: {e}") from None


def save(ds: Dataset, path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, x_train=ds.x_train.astype(np.float32), y_train=ds.y_train.astype(np.int64),
                 x_test=ds.x_test.astype(np.float32), y_test=ds.y_test.astype(np.int64),
                 header=np.array(json.dumps({"name": ds.name, "n_classes": ds.n_classes,
                                             "meta": ds.meta})))


def prepare(name: str, path: str | Path, **options) -> Dataset:
    """Build dataset `name` and write it to `path` (.npz)."""
    ds = build(name, **options)
    save(ds, path)
    return ds


def load(path: str | Path) -> Dataset:
    """Load a prepared dataset; a missing or damaged file fails with one line naming it."""
    path = Path(path)
    if not path.exists():
        raise ShiftcurvError(f"dataset file not found: {path} (build it with `shiftcurv "
                             f"prepare-data`; known datasets: {known()})")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            return Dataset(header["name"], z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                           n_classes=int(header["n_classes"]), meta=header.get("meta", {}))
    except Exception as e:  # zipfile/ValueError/KeyError/EOFError: all mean "not a good file"
        raise ShiftcurvError(f"dataset file is truncated or unreadable: {path} ({e})") from None
