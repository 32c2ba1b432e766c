"""SGD at temperature T through Lightning: determinism, divergence, resume, bare-loop parity."""

import copy

import torch
import torch.nn.functional as F
from conftest import tiny_mlp

from shiftcurv.train.sgd import TrainSettings, TrainState, epoch_permutation, fit


def settings(**kw):
    base = dict(temperature=2e-3, batch_size=32, epochs_ref=6, temperature_ref=2e-3,
                max_epochs=6, checkpoint_every=0)
    return TrainSettings(**(base | kw))


def train(ds, seed=0, **kw):
    x, y = ds.tensors("train", dtype=torch.float32)
    model = tiny_mlp(ds, seed=seed)
    state = fit(model, x, y, settings(seed=seed, **kw))
    return model, state


def params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_same_cell_gives_bit_identical_weights(teacher):
    (a, sa), (b, _) = train(teacher), train(teacher)
    assert torch.equal(params(a), params(b))
    assert sa.status == "ok" and sa.epoch == 6 and len(sa.history["loss"]) == 6


def test_different_seed_gives_different_weights(teacher):
    assert not torch.equal(params(train(teacher, seed=0)[0]), params(train(teacher, seed=1)[0]))


def test_lightning_loop_equals_a_bare_sgd_loop(teacher):
    model, _ = train(teacher)
    x, y = teacher.tensors("train", dtype=torch.float32)
    bare = tiny_mlp(teacher)
    s = settings()
    opt = torch.optim.SGD(bare.parameters(), lr=s.lr, weight_decay=s.l2)
    for epoch in range(s.epochs):
        perm = epoch_permutation(s.seed, epoch, len(y))
        for idx in perm[: (len(y) // 32) * 32].view(-1, 32):
            opt.zero_grad()
            F.cross_entropy(bare(x[idx]), y[idx]).backward()
            opt.step()
    assert torch.equal(params(model), params(bare))


def test_absurd_temperature_ends_diverged_without_exception(teacher):
    _, state = train(teacher, temperature=1e4)
    assert state.status == "diverged"
    assert state.epoch < 6  # stopped early


def test_resume_from_a_checkpoint_is_bit_identical(teacher):
    x, y = teacher.tensors("train", dtype=torch.float32)
    saved = {}

    def checkpoint(module):
        saved[module.state.epoch] = (copy.deepcopy(module.model.state_dict()),
                                     copy.deepcopy(module.state))

    full = tiny_mlp(teacher)
    fit(full, x, y, settings(checkpoint_every=2), checkpoint=checkpoint)
    assert sorted(saved) == [2, 4]  # not at the last epoch: the final weights supersede it
    weights, state = saved[4]
    resumed = tiny_mlp(teacher, seed=99)  # a different init, overwritten by the checkpoint
    resumed.load_state_dict(weights)
    final = fit(resumed, x, y, settings(checkpoint_every=2), state=state)
    assert final.epoch == 6 and final.status == "ok"
    assert torch.equal(params(full), params(resumed))


def test_a_finished_state_does_no_more_work(teacher):
    x, y = teacher.tensors("train", dtype=torch.float32)
    model = tiny_mlp(teacher)
    before = params(model)
    state = fit(model, x, y, settings(), state=TrainState(epoch=6))
    assert state.status == "ok" and torch.equal(before, params(model))
