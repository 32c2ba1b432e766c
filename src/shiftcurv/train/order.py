"""The minibatch order of training: a pure function of (seed, epoch), in a module without
Lightning, so that the Eq. 4 chain (`shiftcurv.eq4.chain`) continues training's order without
paying `import pytorch_lightning` (about 3.5 s here)."""

from __future__ import annotations

import torch

from shiftcurv.sweep.temperature import epoch_seed


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The permutation of the n training samples in epoch `epoch` of the cell seeded `seed`."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g)
