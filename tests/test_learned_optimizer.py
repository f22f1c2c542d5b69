"""The learned optimiser (Andrychowicz et al., 2016), its problem families and the hand-designed baselines."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn

from metalearn_lite.algorithms.learned_optimizer import (
    HAND_DESIGNED,
    LearnedOptimizer,
    detach_state,
    hand_designed,
    meta_train,
    optimize,
    tune_learning_rate,
    unroll,
)
from metalearn_lite.algorithms.lstm import lstm_cell, lstm_gates, preprocess_gradient
from metalearn_lite.datasets.quadratics import MLPProblems, QuadraticBatch, QuadraticProblems

# ----------------------------------------------------------------------------- preprocessing


def test_preprocessing_matches_a_hand_computation_on_both_branches():
    e10 = math.exp(10)  # 22026.47: gradients below e^-10 = 4.54e-5 take the second branch
    grad = torch.tensor([2.0, -3.0, 1e-3, 1e-5, -1e-5, 0.0], dtype=torch.float64)
    want = torch.tensor([
        [math.log(2.0) / 10, 1.0],     # |g| >= e^-p: (log|g| / p, sign)
        [math.log(3.0) / 10, -1.0],
        [math.log(1e-3) / 10, 1.0],   # -0.6908: a small gradient still on the first branch
        [-1.0, 1e-5 * e10],           # |g| < e^-p: (-1, e^p g) = (-1, 0.2203)
        [-1.0, -1e-5 * e10],
        [-1.0, 0.0],
    ], dtype=torch.float64)
    assert torch.allclose(preprocess_gradient(grad), want, rtol=1e-12, atol=1e-12)
    # another p: e^-1 = 0.368, so 0.5 is large and 0.2 small
    got = preprocess_gradient(torch.tensor([0.5, -0.2], dtype=torch.float64), p=1.0)
    assert torch.allclose(got, torch.tensor([[math.log(0.5), 1.0], [-1.0, -0.2 * math.e]], dtype=torch.float64))


def test_preprocessing_branches_meet_at_the_threshold_and_keep_shape_and_dtype():
    floor = math.exp(-10)
    below = preprocess_gradient(torch.tensor([floor * (1 - 1e-9), -floor * (1 - 1e-9)], dtype=torch.float64))
    above = preprocess_gradient(torch.tensor([floor * (1 + 1e-9), -floor * (1 + 1e-9)], dtype=torch.float64))
    assert torch.allclose(below, above, atol=1e-8)  # continuous: both are (-1, +-1) there
    g = torch.randn(3, 4, 5)
    out = preprocess_gradient(g)
    assert out.shape == (3, 4, 5, 2) and out.dtype == torch.float32
    assert torch.isfinite(preprocess_gradient(torch.zeros(4))).all()


# ----------------------------------------------------------------------------- the LSTM cell


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_lstm_gates_and_cell_match_a_hand_computation():
    layer = nn.Linear(2, 4).double()  # one input, one hidden unit: rows i, f, c~, o; columns x, h
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0], [1.0, 1.0]], dtype=torch.float64))
        layer.bias.copy_(torch.tensor([0.1, 1.0, -0.2, -0.5], dtype=torch.float64))
    x, h, c = 0.8, -0.6, 1.3
    z = [0.5 * x - 1.0 * h + 0.1, 1.5 * x + 0.25 * h + 1.0, -0.75 * x + 2.0 * h - 0.2, 1.0 * x + 1.0 * h - 0.5]
    i, f, cand, o = sigmoid(z[0]), sigmoid(z[1]), math.tanh(z[2]), sigmoid(z[3])
    c_new = f * c + i * cand
    h_new = o * math.tanh(c_new)
    args = [torch.tensor([[v]], dtype=torch.float64) for v in (x, h, c)]
    gates = lstm_gates(args[0], args[1], layer)
    for got, want in zip(gates, (i, f, cand, o)):
        assert got.item() == pytest.approx(want, rel=1e-12)
    h_got, c_got = lstm_cell(*args, layer)
    assert c_got.item() == pytest.approx(c_new, rel=1e-12)
    assert h_got.item() == pytest.approx(h_new, rel=1e-12)


def test_lstm_cell_agrees_with_torch_lstm_cell():
    torch.manual_seed(0)
    layer = nn.Linear(3 + 5, 20).double()
    ref = nn.LSTMCell(3, 5).double()
    with torch.no_grad():  # same gate order (i, f, g, o): split our weight into torch's two
        ref.weight_ih.copy_(layer.weight[:, :3])
        ref.weight_hh.copy_(layer.weight[:, 3:])
        ref.bias_ih.copy_(layer.bias)
        ref.bias_hh.zero_()
    x, h, c = torch.randn(7, 3).double(), torch.randn(7, 5).double(), torch.randn(7, 5).double()
    h1, c1 = lstm_cell(x, h, c, layer)
    h2, c2 = ref(x, (h, c))
    assert torch.allclose(h1, h2, atol=1e-12) and torch.allclose(c1, c2, atol=1e-12)


# ----------------------------------------------------------------------------- the optimiser's step


def test_step_shapes_state_and_coordinatewise_independence():
    torch.manual_seed(0)
    lstm = LearnedOptimizer(hidden=6)
    grad = torch.randn(3, 4, 5)
    update, state = lstm.step(grad, None)
    assert update.shape == grad.shape and len(state) == 2
    assert all(t.shape == (3, 4, 5, 6) for pair in state for t in pair)
    update2, _ = lstm.step(grad, state)
    assert not torch.equal(update, update2)  # the state carries history
    # one shared rule per coordinate: a coordinate's update depends only on its own gradient history
    alone, _ = lstm.step(grad[1, 2, 3].reshape(1), None)
    assert torch.allclose(alone[0], update[1, 2, 3], atol=1e-6)
    layer1, layer2, head = 4 * 20 * (2 + 20) + 80, 4 * 20 * (20 + 20) + 80, 20 + 1
    assert sum(p.numel() for p in LearnedOptimizer().parameters()) == layer1 + layer2 + head


def test_step_follows_dtype_and_device_of_the_gradient():
    lstm = LearnedOptimizer().double()
    update, state = lstm.step(torch.randn(2, 10, dtype=torch.float64), None)
    assert update.dtype == torch.float64 and state[0][0].dtype == torch.float64
    if torch.cuda.is_available():
        lstm = LearnedOptimizer().cuda()
        update, state = lstm.step(torch.randn(2, 10, device="cuda"), None)
        assert update.device.type == "cuda" and state[1][1].device.type == "cuda"


def test_detach_state_cuts_the_graph():
    lstm = LearnedOptimizer(hidden=4)
    _, state = lstm.step(torch.randn(3), None)
    assert state[0][0].requires_grad
    assert not any(t.requires_grad for pair in detach_state(state) for t in pair)
    assert detach_state(None) is None


# ----------------------------------------------------------------------------- the meta-gradient


def tiny_case(seed: int = 0) -> tuple[LearnedOptimizer, QuadraticBatch]:
    torch.manual_seed(seed)
    lstm = LearnedOptimizer(hidden=4, output_scale=0.3).double()
    problem = QuadraticProblems(dim=3, init_std=1.0, seed=seed).sample(2).to(dtype=torch.float64)
    return lstm, problem


def flat_grad(module: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(module.parameters()))
    return torch.cat([g.flatten() for g in grads])


def directional_fd(module: nn.Module, meta_loss, v: torch.Tensor, eps: float = 1e-6) -> float:
    """Central difference of ``meta_loss(module)`` along ``v`` in the space of the module's weights."""
    values = []
    for sign in (1, -1):
        moved = copy.deepcopy(module)
        with torch.no_grad():
            offset = 0
            for p in moved.parameters():
                p += sign * eps * v[offset:offset + p.numel()].view_as(p)
                offset += p.numel()
        values.append(float(meta_loss(moved).detach()))
    return (values[0] - values[1]) / (2 * eps)


