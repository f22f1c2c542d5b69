"""Bad inputs to the Python API: train, evaluate, predict and adapt. Each probe's name says its outcome class:
``test_error_*`` a clear error naming what went wrong and the fix, ``test_correct_*`` the correct result."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from faultkit import FAST, clear_error, data, maml_mlp, protonet, sampler

import metalearn_lite as ml
from metalearn_lite.checkpoints import read_checkpoint

NO_SAVE = {**FAST, "save_every": 1000}


def nan_at(x: torch.Tensor, value: float = math.nan) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[3] = value
    return x


# ---------------------------------------------------------------- checked before step 1


def test_error_out_dir_is_a_file(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with clear_error(ValueError, "is a file", "another path"):
        ml.train(protonet(), sampler(), out_dir=tmp_path / "run", **FAST)


def test_error_out_dir_cannot_be_written(tmp_path):
    with clear_error(ValueError, "cannot write", "choose a folder"):
        ml.train(protonet(), sampler(), out_dir="/proc/metalearn-lite-probe/run", **FAST)


@pytest.mark.parametrize("dtype,fix", [(torch.float64, r"x\.to\(torch\.float32\)"), (torch.uint8, r"x\.float\(\)"),
                                       (torch.int64, r"x\.float\(\)")], ids=["float64", "uint8", "int64"])
def test_error_inputs_of_another_dtype(tmp_path, dtype, fix):
    x, _ = data()
    with clear_error(ValueError, str(dtype), fix):
        ml.train(protonet(), sampler(x=(x * 10).to(dtype)), out_dir=tmp_path / "r", **FAST)
    assert not (tmp_path / "r" / "last.pt").exists()


def images(n_per: int = 5, classes: int = 6, channels: int = 1, size: int = 28) -> ml.EpisodeSampler:
    x = torch.rand(classes * n_per, channels, size, size, generator=torch.Generator().manual_seed(0))
    return ml.EpisodeSampler(x, torch.arange(classes).repeat_interleave(n_per), ways=3, shots=1, queries=1, seed=0)


def test_error_images_with_other_channel_count(tmp_path):
    with clear_error(ValueError, "3 channel", "in_channels=3"):
        ml.train(ml.ProtoNet(ml.Conv4(hidden=4)), images(channels=3), out_dir=tmp_path / "r", **FAST)


def test_error_images_of_another_size_for_a_headed_conv4(tmp_path):
    method = ml.MAML(ml.Conv4(hidden=4, out_features=3, norm="none"), ways=3)
    with clear_error(ValueError, "32x32", "image_size=32"):
        ml.train(method, images(size=32), out_dir=tmp_path / "r", **FAST)


def test_error_non_finite_training_inputs(tmp_path):
    x, _ = data()
    with clear_error(ValueError, "non-finite", "support_x|query_x", "clean"):
        ml.train(protonet(), sampler(x=nan_at(x) * 0 + math.nan), out_dir=tmp_path / "r", **FAST)


def test_error_non_finite_initial_weights(tmp_path):
    method = protonet()
    with torch.no_grad():
        next(method.parameters())[0, 0] = math.inf
    with clear_error(FloatingPointError, "non-finite", "encoder.0.weight", "checkpoint"):
        ml.train(method, sampler(), out_dir=tmp_path / "r", **FAST)


# ---------------------------------------------------------------- diverging runs


def test_error_huge_learning_rate_names_lr_and_no_resume_hint_without_last(tmp_path):
    with clear_error(FloatingPointError, "learning rate") as err:
        ml.train(protonet(), sampler(), out_dir=tmp_path / "r", **{**NO_SAVE, "lr": 1e30})
    assert not (tmp_path / "r" / "last.pt").exists() and "last.pt" not in str(err.value)


def test_error_huge_learning_rate_with_a_last_pt_says_how_to_resume(tmp_path):
    ml.train(protonet(), sampler(), out_dir=tmp_path / "r", **{**FAST, "steps": 5})
    with clear_error(FloatingPointError, "learning rate", "last.pt", "change_settings"):
        ml.train(protonet(), sampler(), out_dir=tmp_path / "r", change_settings=True, **{**FAST, "lr": 1e30})


def test_error_diverging_inner_loop_names_inner_lr_mlp(tmp_path):
    with clear_error(FloatingPointError, "inner_lr") as err:
        ml.train(maml_mlp(inner_lr=1e6), sampler(), out_dir=tmp_path / "r", **NO_SAVE)
    assert "last.pt" not in str(err.value)


def test_error_diverging_inner_loop_names_inner_lr_conv4(tmp_path):
    torch.manual_seed(0)
    method = ml.MAML(ml.Conv4(hidden=4, out_features=3, norm="none"), ways=3, inner_lr=1e6, first_order=True,
                     zero_head=False)
    with clear_error(FloatingPointError, "inner_lr") as err:
        ml.train(method, images(), out_dir=tmp_path / "r", **NO_SAVE)
    assert "last.pt" not in str(err.value) and "outer" not in str(err.value)


def test_error_loss_turning_nan_names_the_step(tmp_path, monkeypatch):
    method, calls = protonet(), {"n": 0}
    real = method.loss

    def loss(batch):
        calls["n"] += 1
        value, acc = real(batch)
        return (value * math.nan if calls["n"] == 4 else value), acc
    monkeypatch.setattr(method, "loss", loss)
    with clear_error(FloatingPointError, "step 3", "nan", "learning rate"):
        ml.train(method, sampler(), out_dir=tmp_path / "r", **NO_SAVE)


# ---------------------------------------------------------------- resuming with other settings


@pytest.fixture
def stopped(tmp_path):
    out = tmp_path / "r"
    ml.train(protonet(), sampler(), out_dir=out, **{**FAST, "steps": 5})
    return out


@pytest.mark.parametrize("change", [{"ways": 4}, {"shots": 1}, {"queries": 3}], ids=["ways", "shots", "queries"])
def test_error_resume_with_other_task_settings(stopped, change):
    with clear_error(ValueError, list(change)[0], "another out_dir", "change_settings=True", "--change-settings"):
        ml.train(protonet(), sampler(**change), out_dir=stopped, **FAST)


def test_error_resume_with_another_task_source(stopped):
    class Other:
        def __init__(self):
            self.inner = sampler()
            self.generator = self.inner.generator

        def sample(self, n):
            return self.inner.sample(n)
    with clear_error(ValueError, "task source", "EpisodeSampler", "Other"):
        ml.train(protonet(), Other(), out_dir=stopped, **FAST)


@pytest.mark.parametrize("change", [{"lr": 0.005}, {"tasks_per_step": 2}, {"seed": 3}], ids=["lr", "tasks", "seed"])
def test_error_resume_with_other_run_settings(stopped, change):
    with clear_error(ValueError, list(change)[0], "change_settings"):
        ml.train(protonet(), sampler(), out_dir=stopped, **{**FAST, **change})


def test_correct_resume_with_changes_on_purpose_applies_and_records_them(stopped):
    result = ml.train(protonet(), sampler(), out_dir=stopped, change_settings=True, command="again",
                      **{**FAST, "lr": 0.005})
    last = read_checkpoint(stopped / "last.pt")
    assert result.step == 12 and last["train_config"]["lr"] == 0.005
    assert last["changes"] == [{"step": 5, "changed": {"lr": [0.01, 0.005]}, "command": "again"}]
    assert last["optimizer"]["param_groups"][0]["lr"] == 0.005


def test_correct_resume_with_more_steps_needs_no_flag(stopped):
    assert ml.train(protonet(), sampler(), out_dir=stopped, **{**FAST, "steps": 8}).step == 8


def test_error_last_pt_without_training_state(stopped):
    shutil.copyfile(stopped / "best.pt", stopped / "last.pt")
    with clear_error(ValueError, "training state", "resume=False"):
        ml.train(protonet(), sampler(), out_dir=stopped, **FAST)


def test_error_damaged_last_pt_is_refused_not_resumed(stopped):
    path = stopped / "last.pt"
    blob = path.read_bytes()
    weight = read_checkpoint(path)["state_dict"]["encoder.0.weight"]
    at = blob.find(weight.numpy().tobytes()[:16])
    assert at > 0
    path.write_bytes(blob[:at] + bytes([blob[at] ^ 0x10]) + blob[at + 1:])
    with clear_error(ValueError, "damaged", "SHA-256"):
        ml.train(protonet(), sampler(), out_dir=stopped, **FAST)


# ---------------------------------------------------------------- seed


def test_correct_seed_seeds_torch_generator_used_inside_the_loss(tmp_path):
    """seed= seeds torch's global generator (here: dropout): same seed, same weights; another, others."""
    runs = []
    for i, seed in enumerate((0, 0, 1)):
        method = protonet()
        ml.train(method, sampler(), out_dir=tmp_path / str(i), **{**NO_SAVE, "seed": seed})
        runs.append(method.state_dict()["encoder.0.weight"])
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# ---------------------------------------------------------------- evaluate, predict, adapt


