"""Meta-LSTM (Ravi & Larochelle 2017): the gates against a hand computation, plain SGD as a special case, the
meta-gradient against finite differences (the learner's gradients held constant in both), a user's module,
checkpoints, the trainer, the command line, the registry and the errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import metalearn_lite as ml
from metalearn_lite.algorithms import METHODS, MetaLSTM, build_method
from metalearn_lite.algorithms.lstm import preprocess_gradient as preprocess
from metalearn_lite.cli import main
from metalearn_lite.episodes import Episode
from metalearn_lite.models import Conv4


def image_tasks(tasks=2, ways=2, shots=1, queries=2, side=16, dtype=torch.float64, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(tasks, ways * shots, 1, side, side, generator=g, dtype=dtype)
    qx = torch.rand(tasks, ways * queries, 1, side, side, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()
    return Episode(sx, sy, qx, qy)


def tiny(ways: int = 2, **kw) -> MetaLSTM:
    torch.manual_seed(0)
    return MetaLSTM(Conv4(1, 3, "batch", out_features=ways, image_size=16), ways=ways,
                    **{"lstm_hidden": 3, "inner_steps": 2, **kw}).double()


def linear_learner(inputs: int = 3, ways: int = 2, **kw) -> MetaLSTM:
    torch.manual_seed(1)
    return MetaLSTM(nn.Linear(inputs, ways), ways=ways, **{"lstm_hidden": 2, **kw}).double()


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# ---------------------------------------------------------------- the meta-learner's arithmetic


def test_preprocessing_by_hand():
    x = torch.tensor([1.0, -0.5, 2e-3, 1e-6, -1e-6, 0.0], dtype=torch.float64)
    expected = torch.tensor([
        [0.0, 1.0],
        [math.log(0.5) / 10, -1.0],
        [math.log(2e-3) / 10, 1.0],
        [-1.0, math.exp(10) * 1e-6],  # below e^-10 = 4.5e-5: the linear branch
        [-1.0, -math.exp(10) * 1e-6],
        [-1.0, 0.0],
    ], dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(preprocess(x), expected, rtol=1e-12, atol=1e-15)
    assert preprocess(torch.tensor(3.0)).shape == (2,)


def test_gates_and_update_match_a_hand_computation():
    """Two updates on 6 coordinates with random meta-learner weights, against the LSTM and gate equations
    written out coordinate by coordinate with Python floats."""
    method = linear_learner()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in method.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    lstm = method.lstm
    w_ih, w_hh = lstm.weight_ih.tolist(), lstm.weight_hh.tolist()
    bias = (lstm.bias_ih + lstm.bias_hh).tolist()
    wf, wi = method.forget_w.tolist(), method.input_w.tolist()
    bf, bi = method.forget_b.item(), method.input_b.item()
    hidden = 2

    def prep(v: float) -> list[float]:
        return [math.log(abs(v)) / 10, math.copysign(1.0, v)] if abs(v) >= math.exp(-10) else [-1.0, math.exp(10) * v]

    theta = torch.randn(6, generator=g, dtype=torch.float64)
    grads = [torch.tensor([0.3, -2e-6, 0.0, -1.5, 4e-3, 0.02], dtype=torch.float64), torch.randn(6, generator=g,
                                                                                                  dtype=torch.float64)]
    losses = [torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)]
    # by hand
    hand_theta = theta.tolist()
    h = [[0.0] * hidden for _ in range(6)]
    c = [[0.0] * hidden for _ in range(6)]
    f_prev, i_prev = [0.0] * 6, [0.0] * 6
    hand_gates = []
    for grad, loss in zip(grads, losses):
        fs, is_ = [], []
        for j in range(6):
            x = prep(float(grad[j])) + prep(float(loss))
            pre = [sum(w_ih[r][k] * x[k] for k in range(4)) + sum(w_hh[r][k] * h[j][k] for k in range(hidden)) + bias[r]
                   for r in range(4 * hidden)]
            gi, gf, gg, go = (pre[q * hidden:(q + 1) * hidden] for q in range(4))  # torch's order: i, f, g, o
            c[j] = [sigmoid(gf[k]) * c[j][k] + sigmoid(gi[k]) * math.tanh(gg[k]) for k in range(hidden)]
            h[j] = [sigmoid(go[k]) * math.tanh(c[j][k]) for k in range(hidden)]
            f = sigmoid(sum(wf[k] * h[j][k] for k in range(hidden)) + wf[hidden] * hand_theta[j]
                        + wf[hidden + 1] * f_prev[j] + bf)
            i = sigmoid(sum(wi[k] * h[j][k] for k in range(hidden)) + wi[hidden] * hand_theta[j]
                        + wi[hidden + 1] * i_prev[j] + bi)
            hand_theta[j] = f * hand_theta[j] - i * float(grad[j])
            fs.append(f)
            is_.append(i)
        f_prev, i_prev = fs, is_
        hand_gates.append((fs, is_))
    # the method
    state = None
    for t, (grad, loss) in enumerate(zip(grads, losses)):
        theta, state = method.update(theta, grad, loss, state)
        torch.testing.assert_close(state.forget, torch.tensor(hand_gates[t][0], dtype=torch.float64), rtol=1e-12,
                                   atol=1e-14)
        torch.testing.assert_close(state.input, torch.tensor(hand_gates[t][1], dtype=torch.float64), rtol=1e-12,
                                   atol=1e-14)
    torch.testing.assert_close(theta, torch.tensor(hand_theta, dtype=torch.float64), rtol=1e-12, atol=1e-14)


def test_initial_gates_follow_the_papers_initialisation():
    torch.manual_seed(0)
    method = MetaLSTM(nn.Linear(4, 3), ways=3)
    assert 4 <= method.forget_b.item() <= 5 and -5 <= method.input_b.item() <= -4
    assert all(p.abs().max() <= 0.01 for p in (*method.lstm.parameters(), method.forget_w, method.input_w))
    sx, sy = torch.randn(6, 4), torch.arange(3).repeat(2)
    trace = method.adaptation_trace(sx, sy, steps=2)
    assert trace["forget_gate"].min() > sigmoid(3.8) and trace["input_gate"].max() < sigmoid(-3.8)


def softmax_regression_grads(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Mean cross-entropy of ``x w^T + b`` and its gradients, in closed form: ``(p - onehot)^T x / S``."""
    p = torch.softmax(x @ w.T + b, -1)
    err = (p - F.one_hot(y, w.shape[0]).to(p.dtype)) / len(x)
    loss = -torch.log(p[torch.arange(len(y)), y]).mean()
    return loss, err.T @ x, err.sum(0)


