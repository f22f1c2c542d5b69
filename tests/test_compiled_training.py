"""The compiled channels_last training path of the embeddings (Siamese, Triplet) and of the pretraining baseline
computes the eager path's gradients, and the trainer's ``compile=True`` trains as the eager trainer does.

Every compile costs seconds, so the shapes are tiny and shared: the Siamese and Triplet tests and the trainer's
run embed the same 10 images per step with the same Conv-4, whose compiled graph Inductor then reuses from
its cache.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch
from test_compiled_metric import HAS_CXX, assert_same_gradients, episode, first_conv

from metalearn_lite.algorithms import Pretrained, SiameseNet, TripletNet
from metalearn_lite.models import Conv4
from metalearn_lite.recipes.omniglot import OmniglotEpisodes
from metalearn_lite.recipes.settings import TaskSettings
from metalearn_lite.training import TrainConfig, train

needs_cxx = pytest.mark.skipif(not HAS_CXX, reason="torch.compile on a CPU needs a C++ compiler (c++, g++ or clang++)")


def tiny(cls, **kwargs):
    torch.manual_seed(0)  # the same initial weights for both copies
    return cls(Conv4(hidden=8, **kwargs))


def pretraining_backbone(norm: str = "running") -> Conv4:
    torch.manual_seed(0)
    return Conv4(hidden=8, norm=norm)


def backward(model: torch.nn.Module, batch) -> None:
    model.train()
    loss, _ = model.loss(batch)
    loss.backward()


def refuse_in_eval(*args):
    raise AssertionError("the compiled step was used in evaluation")


def assert_evaluation_is_eager(eager: torch.nn.Module, fast: torch.nn.Module, batch) -> None:
    """Evaluation (the loss in eval mode, and few-shot logits) gives the eager results, with ``fast``'s compiled
    step replaced by :func:`refuse_in_eval`: it is never called there."""
    task = episode(tasks=1, ways=5, shots=1, queries=2)
    with torch.no_grad():
        torch.testing.assert_close(fast.eval().loss(batch)[0], eager.eval().loss(batch)[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fast.logits(task.support_x[0], task.support_y[0], task.query_x[0]),
                                   eager.logits(task.support_x[0], task.support_y[0], task.query_x[0]),
                                   rtol=1e-5, atol=1e-5)


@needs_cxx
@pytest.mark.parametrize("cls", [SiameseNet, TripletNet])
def test_compiled_embedding_has_the_eager_gradients(cls):
    eager, fast = tiny(cls), tiny(cls)
    fast.compile_training()
    compiled = fast._compiled_embed
    fast.compile_training()  # idempotent: nothing converted or compiled twice
    assert fast._compiled_embed is compiled
    assert first_conv(fast.encoder).weight.is_contiguous(memory_format=torch.channels_last)
    batch = episode(tasks=1, ways=5, shots=2, queries=0)  # P classes x K examples, as the recipes draw them
    for model in (eager, fast):
        backward(model, batch)
    assert_same_gradients(eager, fast)
    fast._compiled_embed = refuse_in_eval
    assert_evaluation_is_eager(eager, fast, batch)


@needs_cxx
@pytest.mark.parametrize("norm", ["running", "batch"])
def test_compiled_pretraining_has_the_eager_gradients(norm):
    # nn.BatchNorm2d (running statistics) on a CPU: channels_last only (compiling was measured slower)
    eager, fast = (Pretrained(pretraining_backbone(norm), classes=12) for _ in range(2))
    fast.compile_training()
    fast.compile_training()
    assert fast.layout_only == (norm == "running")
    assert (fast._compiled_logits == fast.pretraining_logits) == (norm == "running")
    assert first_conv(fast.backbone).weight.is_contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(2)
    batch = SimpleNamespace(images=torch.rand(24, 1, 28, 28, generator=g), labels=torch.arange(12).repeat(2))
    for model in (eager, fast):
        backward(model, batch)
    assert_same_gradients(eager, fast)
    fast._compiled_logits = refuse_in_eval
    assert_evaluation_is_eager(eager, fast, batch)


@pytest.mark.parametrize("make", [lambda: tiny(SiameseNet), lambda: tiny(TripletNet),
                                  lambda: Pretrained(pretraining_backbone("batch"), classes=12)],
                         ids=["siamese", "triplet", "pretrained"])
def test_without_a_cpp_compiler_compile_training_refuses_and_changes_nothing(monkeypatch, make):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    method = make()
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        method.compile_training()
    last_conv = [m for m in method.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # 8 channels in: unambiguous
    assert not last_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert getattr(method, "_compiled_embed", None) is None and getattr(method, "_compiled_logits", None) is None


@needs_cxx
def test_trainer_compiled_run_follows_the_eager_run(tmp_path, capsys):
    """``train(..., compile=True)``: the same tasks from the same seed give the eager run's losses."""
    cfg = TrainConfig(steps=3, val_every=3, save_every=3, val_episodes=4, compile=False)
    losses = {}
    for compile in (False, True):
        source = OmniglotEpisodes(TaskSettings(ways=5, shots=2, queries=0, rotations=False, seed=0),
                                  torch.device("cpu"), cfg.val_episodes, queries=0)
        seen = []
        result = train(tiny(SiameseNet), source, source, cfg, out_dir=tmp_path / str(compile), progress=False,
                       compile=compile, callbacks=lambda e, seen=seen: seen.append(e.metrics["loss"])
                       if e.kind == "step" else None)
        assert result.step == 3 and (tmp_path / str(compile) / "best.pt").exists()
        losses[compile] = seen
    assert len(losses[True]) == 3
    # the contrastive loss's distances cancel (|a|^2 + |b|^2 - 2 a.b between near embeddings), which turns the
    # forward's float32 rounding into relative differences of the loss of up to 4e-5 (measured, steps 1-3); a
    # real difference (a wrong layout, another batch) is of order 1e-1
    torch.testing.assert_close(torch.tensor(losses[True]), torch.tensor(losses[False]), rtol=2e-4, atol=0)
    assert "compiled the training step in" in capsys.readouterr().out  # the compile time is reported


def test_pretraining_on_a_cpu_with_running_statistics_changes_the_layout_only(monkeypatch):
    """No C++ compiler is needed where nothing is compiled, and the trainer says what it did."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    method = Pretrained(pretraining_backbone("running"), classes=12)
    method.compile_training()
    assert method.layout_only and first_conv(method.backbone).weight.is_contiguous(memory_format=torch.channels_last)
