"""SGD temperature and the epoch budget (paper Section 3, Appendix G). No torch here: the
workflow and the planner import this at parse time.

Temperature T = η / B (learning rate over batch size), so a cell at (T, B) trains with η = T·B.
The epoch budget keeps E·T constant: E = min(E_max, ceil(E_ref · T_ref / T)) (paper: E_ref = 400
epochs at T_ref = 5e-5), so every temperature gets the same "amount of diffusion".
"""

from __future__ import annotations

import math

import numpy as np


def learning_rate(temperature: float, batch_size: int) -> float:
    """η = T·B."""
    return float(temperature) * int(batch_size)


def epoch_budget(temperature: float, epochs_ref: float, temperature_ref: float,
                 max_epochs: int | None = None) -> int:
    """E = min(E_max, ceil(E_ref·T_ref/T)), so that E·T stays E_ref·T_ref (paper App. G: 400 epochs
    at T_ref = 5e-5); rounding guards ceil against 400.00000000001. max_epochs None: the budget
    the E·T rule asks, uncapped (to tell a capped cell).

    >>> [epoch_budget(t, 400, 5e-5, 800) for t in (2.5e-5, 5e-5, 1e-4, 3e-4)]  # 400·5e-5/T
    [800, 400, 200, 67]
    >>> epoch_budget(2.5e-5, 400, 5e-5, 400)  # capped by max_epochs: E·T falls short
    400
    >>> epoch_budget(2.5e-5, 400, 5e-5)
    800
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    epochs = math.ceil(round(epochs_ref * temperature_ref / temperature, 9))
    return int(epochs if max_epochs is None else min(max_epochs, epochs))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Minibatches per epoch with drop_last (paper: TRAIN_DROP_LAST = True)."""
    return n_train // batch_size


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for the minibatch permutation of (seed, epoch): the order of
    batches is a pure function of the cell and the epoch, so a resumed run sees the same batches."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))