def grouped(x: torch.Tensor | None = None) -> torch.Tensor:
    dx, _ = data()
    return (dx if x is None else x).view(12, 5, -1)


def test_error_evaluate_non_finite_data():
    with clear_error(ValueError, "evaluation data", "non-finite", "nan_to_num"):
        ml.evaluate(protonet().eval(), grouped(nan_at(data()[0])), ways=3, shots=1, queries=2, episodes=5)


def test_error_evaluate_non_finite_weights():
    method = protonet().eval()
    with torch.no_grad():
        method.encoder[0].bias[2] = math.nan
    with clear_error(FloatingPointError, "weights", "encoder.0.bias", "reload"):
        ml.evaluate(method, grouped(), ways=3, shots=1, queries=2, episodes=5)


@pytest.mark.parametrize("episodes", [-1, 0, 2.5], ids=["minus-one", "zero", "float"])
def test_error_evaluate_bad_episode_count(episodes):
    with clear_error(ValueError, "episodes must be a positive int"):
        ml.evaluate(protonet().eval(), grouped(), ways=3, shots=1, queries=2, episodes=episodes)


def test_correct_evaluate_on_clean_data():
    result = ml.evaluate(protonet().eval(), grouped(), ways=3, shots=1, queries=2, episodes=20)
    assert 0.0 <= result.mean <= 1.0 and math.isfinite(result.ci95)