def test_second_order_meta_gradient_matches_central_differences():
    lstm, problem = tiny_case()

    def meta_loss(rule):
        return unroll(rule, problem, problem.theta0, None, steps=4, second_order=True)[0].sum(0).mean()

    g = flat_grad(lstm, meta_loss(lstm))
    v = torch.randn(g.numel(), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    numeric = directional_fd(lstm, meta_loss, v)
    assert float(g @ v) == pytest.approx(numeric, rel=1e-6)


def test_first_order_meta_gradient_is_the_derivative_with_the_optimisees_gradients_held_fixed():
    """Dropping second derivatives (the paper's choice) is the exact gradient of a surrogate in which the
    optimisee's gradients are the constants observed along the trajectory, and differs from the full one."""
    lstm, problem = tiny_case()
    steps = 4
    losses, _, _ = unroll(lstm, problem, problem.theta0, None, steps=steps)
    first = flat_grad(lstm, losses.sum(0).mean())

    grads, theta, state = [], problem.theta0.clone(), None  # the gradients the unperturbed run sees
    with torch.no_grad():
        for _ in range(steps):
            grads.append(problem.grad(theta))
            update, state = lstm.step(grads[-1], state)
            theta = theta + update

    def surrogate(rule):
        theta, state, total = problem.theta0, None, 0.0
        for g in grads:
            update, state = rule.step(g, state)
            theta = theta + update
            total = total + problem.loss(theta)
        return total.mean()

    v = torch.randn(first.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(first @ v) == pytest.approx(directional_fd(lstm, surrogate, v), rel=1e-6)


@pytest.mark.parametrize("preprocess", [False, True])
def test_the_dropped_second_order_term_is_not_zero_on_a_quadratic(preprocess):
    """Far above rounding (1e-15), though small here (about 1e-3 of the meta-gradient without preprocessing
    and 1e-4 with it: the LSTM's input log|g| / p moves by only dg / (p |g|) when the gradient moves by dg)."""
    torch.manual_seed(0)
    lstm = LearnedOptimizer(hidden=4, output_scale=0.3, preprocess=preprocess).double()
    problem = QuadraticProblems(dim=3, init_std=1.0, seed=0).sample(2).to(dtype=torch.float64)
    first, second = (flat_grad(lstm, unroll(lstm, problem, problem.theta0, None, 4, second_order=so)[0].sum(0).mean())
                     for so in (False, True))
    assert 1e-8 < float((first - second).norm() / second.norm()) < 1e-1


def test_first_and_second_order_agree_on_a_linear_objective():
    """Where the optimisee's Hessian is zero, its gradient does not depend on theta: nothing is dropped."""

    class Linear:
        def __init__(self):
            self.a = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
            self.theta0 = torch.zeros(2, 3, dtype=torch.float64)

        def loss(self, theta):
            return (self.a * theta).sum(-1)

    lstm, _ = tiny_case()
    problem = Linear()
    first = flat_grad(lstm, unroll(lstm, problem, problem.theta0, None, 3)[0].sum(0).mean())
    second = flat_grad(lstm, unroll(lstm, problem, problem.theta0, None, 3, second_order=True)[0].sum(0).mean())
    assert torch.allclose(first, second, rtol=1e-10, atol=1e-12)


def test_unroll_continues_from_a_state():
    lstm, problem = tiny_case()
    whole, theta_w, _ = unroll(lstm, problem, problem.theta0, None, 6)
    a, theta_a, state = unroll(lstm, problem, problem.theta0, None, 2)
    b, theta_b, _ = unroll(lstm, problem, theta_a.detach(), detach_state(state), 4)
    assert torch.allclose(torch.cat([a, b]), whole, atol=1e-12) and torch.allclose(theta_b, theta_w, atol=1e-12)


# ----------------------------------------------------------------------------- optimize and the baselines


class FixedSGD:
    """An update rule whose output is fixed to -lr * grad."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(self, grad, state):
        return -self.lr * grad, state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_rule_that_outputs_minus_lr_grad_is_sgd(dtype):
    problem = QuadraticProblems(seed=4).sample(8).to(dtype=dtype)
    rule = optimize(problem, FixedSGD(0.01), 50)
    torch_sgd = optimize(problem, hand_designed("sgd", 0.01), 50)
    assert rule.shape == (51, 8) and rule.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(rule, torch_sgd, rtol=tol, atol=tol)
    theta = problem.theta0.clone()  # and both follow theta <- theta - lr * 2 W^T (W theta - y), written out
    for t in range(50):
        assert torch.allclose(rule[t], problem.loss(theta), rtol=tol)
        theta = theta - 0.01 * problem.grad(theta)
    assert torch.allclose(rule[50], problem.loss(theta), rtol=tol)


def test_autograd_gradient_of_the_batch_is_each_problems_own_gradient():
    problem = QuadraticProblems(seed=5).sample(4).to(dtype=torch.float64)
    theta = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(problem.loss(theta).sum(), theta)
    assert torch.allclose(auto, problem.grad(theta.detach()), atol=1e-10)


@pytest.mark.parametrize("name", list(HAND_DESIGNED))
def test_hand_designed_optimisers_run_batched_as_separately(name):
    problems = QuadraticProblems(seed=6).sample(3).to(dtype=torch.float64)
    batched = optimize(problems, hand_designed(name, 0.01), 20)
    for i in range(3):
        one = QuadraticBatch(problems.W[i:i + 1], problems.y[i:i + 1], problems.theta0[i:i + 1])
        assert torch.allclose(optimize(one, hand_designed(name, 0.01), 20)[:, 0], batched[:, i], rtol=1e-10)
    assert float(batched[-1].mean()) < float(batched[0].mean())


def test_optimize_accepts_torch_classes_and_partials():
    problem = QuadraticProblems(seed=7).sample(5)
    a = optimize(problem, functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9), 10)
    b = optimize(problem, hand_designed("momentum", 0.01), 10)
    assert torch.equal(a, b)
    assert optimize(problem, torch.optim.Adam, 3).shape == (4, 5)
    assert optimize(problem, FixedSGD(0.01), 0).shape == (1, 5)


def test_a_diverging_run_is_recorded_not_raised():
    losses = optimize(QuadraticProblems(seed=8).sample(4), hand_designed("sgd", 10.0), 40)
    assert not torch.isfinite(losses[-1]).all()


def test_tuning_picks_the_best_rate_of_the_grid():
    problem = QuadraticProblems(seed=9).sample(16)
    tuned = tune_learning_rate("sgd", problem, steps=30, grid=[1e-4, 1e-3, 1e-2, 1.0])
    assert tuned.scores[1.0] == math.inf  # SGD at rate 1 diverges on these quadratics
    assert tuned.lr == min(tuned.scores, key=tuned.scores.get) == 1e-2
    assert tuned.scores[1e-2] == pytest.approx(float(optimize(problem, hand_designed("sgd", 1e-2), 30)[-1].mean()))
    assert not tuned.on_edge
    assert tune_learning_rate("adam", problem, steps=30, grid=[1e-4, 1e-3]).on_edge


# ----------------------------------------------------------------------------- meta-training


def small_run(seed: int = 0, **kw):
    torch.manual_seed(seed)
    lstm = LearnedOptimizer(hidden=8)
    val = QuadraticProblems(seed=11).sample(16)
    args = dict(iterations=6, batch=8, unroll_steps=5, horizon=20, lr=1e-2, val_problem=val, val_every=2)
    args.update(kw)
    result = meta_train(lstm, QuadraticProblems(seed=10), **args)
    return lstm, val, result


def test_meta_training_is_reproducible_and_keeps_the_best_validated_weights():
    lstm, val, result = small_run()
    again, _, result2 = small_run()
    for a, b in zip(lstm.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["val_loss"] for h in result.history] == [h["val_loss"] for h in result2.history]
    assert [h["iteration"] for h in result.history] == [2, 4, 6]
    assert result.best_val == min(h["val_loss"] for h in result.history)
    # the optimiser now holds the weights of the best validation
    assert float(optimize(val, lstm, 20)[-1].mean()) == pytest.approx(result.best_val, rel=1e-6)


def test_meta_training_lowers_the_validation_loss():
    torch.manual_seed(0)
    lstm = LearnedOptimizer()
    val = QuadraticProblems(seed=11).sample(32)
    before = float(optimize(val, lstm, 40)[-1].mean())
    meta_train(lstm, QuadraticProblems(seed=10), iterations=15, batch=32, unroll_steps=20, horizon=40, lr=1e-2,
               val_problem=val, val_every=5)
    assert float(optimize(val, lstm, 40)[-1].mean()) < 0.5 * before


def test_meta_training_stops_at_its_time_limit():
    _, _, result = small_run(iterations=1000, val_every=1000, time_limit_s=0.0)
    assert result.iterations == 1 and len(result.history) == 1


# ----------------------------------------------------------------------------- the problem families


def test_quadratic_sampler_shapes_seeds_and_device():
    batch = QuadraticProblems(seed=0).sample(7)
    assert batch.W.shape == (7, 10, 10) and batch.y.shape == (7, 10) and batch.theta0.shape == (7, 10)
    assert batch.n == 7 and batch.num_params == 10 and batch.loss(batch.theta0).shape == (7,)
    same = QuadraticProblems(seed=0).sample(7)
    assert torch.equal(batch.W, same.W) and torch.equal(batch.y, same.y) and torch.equal(batch.theta0, same.theta0)
    assert not torch.equal(batch.W, QuadraticProblems(seed=1).sample(7).W)
    sampler = QuadraticProblems(seed=0)
    assert not torch.equal(sampler.sample(7).W, sampler.sample(7).W)  # a sampler draws new problems each time
    assert QuadraticProblems(seed=0, device="cpu").sample(2).W.device.type == "cpu"
    big = QuadraticProblems(dim=4, scale=3.0, seed=0).sample(2000)
    assert float(big.W.std()) == pytest.approx(3.0, rel=0.02) and big.W.shape == (2000, 4, 4)
    if torch.cuda.is_available():
        assert QuadraticProblems(device="cuda").sample(2).W.device.type == "cuda"


def test_mlp_problems():
    sampler = MLPProblems(seed=0)
    batch = sampler.sample(5)
    assert batch.x.shape == (5, 64, 2) and batch.labels.shape == (5, 64) and batch.theta0.shape == (5, 102)
    assert batch.num_params == sampler.num_params == 2 * 20 + 20 + 20 * 2 + 2
    loss = batch.loss(batch.theta0)
    assert loss.shape == (5,) and ((loss > 0.3) & (loss < 1.5)).all()  # near log 2 at the start
    assert batch.accuracy(batch.theta0).shape == (5,)
    assert torch.equal(MLPProblems(seed=0).sample(5).theta0, batch.theta0)
    losses = optimize(batch, hand_designed("adam", 0.03), 200)
    assert float(losses[-1].mean()) < 0.6 * float(losses[0].mean())  # the family is learnable
    relu = MLPProblems(activation="relu", classes=3, seed=0).sample(2)
    assert relu.logits(relu.theta0).shape == (2, 64, 3)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call, message", [
    (lambda: preprocess_gradient(torch.tensor([1, 2])), "floating-point"),
    (lambda: preprocess_gradient(torch.ones(2), p=0.0), "p must be > 0"),
    (lambda: LearnedOptimizer(hidden=0), "hidden must be an int >= 1"),
    (lambda: LearnedOptimizer(output_scale=-1.0), "output_scale"),
    (lambda: LearnedOptimizer().step([0.1, 0.2], None), "floating-point"),
    (lambda: LearnedOptimizer().step(torch.ones(3), LearnedOptimizer().initial_state(torch.ones(4))), "state must"),
    (lambda: optimize(object(), hand_designed("sgd", 0.1), 3), "theta0"),
    (lambda: optimize(QuadraticProblems().sample(2), hand_designed("sgd", 0.1), -1), "steps must"),
    (lambda: optimize(QuadraticProblems().sample(2), 0.1, 3), "optimizer must"),
    (lambda: optimize(QuadraticProblems().sample(2), lambda params: None, 3), "not a torch.optim.Optimizer"),
    (lambda: hand_designed("lbfgs", 0.1), "unknown optimiser"),
    (lambda: hand_designed("adam", 0.0), "lr must be"),
    (lambda: tune_learning_rate("sgd", QuadraticProblems().sample(2), grid=[]), "at least one"),
    (lambda: tune_learning_rate("sgd", QuadraticProblems().sample(2), steps=20, grid=[100.0]), "diverged"),
    (lambda: meta_train(LearnedOptimizer(), QuadraticProblems(), 1, unroll_steps=20, horizon=30), "multiple"),
    (lambda: meta_train(LearnedOptimizer(), QuadraticProblems().sample(2), 1), "sample"),
    (lambda: meta_train(LearnedOptimizer(), QuadraticProblems(), 0), "iterations"),
    (lambda: QuadraticProblems(dim=0), "dim must"),
    (lambda: QuadraticProblems(scale=0.0), "scale must"),
    (lambda: QuadraticProblems().sample(0), "n must"),
    (lambda: QuadraticProblems().sample(2).loss(torch.zeros(3, 10)), r"theta must be a tensor \(problems, param"),
    (lambda: MLPProblems(activation="tanh"), "activation"),
    (lambda: MLPProblems(classes=1), "classes must be >= 2"),
    (lambda: MLPProblems().sample(2).loss(torch.zeros(2, 10)), "theta must"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
