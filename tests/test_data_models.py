"""Datasets and models: shapes, counts, the BN switch, and one-line errors for bad input."""

import numpy as np
import pytest
import torch

from shiftcurv import ShiftcurvError, data, models


def test_unknown_dataset_names_it_and_lists_the_known():
    with pytest.raises(ShiftcurvError) as e:
        data.build("cifar100")
    msg = str(e.value)
    assert "'cifar100'" in msg and "gaussian-teacher, mnist1d" in msg and "\n" not in msg


def test_missing_and_truncated_files_are_named(tmp_path, teacher):
    with pytest.raises(ShiftcurvError, match="dataset file not found: .*nope.npz"):
        data.load(tmp_path / "nope.npz")
    path = tmp_path / "d.npz"
    data.save(teacher, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ShiftcurvError, match="truncated or unreadable: .*d.npz"):
        data.load(path)


def test_round_trip_keeps_the_split(tmp_path, teacher):
    path = tmp_path / "d.npz"
    data.save(teacher, path)
    back = data.load(path)
    assert back.name == "gaussian-teacher" and back.n_classes == 3
    assert np.array_equal(back.y_test, teacher.y_test)
    assert back.x_train.dtype == np.float32 and back.meta["n_train"] == 256


def test_mnist1d_is_built_offline_and_leaves_numpy_rng_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    ds = data.build("mnist1d")
    assert np.array_equal(np.random.get_state()[1], before)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert set(np.unique(ds.y_train)) == set(range(10))


def test_teacher_train_and_test_differ_but_are_reproducible():
    a, b = data.build("gaussian-teacher", seed=1), data.build("gaussian-teacher", seed=1)
    assert np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train[:10], a.x_test[:10])


@pytest.mark.parametrize("spec,count", [
    ({"type": "mlp", "widths": [100, 100]}, 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10),
    ({"type": "cnn1d", "channels": [16, 16, 16]},
     (1 * 16 * 3 + 16) + 2 * (16 * 16 * 3 + 16) + (16 * 5 * 10 + 10)),
])
def test_parameter_counts(spec, count):
    model = models.build(spec, (40,), 10)
    assert models.n_params(model) == count
    assert model(torch.zeros(5, 40)).shape == (5, 10)


@pytest.mark.parametrize("kind", ["mlp", "cnn1d"])
def test_batch_norm_switch(kind):
    def norms(bn):
        m = models.build({"type": kind, "batch_norm": bn}, (40,), 10)
        return [x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]

    assert norms(False) == [] and len(norms(True)) >= 2


def test_bad_architectures_are_one_line_errors():
    with pytest.raises(ShiftcurvError, match="unknown architecture type 'resnet'; known: cnn1d"):
        models.build({"type": "resnet"}, (40,), 10)
    with pytest.raises(ShiftcurvError, match="bad options for architecture 'mlp'"):
        models.build({"type": "mlp", "depth": 3}, (40,), 10)
