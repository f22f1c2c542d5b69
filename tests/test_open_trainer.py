"""The trainer's open parts: optimizer=, amp=, callbacks= and history.csv."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

import metalearn_lite as ml
from metalearn_lite.run_log import RunEvent


def _tasks(seed: int = 0) -> ml.EpisodeSampler:
    torch.manual_seed(0)
    x, y = torch.rand(40, 1, 4, 4), torch.arange(8).repeat_interleave(5)
    return ml.EpisodeSampler(x, y, ways=3, shots=1, queries=2, seed=seed)


class DtypeSpy(nn.Module):
    """A small encoder that records the dtype its output was computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8))
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        self.seen.append(out.dtype)
        return out


def _method() -> ml.ProtoNet:
    torch.manual_seed(0)
    return ml.ProtoNet(DtypeSpy())


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_optimizer_class_and_factory(tmp_path):
    seen: list[RunEvent] = []
    ml.train(_method(), _tasks(), steps=2, out_dir=tmp_path / "sgd", progress=False, lr=0.1,
             optimizer=torch.optim.SGD, callbacks=seen.append)
    opt = seen[0].optimizer
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.1
    factory = lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9)  # noqa: E731
    seen.clear()
    ml.train(_method(), _tasks(), steps=2, out_dir=tmp_path / "f", progress=False, optimizer=factory,
             callbacks=[seen.append])
    assert seen[0].optimizer.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="must build one"):
        ml.train(_method(), _tasks(), steps=1, out_dir=tmp_path / "x", progress=False, optimizer=lambda p: 3)
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer class"):
        ml.train(_method(), _tasks(), steps=1, out_dir=tmp_path / "y", progress=False, optimizer="adam")


def test_bf16_autocast_on_cpu_keeps_float32_weights(tmp_path):
    method = _method()
    result = ml.train(method, _tasks(), steps=3, out_dir=tmp_path, progress=False, amp="bf16")
    assert set(method.encoder.seen) == {torch.bfloat16}  # the forward pass ran under autocast
    assert all(p.dtype == torch.float32 for p in method.parameters())
    assert result.step == 3 and all(torch.isfinite(p).all() for p in method.parameters())


def test_amp_refusals(tmp_path):
    with pytest.raises(ValueError, match="amp must be one of"):
        ml.train(_method(), _tasks(), steps=1, out_dir=tmp_path, progress=False, amp="int8")
    with pytest.raises(ValueError, match="fp16.*is for CUDA.*use amp='bf16'"):
        ml.train(_method(), _tasks(), steps=1, out_dir=tmp_path, progress=False, amp="fp16", device="cpu")
    maml = ml.MAML(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), ways=3, inner_steps=1, zero_head=False)
    with pytest.raises(ValueError, match="refused for second-order MAML.*first_order=True"):
        ml.train(maml, _tasks(), steps=1, out_dir=tmp_path, progress=False, amp="bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_with_a_gradient_scaler_on_cuda(tmp_path):
    method = _method()
    x, y = torch.rand(40, 1, 4, 4), torch.arange(8).repeat_interleave(5)
    tasks = ml.EpisodeSampler(x.cuda(), y.cuda(), ways=3, shots=1, queries=2, seed=0)
    ml.train(method, tasks, steps=3, out_dir=tmp_path, progress=False, amp="fp16", device="cuda", save_every=3)
    assert set(method.encoder.seen) == {torch.float16}
    blob = torch.load(tmp_path / "last.pt", weights_only=True)
    assert blob["precision"]["scaler"]["scale"] > 0  # the scaler's state travels with the run


def test_history_csv_and_callbacks(tmp_path):
    events: list[RunEvent] = []
    ml.train(_method(), _tasks(), val_tasks=_tasks(seed=1), steps=4, val_every=2, val_episodes=4,
             out_dir=tmp_path, progress=False, callbacks=events.append)
    rows = _rows(tmp_path / "history.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "acc", "run_loss", "run_acc", "lr", "minutes", "val_acc", "score"} <= set(rows[0])
    assert [r["val_acc"] != "" for r in rows] == [False, True, False, True]
    assert [(e.kind, e.step) for e in events] == [("step", 1), ("step", 2), ("validation", 2), ("step", 3),
                                                  ("step", 4), ("validation", 4)]
    assert float(rows[1]["val_acc"]) == events[2].metrics["val_acc"]
    assert float(rows[0]["loss"]) == pytest.approx(events[0].metrics["loss"])


def test_history_after_a_crash_and_resume_equals_an_uninterrupted_run(tmp_path):
    def crash_at_3(event: RunEvent) -> None:
        if event.kind == "step" and event.step == 3:
            raise RuntimeError("simulated crash")

    ml.train(_method(), _tasks(), steps=5, save_every=2, out_dir=tmp_path / "straight", progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ml.train(_method(), _tasks(), steps=5, save_every=2, out_dir=tmp_path / "crash", progress=False,
                 callbacks=crash_at_3)
    assert [r["step"] for r in _rows(tmp_path / "crash" / "history.csv")] == ["1", "2", "3"]
    ml.train(_method(), _tasks(), steps=5, save_every=2, out_dir=tmp_path / "crash", progress=False)  # from step 2
    straight, resumed = _rows(tmp_path / "straight" / "history.csv"), _rows(tmp_path / "crash" / "history.csv")
    assert [r["step"] for r in resumed] == ["1", "2", "3", "4", "5"]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]


def test_callbacks_must_be_callable(tmp_path):
    with pytest.raises(ValueError, match="callbacks must be callables"):
        ml.train(_method(), _tasks(), steps=1, out_dir=tmp_path, progress=False, callbacks=[print, 3])
