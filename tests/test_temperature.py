"""Temperature, learning rate, epoch budget and canonical cell names."""

import pytest

from shiftcurv.sweep import format_temperature
from shiftcurv.sweep.temperature import epoch_budget, epoch_seed, learning_rate, steps_per_epoch


def test_lr_is_temperature_times_batch_size():
    assert learning_rate(5e-5, 100) == pytest.approx(5e-3)
    assert learning_rate(1e-3, 32) == pytest.approx(0.032)


def test_epoch_budget_keeps_E_times_T_constant_and_is_capped():
    # paper: 400 epochs at T_ref = 5e-5
    assert epoch_budget(5e-5, 400, 5e-5, 10_000) == 400
    assert epoch_budget(1e-4, 400, 5e-5, 10_000) == 200
    assert epoch_budget(3e-4, 400, 5e-5, 10_000) == 67  # ceil(66.67)
    assert epoch_budget(1e-5, 400, 5e-5, 1000) == 1000  # 2000, capped
    assert epoch_budget(1e-5, 400, 5e-5, 400) == 400
    with pytest.raises(ValueError):
        epoch_budget(0.0, 400, 5e-5, 400)


def test_steps_drop_the_last_partial_batch():
    assert steps_per_epoch(4000, 100) == 40 and steps_per_epoch(4050, 100) == 40


@pytest.mark.parametrize("spellings", [("1e-4", 0.0001, 1.0e-04, "1.0E-4"),
                                       (2.5e-5, "0.000025", 25e-6)])
def test_equivalent_spellings_are_one_cell(spellings):
    assert len({format_temperature(t) for t in spellings}) == 1


def test_canonical_format_reads_back_to_the_same_float():
    for t in (1e-4, 2.5e-5, 0.3, 1.2345e-7, 5e-05):
        assert float(format_temperature(t)) == t
    assert format_temperature(1e-4) == "1e-04"


def test_batch_order_seed_depends_on_seed_and_epoch():
    assert epoch_seed(0, 1) == epoch_seed(0, 1)
    assert len({epoch_seed(s, e) for s in range(3) for e in range(3)}) == 9
