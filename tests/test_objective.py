"""The flat-parameter objective against dense autograd on a tiny MLP (f64)."""

import pytest
import torch
from conftest import tiny_mlp

from shiftcurv.landscape.objective import Objective


def dense(obj):
    def U(theta):
        out = torch.func.functional_call(obj.model, obj.unflatten(theta), (obj.x,))
        return torch.nn.functional.cross_entropy(out, obj.y) + 0.5 * obj.l2 * theta.dot(theta)

    return U


@pytest.mark.parametrize("chunk", [7, 100, 10_000])
def test_value_grad_hvp_match_dense_for_any_chunking(teacher, chunk):
    x, y = teacher.tensors("train")
    obj = Objective(tiny_mlp(teacher), x, y, l2=1e-3, chunk_size=chunk, dtype=torch.float64)
    theta = obj.theta_of()
    U = dense(obj)
    value, grad = obj.value_and_grad(theta)
    assert value == pytest.approx(float(U(theta)), rel=1e-13)
    assert torch.allclose(grad, torch.func.grad(U)(theta), rtol=1e-11, atol=1e-14)
    H = torch.func.hessian(U)(theta)
    v = torch.randn_like(theta)
    assert torch.allclose(obj.hvp(theta, v), H @ v, rtol=1e-10, atol=1e-13)
    assert obj.directional_curvature(theta, v) == pytest.approx(float(v @ H @ v / (v @ v)),
                                                                rel=1e-10)


def test_l2_is_alpha_over_two_norm_squared(teacher):
    x, y = teacher.tensors("train")
    plain = Objective(tiny_mlp(teacher), x, y, l2=0.0, dtype=torch.float64)
    reg = Objective(tiny_mlp(teacher), x, y, l2=0.1, dtype=torch.float64)
    theta = plain.theta_of()
    (v0, g0), (v1, g1) = plain.value_and_grad(theta), reg.value_and_grad(theta)
    assert v1 - v0 == pytest.approx(0.05 * float(theta @ theta))
    assert torch.allclose(g1 - g0, 0.1 * theta)
    loss, acc = reg.loss_and_accuracy(theta)  # the evaluated loss carries no L2
    assert loss == pytest.approx(v0) and 0 <= acc <= 1


def test_batch_norm_is_evaluated_in_eval_mode(teacher):
    x, y = teacher.tensors("train", dtype=torch.float64)
    model = tiny_mlp(teacher, batch_norm=True).double()
    with torch.no_grad():  # running statistics away from the batch's, so the modes differ
        model(x[:32] * 3 + 1)
    obj = Objective(model, x, y, dtype=torch.float64)
    value = obj.value_and_grad(obj.theta_of())[0]
    eval_loss = float(torch.nn.functional.cross_entropy(model.eval()(x), y))
    train_loss = float(torch.nn.functional.cross_entropy(model.train()(x), y))
    assert value == pytest.approx(eval_loss, rel=1e-12)
    assert abs(value - train_loss) > 1e-3
    assert not obj.model.training


def test_chunk_and_sample_functions_add_up_to_the_objective(teacher):
    """`loss_sum` over `chunks` (all samples, or an index) and `sample_loss` per sample are the
    functions the Hessian operator and the sharpness measures differentiate: they must add up to
    N·U(θ) of the full-data passes."""
    x, y = teacher.tensors("train")
    obj = Objective(tiny_mlp(teacher), x, y, l2=0.1, chunk_size=37, dtype=torch.float64)
    theta = obj.theta_of()
    loss, _ = obj.loss_and_accuracy(theta)
    chunks = list(obj.chunks())
    assert [len(c[1]) for c in chunks] == [37] * 6 + [34]
    total = sum(float(obj.loss_sum(theta, xc, yc)) for xc, yc in chunks)
    assert total / obj.n == pytest.approx(loss, rel=1e-13)
    per_sample = torch.func.vmap(obj.sample_loss, in_dims=(None, 0, 0))(theta, obj.x, obj.y)
    assert float(per_sample.mean()) == pytest.approx(loss, rel=1e-13)
    index = torch.tensor([5, 3, 200, 17])
    (xi, yi), = obj.chunks(10, index)
    assert torch.equal(xi, obj.x[index]) and torch.equal(yi, obj.y[index])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_in_dtype_is_the_objective_built_in_that_dtype(teacher, batch_norm):
    """`in_dtype` (a view: x and buffers cast, the model shared) computes what an Objective built
    in that dtype (a cast copy of the model) computes, bit for bit; its own dtype is itself."""
    x, y = teacher.tensors("train", dtype=torch.float64)
    model = tiny_mlp(teacher, batch_norm=batch_norm).double()
    with torch.no_grad():
        model(x[:32] * 3 + 1)  # running statistics that matter
    obj = Objective(model, x, y, l2=1e-3, chunk_size=100)
    assert obj.in_dtype(None) is obj and obj.in_dtype(torch.float64) is obj
    view = obj.in_dtype(torch.float32)
    built = Objective(model, x, y, l2=1e-3, chunk_size=100, dtype=torch.float32)
    assert view.dtype == view.x.dtype == torch.float32 and view.model is obj.model
    assert all(b.dtype == built.buffers[k].dtype for k, b in view.buffers.items())
    theta = view.cast(obj.theta_of())
    assert theta.dtype == torch.float32 and torch.equal(theta, built.theta_of())
    (v1, g1), (v2, g2) = view.value_and_grad(theta), built.value_and_grad(theta)
    assert v1 == v2 and torch.equal(g1, g2)
    v = torch.randn_like(theta)
    assert torch.equal(view.hvp(theta, v), built.hvp(theta, v))
    assert view.loss_and_accuracy(theta) == built.loss_and_accuracy(theta)
    assert obj.evaluations == {"value": 1, "grad": 1, "hvp": 1}  # counted with the parent
    assert obj.x.dtype == torch.float64  # the parent is untouched
