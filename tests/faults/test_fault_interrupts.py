"""Exact resume from any interruption: a run interrupted at many points (drawing tasks, the forward and backward
passes, inside and after the optimiser's step, validation, saving best.pt or last.pt, SIGINT, SIGTERM, a second
SIGINT) and then resumed ends with bit-identical weights, the same best.pt and the same history as a run that was
never interrupted, with validation tasks and without (best.pt then follows the running training loss)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from faultkit import FAST, protonet, sampler

import metalearn_lite as ml
from metalearn_lite import training
from metalearn_lite.checkpoints import read_checkpoint
from metalearn_lite.training import FixedTasks


class Validation:
    """Fixed validation tasks whose ``validate`` can be made to raise on its ``fail_at``-th call."""

    def __init__(self) -> None:
        self.tasks = FixedTasks(sampler(seed=1), 4)
        self.calls, self.fail_at = 0, 0

    def validate(self, method):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.tasks.validate(method)


def run(out, validated: bool, arm=None):
    method, tasks = protonet(), sampler()
    val = Validation() if validated else None
    fired = arm(method, tasks, val) if arm else None
    result = ml.train(method, tasks, val, out_dir=out, **FAST)
    return method, result, fired


def summary(out):
    best, last = read_checkpoint(out / "best.pt"), read_checkpoint(out / "last.pt")
    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in last["history"]]
    return best, last, strip


@pytest.fixture(scope="module", params=[True, False], ids=["val", "noval"])
def reference(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    method, result, _ = run(out, request.param)
    assert result.step == 12 and not result.interrupted
    return request.param, method, summary(out)


def counter(k: int, action):
    """A wrapper factory: call ``action`` on the ``k``-th call, the real function otherwise."""
    state = {"n": 0, "fired": False}

    def wrap(real):
        def inner(*args, **kwargs):
            state["n"] += 1
            if state["n"] == k:
                state["fired"] = True
                return action(real, *args, **kwargs)
            return real(*args, **kwargs)
        return inner
    return state, wrap


def interrupt(real, *args, **kwargs):
    raise KeyboardInterrupt


def after(real, *args, **kwargs):
    real(*args, **kwargs)
    raise KeyboardInterrupt


def half_step(real, self, *args, **kwargs):  # the first weight updated, the rest not: a half-applied step
    with torch.no_grad():
        self.param_groups[0]["params"][0].add_(0.5)
    raise KeyboardInterrupt


def send(*signals):
    def action(real, *args, **kwargs):
        for s in signals:
            os.kill(os.getpid(), s)
        return real(*args, **kwargs)
    return action


def point(name: str, monkeypatch):
    """An arm(method, tasks, val) that interrupts at ``name``; the sampler's and loss's call 1 is the check
    of the first tasks before step 1, so call k is step k - 1."""
    def arm(method, tasks, val):
        if name == "sample":
            state, wrap = counter(7, interrupt)
            monkeypatch.setattr(tasks, "sample", wrap(tasks.sample))
        elif name in ("forward", "sigint", "sigterm", "double-sigint"):
            action = {"forward": interrupt, "sigint": send(signal.SIGINT), "sigterm": send(signal.SIGTERM),
                      "double-sigint": send(signal.SIGINT, signal.SIGINT)}[name]
            state, wrap = counter(7, action)
            monkeypatch.setattr(method, "loss", wrap(method.loss))
        elif name == "backward":
            state, wrap = counter(6, interrupt)
            hook = wrap(lambda g: None)
            next(method.parameters()).register_hook(lambda g: hook(g))
        elif name in ("optimizer-half-step", "optimizer-after-step"):
            state, wrap = counter(6 if name == "optimizer-half-step" else 8,
                                  half_step if name == "optimizer-half-step" else after)
            monkeypatch.setattr(torch.optim.Adam, "step", wrap(torch.optim.Adam.step))
        elif name == "validation":
            val.fail_at = 2
            state = {"fired": True}
        else:  # saves: "save-best-before", "save-best-after", "save-last-after"
            file = "best.pt" if "best" in name else "last.pt"
            k = 1 if file == "best.pt" else 2
            real_save = training.save_checkpoint
            state = {"n": 0, "fired": False}

            def save(path, model, **extra):
                if path.name == file:
                    state["n"] += 1
                    if state["n"] == k:
                        state["fired"] = True
                        if name.endswith("after"):
                            real_save(path, model, **extra)
                        raise KeyboardInterrupt
                return real_save(path, model, **extra)
            monkeypatch.setattr(training, "save_checkpoint", save)
        return state
    return arm


POINTS = ["sample", "forward", "backward", "optimizer-half-step", "optimizer-after-step", "validation",
          "save-best-before", "save-best-after", "save-last-after", "sigint", "sigterm", "double-sigint"]


@pytest.mark.parametrize("where", POINTS)
def test_correct_resume_after_interrupt_matches_an_uninterrupted_run(reference, where, tmp_path, monkeypatch):
    validated, ref_method, (ref_best, ref_last, ref_history) = reference
    if where == "validation" and not validated:
        pytest.skip("no validation tasks: nothing validates")
    out = tmp_path / "run"
    _, result, fired = run(out, validated, point(where, monkeypatch))
    monkeypatch.undo()
    assert fired["fired"] and result.interrupted, "the interrupt must have happened"
    assert (out / "last.pt").is_file() and result.step < 12
    if where in ("sigint", "sigterm"):  # taken at the step boundary: the step in progress finished
        assert result.step == 6
    if where in ("forward", "double-sigint", "sample"):  # the step in progress was undone
        assert result.step == 5
    assert not list(out.glob(".*tmp*")), "no temporary files left behind"

    method, resumed, _ = run(out, validated)  # fresh weights: everything comes from last.pt
    assert resumed.step == 12 and not resumed.interrupted
    best, last, history = summary(out)
    for k, v in ref_method.state_dict().items():
        assert torch.equal(method.state_dict()[k], v), k
    for k, v in ref_best["state_dict"].items():
        assert torch.equal(best["state_dict"][k], v), f"best.pt {k}"
    assert best["step"] == ref_best["step"] and best["best_val"] == ref_best["best_val"]
    assert history == ref_history and last["running_loss"] == ref_last["running_loss"]