def test_forget_gate_one_and_input_gate_alpha_is_exactly_sgd():
    alpha, steps = 0.3, 3
    method = linear_learner(inner_steps=steps)
    with torch.no_grad():
        method.forget_w.zero_()
        method.input_w.zero_()
        method.forget_b.fill_(math.inf)  # sigmoid(inf) = 1 exactly
        method.input_b.fill_(math.log(alpha / (1 - alpha)))  # sigmoid(logit(alpha)) = alpha
    g = torch.Generator().manual_seed(4)
    sx, sy = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.tensor([5, 9, 5, 9, 9, 5])
    w, b = method.net.weight.detach().clone(), method.net.bias.detach().clone()
    targets = (sy == 9).long()  # labels become column positions 0, 1
    losses = []
    for _ in range(steps):
        loss, gw, gb = softmax_regression_grads(w, b, sx, targets)
        losses.append(float(loss))
        w, b = w - alpha * gw, b - alpha * gb
    adapted = method.adapt(sx, sy)
    torch.testing.assert_close(adapted.params["weight"], w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(adapted.params["bias"], b, rtol=1e-12, atol=1e-14)
    qx = torch.randn(4, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(method.logits(sx, sy, qx), qx @ w.T + b, rtol=1e-12, atol=1e-14)
    assert adapted.predict(qx).tolist() == [(5, 9)[k] for k in (qx @ w.T + b).argmax(-1).tolist()]
    trace = method.adaptation_trace(sx, sy)
    assert torch.equal(trace["forget_gate"], torch.ones(steps, 8, dtype=torch.float64))
    torch.testing.assert_close(trace["input_gate"], torch.full((steps, 8), alpha, dtype=torch.float64), rtol=1e-14,
                               atol=0)
    torch.testing.assert_close(trace["loss"][:steps], torch.tensor(losses, dtype=torch.float64), rtol=1e-12, atol=0)
    # the meta-learned weights are untouched
    assert torch.equal(method.net.weight, method.net.weight.detach()) and method.net.weight.grad is None


# ---------------------------------------------------------------- the meta-gradient


def randomise_meta_learner(method: MetaLSTM, seed: int = 5) -> None:
    """Weights large enough that every path (gradient, loss, theta, previous gate) matters in the gates."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (*method.lstm.parameters(), method.forget_w, method.input_w):
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        method.forget_b.fill_(2.0)
        method.input_b.fill_(-1.0)


def query_loss_with_fixed_gradients(method: MetaLSTM, episode: Episode, given: list) -> torch.Tensor:
    """The meta-loss with every task's learner gradients and losses replaced by ``given`` (constants)."""
    losses = []
    for i in range(episode.num_tasks):
        sx, sy, qx, qy = episode.task(i).unbatched()
        theta, shapes = method.start(int(sy.max()) + 1)
        final = method.unroll(theta, shapes, sx, sy, method.inner_steps, given=given[i]).theta
        losses.append(F.cross_entropy(functional_call(method.net, method.params(final, shapes), (qx,)), qy))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("zero_head", [False, True])
def test_meta_gradient_matches_central_differences_with_the_gradients_held_constant(zero_head):
    method = tiny(zero_head=zero_head)
    randomise_meta_learner(method)
    ep = image_tasks(tasks=2, seed=1)
    given = []  # each task's (grad_t, L_t) at the unperturbed weights
    with torch.no_grad():
        for i in range(2):
            sx, sy, _, _ = ep.task(i).unbatched()
            theta, shapes = method.start(2)
            run = method.unroll(theta, shapes, sx, sy, method.inner_steps)
            given.append(list(zip(run.grads, run.losses)))
    params = [p for p in method.parameters() if p.requires_grad]
    loss, _ = method.loss(ep)
    grads = torch.autograd.grad(loss, params)
    torch.testing.assert_close(loss.detach(), query_loss_with_fixed_gradients(method, ep, given), rtol=1e-13, atol=0)
    g = torch.Generator().manual_seed(6)
    eps = 1e-6
    for _ in range(3):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        analytic = float(sum((gi * vi).sum() for gi, vi in zip(grads, v)))
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, vi in zip(params, v):
                    p.add_(sign * eps * vi)
                values.append(float(query_loss_with_fixed_gradients(method, ep, given)))
                for p, vi in zip(params, v):
                    p.sub_(sign * eps * vi)
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(analytic - numeric) <= 1e-6 * max(abs(numeric), 1e-3), (analytic, numeric)
    # every part of the meta-learner receives a gradient: c_0, the first layer and both gates
    named = dict(zip([n for n, p in method.named_parameters() if p.requires_grad], grads))
    for name in ("net.features.0.weight", "lstm.weight_ih", "lstm.weight_hh", "forget_w", "input_w", "forget_b",
                 "input_b"):
        assert named[name].abs().sum() > 0, name
    assert ("net.head.weight" in named) is not zero_head


def test_meta_gradient_leaves_out_the_learners_second_derivatives():
    """Differentiating through the learner's gradients as well (finite differences of the loss recomputed from
    scratch) gives another number: the meta-gradient treats grad_t as a constant, as the paper does."""
    method = tiny()
    randomise_meta_learner(method)
    ep = image_tasks(tasks=1, seed=2)
    params = [p for p in method.parameters() if p.requires_grad]
    grads = torch.autograd.grad(method.loss(ep)[0], params)
    k = next(j for j, p in enumerate(params) if p.dim() == 4)  # the first convolution's weights (c_0 there)
    first = params[k]
    v = torch.zeros_like(first)
    v.view(-1)[0] = 1.0
    eps = 1e-6
    with torch.no_grad():
        first.add_(eps * v)
        plus = float(method.loss(ep)[0])
        first.sub_(2 * eps * v)
        minus = float(method.loss(ep)[0])
        first.add_(eps * v)
    full = (plus - minus) / (2 * eps)
    assert abs(float(grads[k].view(-1)[0]) - full) > 1e-3 * abs(full)


def test_zero_head_first_update_is_minus_the_input_gate_times_the_gradient():
    """From a zero head the scores are uniform, the body's gradient is exactly zero, and one update gives the head
    ``-i_1 ⊙ (p - onehot)^T phi / S`` with ``p = 1/N``: a prototype-like classifier scaled by the learned step."""
    method = tiny(ways=3, zero_head=True)
    randomise_meta_learner(method)
    ep = image_tasks(tasks=1, ways=3, shots=2, seed=3)
    sx, sy, _, _ = ep.unbatched()
    params = method.adapt(sx, sy, steps=1).params
    trace = method.adaptation_trace(sx, sy, steps=1)
    sizes = dict(trace["parameters"])
    assert sizes["head.weight"] == 3 * method.net.embedding_dim(16) and sizes["head.bias"] == 3
    assert sum(sizes.values()) == trace["input_gate"].shape[1]
    features = method.net.embedding_dim(16)
    head_rates = trace["input_gate"][0, -(3 * features + 3):-3].view(3, features)
    phi = method.net.embed(sx).detach()
    expected = -head_rates * ((1 / 3 - F.one_hot(sy, 3).double()).T @ phi) / len(sx)
    torch.testing.assert_close(params["head.weight"], expected, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        theta, shapes = method.start(3)
        run = method.unroll(theta, shapes, sx, sy, 1)
    body = sum(n for name, n in trace["parameters"] if not name.startswith("head."))
    assert torch.count_nonzero(run.grads[0][:body]) == 0
    # the stored head is zero, is not a meta-parameter, and tasks of any number of classes work
    assert torch.count_nonzero(method.net.head.weight) == 0 and not method.net.head.weight.requires_grad
    loss, acc = method.loss(image_tasks(tasks=2, ways=4, seed=4))
    loss.backward()
    assert method.net.head.weight.grad is None and method.net.features[0].weight.grad.abs().sum() > 0
    assert method.logits(sx, sy + 10, ep.query_x[0]).shape == (6, 3)


# ---------------------------------------------------------------- the trace, a user's module, checkpoints


def test_adaptation_trace_shapes_and_ranges():
    method = tiny(ways=3, test_steps=4).float()
    ep = image_tasks(dtype=torch.float32, ways=3, seed=7)
    sx, sy, _, _ = ep.task(0).unbatched()
    trace = method.adaptation_trace(sx, sy)
    count = sum(p.numel() for p in method.net.parameters())
    assert trace["input_gate"].shape == (4, count) and trace["forget_gate"].shape == (4, count)
    assert trace["loss"].shape == (5,) and trace["grad_norm"].shape == (4,)
    assert [n for n, _ in trace["parameters"]] == [n for n, _ in method.net.named_parameters()]
    for key in ("input_gate", "forget_gate"):
        assert ((trace[key] > 0) & (trace[key] < 1)).all()
        assert trace[key].device.type == "cpu" and not trace[key].requires_grad
    empty = method.adaptation_trace(sx, sy, steps=0)
    assert empty["input_gate"].shape == (0, count) and empty["loss"].shape == (1,)
    torch.testing.assert_close(empty["loss"][0], trace["loss"][0])


class MyNet(nn.Module):
    """A user's classifier with its own layer names and a frozen first layer."""

    def __init__(self, ways: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.stem.requires_grad_(False)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.stem(x))).flatten(1))


def test_a_users_module_trains_adapts_and_reloads(tmp_path):
    torch.manual_seed(0)
    method = MetaLSTM(MyNet(), ways=3, lstm_hidden=4, inner_steps=2)
    assert method.config["model"] == {"custom": "MyNet"} and method.config["head"] == "fc."
    assert method.names == ["fc.weight", "fc.bias"]  # the frozen stem passes through unchanged
    ep = image_tasks(tasks=2, ways=3, side=10, dtype=torch.float32)
    loss, acc = method.loss(ep)
    loss.backward()
    assert method.net.fc.weight.grad.abs().sum() > 0 and method.net.stem.weight.grad is None
    sx, sy, qx, _ = ep.task(0).unbatched()
    adapted = method.adapt(sx, sy + 4)
    assert adapted(qx).shape == (6, 3) and set(adapted.predict(qx).tolist()) <= {4, 5, 6}
    assert torch.equal(adapted.params["stem.weight"], method.net.stem.weight)
    assert isinstance(method, ml.FewShotClassifier) and method.predict(sx, sy, qx).shape == (6,)
    ml.save_checkpoint(tmp_path / "mine.pt", method)
    with pytest.raises(ValueError, match="your own network.*MetaLSTM"):
        ml.load_checkpoint(tmp_path / "mine.pt")
    torch.manual_seed(9)
    loaded = ml.load_checkpoint(tmp_path / "mine.pt", method=MetaLSTM(MyNet(), ways=3, lstm_hidden=4, inner_steps=2))
    torch.testing.assert_close(loaded.logits(sx, sy, qx), method.logits(sx, sy, qx), rtol=0, atol=0)


def test_save_and_load_round_trip_rebuilds_the_method(tmp_path):
    method = tiny(ways=3, zero_head=True, test_steps=3).float()
    randomise_meta_learner(method)
    path = ml.save_checkpoint(tmp_path / "m.pt", method, command="python -m metalearn_lite train meta_lstm", seed=0)
    loaded = ml.load_checkpoint(path)
    assert type(loaded) is MetaLSTM and loaded.config == method.config and not loaded.training
    assert loaded.config["test_steps"] == 3 and loaded.config["zero_head"] is True
    for k, v in method.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    ep = image_tasks(tasks=1, ways=3, dtype=torch.float32, seed=8)
    sx, sy, qx, _ = ep.unbatched()
    torch.testing.assert_close(loaded.logits(sx, sy, qx), method.logits(sx, sy, qx), rtol=0, atol=0)
    with pytest.raises(ValueError, match="'meta_lstm' model, not 'maml'"):
        ml.load_checkpoint(path, method=ml.MAML(Conv4(1, 3, out_features=3, image_size=16), ways=3))


def test_registry_rebuilds_it():
    method = tiny(ways=4, lstm_hidden=5, inner_steps=3, test_steps=6)
    assert METHODS["meta_lstm"] is MetaLSTM and ml.MetaLSTM is MetaLSTM
    rebuilt = build_method("meta_lstm", **method.config)
    assert type(rebuilt) is MetaLSTM and rebuilt.config == method.config
    assert rebuilt.lstm.hidden_size == 5 and (rebuilt.inner_steps, rebuilt.test_steps) == (3, 6)
    assert MetaLSTM(Conv4(1, 3, out_features=2, image_size=16), ways=2, inner_steps=7).test_steps == 7
    with pytest.raises(ValueError, match="bad config"):
        build_method("meta_lstm", **{**method.config, "inner_lr": 0.1})


# ---------------------------------------------------------------- training: the trainer and the command line


def test_trains_through_the_one_trainer(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 16, 16, generator=g), torch.arange(8).repeat_interleave(5)
    tasks = ml.EpisodeSampler(x[y < 5], y[y < 5], ways=3, shots=1, queries=2, seed=0)
    val = ml.EpisodeSampler(x[y >= 5], y[y >= 5], ways=3, shots=1, queries=2, seed=1)
    torch.manual_seed(0)
    method = MetaLSTM(Conv4(1, 4, out_features=3, image_size=16), ways=3, lstm_hidden=3, inner_steps=2)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    result = ml.train(method, tasks, val, steps=4, tasks_per_step=2, val_every=2, save_every=2, val_episodes=3,
                      out_dir=tmp_path / "run", progress=False)
    assert result.step == 4 and [h["step"] for h in result.history] == [2, 4]
    assert all(0 <= h["val_acc"] <= 1 for h in result.history)
    changed = [k for k, v in method.state_dict().items() if not torch.equal(v, before[k])]
    assert "forget_b" in changed and "lstm.weight_ih" in changed and "net.features.0.weight" in changed
    loaded = ml.load_checkpoint(result.best_path)
    assert type(loaded) is MetaLSTM
    result = ml.evaluate(loaded, (x[y >= 5], y[y >= 5]), ways=3, shots=1, queries=2, episodes=3)
    assert 0 <= result.mean <= 1


@pytest.mark.parametrize("extra", [["--ways", "5"], ["--zero-head", "--ways", "4"]])
def test_command_line_trains_and_evaluates(tmp_path, capsys, extra):
    """Validation and `evaluate` use 5-way tasks: a learner with 5 outputs, or a zero head trained on 4-way ones."""
    save_as = tmp_path / "m.pt"
    argv = ["train", "meta_lstm", "--out", str(tmp_path / "run"), "--steps", "2", "--tasks", "1",
            "--shots", "1", "--queries", "2", "--hidden", "8", "--lstm-hidden", "3", "--inner-steps", "1",
            "--test-steps", "2", "--val-every", "2", "--val-episodes", "3", "--no-progress", "--device", "cpu",
            "--save-as", str(save_as), "--set", "rotations=false", *extra]
    assert main(argv) == 0
    blob_model = ml.load_checkpoint(save_as)
    assert type(blob_model) is MetaLSTM and blob_model.recipe == "meta_lstm"
    assert blob_model.config["test_steps"] == 2 and blob_model.config["model"]["hidden"] == 8
    zero_head = "--zero-head" in extra
    assert blob_model.config["zero_head"] is zero_head
    capsys.readouterr()
    assert main(["evaluate", str(save_as), "--episodes", "3", "--device", "cpu"]) == 0
    evaluate = ["evaluate", str(save_as), "--episodes", "3", "--device", "cpu"]
    assert main(evaluate) == 0
    assert "5-way 1-shot, 3 episodes" in capsys.readouterr().out
    if not zero_head:  # a head with 5 outputs cannot score 3-way tasks, and the error says what to do
        assert main([*evaluate, "--ways", "3"]) == 2
        assert "zero_head=True" in capsys.readouterr().err


def test_command_line_help_is_short_and_init_body_applies():
    from metalearn_lite.cli import build_parser

    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    sub = next(a for a in train._actions if a.dest == "recipe").choices["meta_lstm"]
    flags = {s for a in sub._actions for s in a.option_strings}
    assert {"--init-body", "--zero-head", "--inner-steps", "--test-steps", "--lstm-hidden", "--data"} <= flags
    assert "--inner-lr" not in flags and "--compile" not in flags
    assert sum(1 for a in sub._actions if a.option_strings) <= 30


def test_init_body_copies_a_conv4_body_and_refuses_other_learners():
    torch.manual_seed(3)
    source = Conv4(1, 3, norm="running").double()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    method = tiny()
    copied = method.init_body(source)
    assert len(copied) == 16
    assert torch.equal(method.net.features[0].weight, source.features[0].weight)
    with pytest.raises(ValueError, match="Conv-4 learner.*MyNet"):
        MetaLSTM(MyNet(), ways=3).init_body(source)
    with pytest.raises(ValueError, match="--hidden 5"):
        method.init_body(Conv4(1, 5))


# ---------------------------------------------------------------- errors


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="torch.nn.Module"):
        MetaLSTM("conv4")
    with pytest.raises(ValueError, match="track_running_stats=False"):
        MetaLSTM(Conv4(norm="running", out_features=5))
    with pytest.raises(ValueError, match="no trainable parameters"):
        MetaLSTM(nn.Linear(2, 2).requires_grad_(False), ways=2)
    for kw, match in [({"ways": 0}, "ways"), ({"inner_steps": -1}, "inner_steps"), ({"test_steps": 1.5}, "test_steps"),
                      ({"lstm_hidden": 0}, "lstm_hidden"), ({"input_bias": math.nan}, "input_bias"),
                      ({"zero_head": "yes"}, "zero_head")]:
        with pytest.raises(ValueError, match=match):
            MetaLSTM(nn.Linear(2, 2), **{"ways": 2, **kw})
    with pytest.raises(ValueError, match="nn.Linear with a bias"):
        MetaLSTM(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2, bias=False)), ways=2, zero_head=True)
    with pytest.raises(ValueError, match="head='nothing'"):
        MetaLSTM(nn.Linear(2, 2), ways=2, head="nothing")
    method = tiny().float()
    ep = image_tasks(tasks=1, ways=3, dtype=torch.float32)
    sx, sy, qx, _ = ep.unbatched()
    with pytest.raises(ValueError, match="3 classes in these tasks.*zero_head=True"):
        method.logits(sx, sy, qx)
    with pytest.raises(ValueError, match="3 classes"):
        method.loss(ep)
    with pytest.raises(ValueError, match="an Episode"):
        method.loss((sx, sy))
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        method.adapt(sx[:2], sy[:2], steps=-1)
    with pytest.raises(ValueError, match="support_y must be 1-D"):
        method.adaptation_trace(sx, sy[None])