def one_task():
    ep = sampler().sample(1)
    return ep.task(0).unbatched()[:3]


@pytest.mark.parametrize("where,value", [("support_x", math.nan), ("query_x", math.nan), ("support_x", math.inf),
                                         ("query_x", -math.inf)], ids=["nan-support", "nan-query", "inf-support",
                                                                       "minus-inf-query"])
def test_error_predict_non_finite_inputs(where, value):
    sx, sy, qx = one_task()
    args = {"support_x": sx, "support_y": sy, "query_x": qx}
    args[where] = nan_at(args[where], value)
    with clear_error(ValueError, where, "non-finite"):
        protonet().eval().predict(**args)


def test_error_predict_non_finite_scores():
    method = protonet().eval()
    with torch.no_grad():
        method.encoder[-1].weight.mul_(1e30)  # finite weights whose distances overflow to inf
    with clear_error(FloatingPointError, "scores", "non-finite"):
        method.predict(*one_task())


def test_error_adapt_non_finite_support():
    sx, sy, _ = one_task()
    with clear_error(ValueError, "support_x", "non-finite"):
        maml_mlp().adapt(nan_at(sx), sy)


def test_error_adapt_regressor_non_finite_targets():
    torch.manual_seed(0)
    method = ml.MAML(ml.MLP(1, (8,), 1), loss="mse")
    with clear_error(ValueError, "support_y", "non-finite"):
        method.adapt(torch.zeros(5, 1), nan_at(torch.zeros(5, 1)))


def test_error_adapt_non_finite_weights():
    method = maml_mlp()
    with torch.no_grad():
        next(method.parameters())[0, 0] = math.nan
    sx, sy, _ = one_task()
    with clear_error(FloatingPointError, "weights", "non-finite"):
        method.adapt(sx, sy)


def test_error_adapt_diverging_at_test_time_names_inner_lr():
    torch.manual_seed(0)
    method = ml.MAML(ml.MLP(FEAT := data()[0].shape[1], (16,), 3), ways=3, inner_lr=1e9, test_steps=3)
    assert FEAT == 8
    sx, sy, _ = one_task()
    with clear_error(FloatingPointError, "inner_lr"):
        method.adapt(sx, sy)


def test_correct_adapt_on_clean_support():
    sx, sy, qx = one_task()
    out = maml_mlp().adapt(sx, sy)(qx)
    assert out.shape == (qx.shape[0], 3) and torch.isfinite(out).all()


def test_correct_integer_token_inputs_train_when_the_model_takes_them(tmp_path):
    """The dtype check speaks only when the model fails: a network over token ids trains on int64 inputs."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 20, (60, 4), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = torch.arange(12).repeat_interleave(5)  # the first token says the class
    net = torch.nn.Sequential(torch.nn.Embedding(20, 6), torch.nn.Flatten())
    tasks = ml.EpisodeSampler(tokens, torch.arange(12).repeat_interleave(5), ways=3, shots=2, queries=2, seed=0)
    result = ml.train(ml.ProtoNet(net), tasks, out_dir=tmp_path / "r", **NO_SAVE)
    assert result.step == 12 and math.isfinite(result.best_val)