def test_a_diverging_update_stops_with_a_clear_error():
    method = linear_learner(inner_steps=3)
    with torch.no_grad():
        method.net.weight.fill_(math.nan)  # initial weights that have diverged
    with pytest.raises(FloatingPointError, match="before update 1 of 3.*lower the learning rate"):
        method.adapt(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1]))


# ---------------------------------------------------------------- lesson 07's figure


def test_plot_gates_draws_both_gates_by_layer_and_the_loss():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metalearn_lite.lessons.lesson07 import layer_groups, plot_gates

    method = tiny(ways=3, test_steps=3).float()
    sx, sy, _, _ = image_tasks(tasks=1, ways=3, dtype=torch.float32).unbatched()
    trace = method.adaptation_trace(sx, sy)
    groups = layer_groups(trace["parameters"])
    assert list(groups)[:2] == ["features.0", "features.1"] and list(groups)[-1] == "head"
    assert groups["head"].stop == trace["input_gate"].shape[1]
    fig = plot_gates(trace)
    gate_ax, forget_ax, loss_ax = fig.axes[:3]
    assert gate_ax.get_yscale() == "log" and "input gate" in gate_ax.get_title()
    assert len(gate_ax.lines) == 1 + len(groups)  # the median and one mean per layer
    torch.testing.assert_close(torch.as_tensor(loss_ax.lines[0].get_ydata()), trace["loss"])
    median = forget_ax.lines[0].get_ydata()
    assert len(median) == 3 and all(0 < v < 1 for v in median)
    plt.close(fig)
    fig = plot_gates(method.adaptation_trace(sx, sy, steps=0), by_layer=False)  # no updates: the loss alone
    assert len(fig.axes[2].lines[0].get_ydata()) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="adaptation_trace"):
        plot_gates({"loss": trace["loss"]})
    with pytest.raises(ValueError, match="steps \\+ 1"):
        plot_gates({**trace, "loss": trace["loss"][:2]})
