"""Tiny models and synthetic tasks for the fault suite (milliseconds per training step on a CPU), a checkpoint as
version 0.1 wrote it, and the two outcome classes a probe may assert: a clear error that names the fix (raised, or
printed by the command line), or the correct result."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import metalearn_lite as ml
from metalearn_lite.checkpoints import FORMAT_1
from metalearn_lite.cli import main
from metalearn_lite.integrity import content_digest

FEATURES, CLASSES, PER_CLASS = 8, 12, 5


def data(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``CLASSES`` classes of ``PER_CLASS`` vectors, each class around its own random centre."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, FEATURES, generator=g) * 2
    x = centres.repeat_interleave(PER_CLASS, 0) + torch.randn(CLASSES * PER_CLASS, FEATURES, generator=g)
    return x.to(dtype), torch.arange(CLASSES).repeat_interleave(PER_CLASS)


def sampler(seed: int = 0, x: torch.Tensor | None = None, **kw: Any) -> ml.EpisodeSampler:
    dx, dy = data()
    shape = {"ways": 3, "shots": 2, "queries": 2, **kw}
    return ml.EpisodeSampler(dx if x is None else x, dy, seed=seed, **shape)


def encoder() -> nn.Module:
    """An MLP with a batch norm (buffers that a forward pass changes) and dropout (torch's global generator)."""
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8))


def protonet(seed: int = 0) -> ml.ProtoNet:
    torch.manual_seed(seed)
    return ml.ProtoNet(encoder())


def maml_mlp(inner_lr: float = 0.1) -> ml.MAML:
    torch.manual_seed(0)
    return ml.MAML(ml.MLP(FEATURES, (16,), 3), ways=3, inner_lr=inner_lr, inner_steps=1, first_order=True,
                   zero_head=False)


FAST = dict(steps=12, val_every=4, save_every=5, val_episodes=4, lr=0.01, progress=False)


@contextmanager
def clear_error(kind: type[BaseException], *words: str):
    """A probe whose outcome is a clear error: ``kind``, one message naming every word in ``words``
    (what went wrong and the fix), and never the unsafe ``weights_only=False``."""
    with pytest.raises(kind) as err:
        yield err
    message = str(err.value)
    for w in words:
        assert re.search(w, message, re.IGNORECASE), f"{w!r} not in: {message}"
    assert "weights_only=False" not in message


def refused(capsys, args: list[str], *words: str) -> str:
    """``main(args)`` exits with 2 and one line on stderr holding every word."""
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in {err}"
    assert "weights_only=False" not in err
    return err


def checkpoint_0_1(path: Path, seed: int = 0) -> ml.ProtoNet:
    """Write a ProtoNet on an 8-filter Conv-4 at ``path`` as version 0.1 did (format 1: the Conv-4's sizes in the
    method's config, no network spec, the digest of the rest); returns the method whose weights it holds."""
    torch.manual_seed(seed)
    method = ml.ProtoNet(ml.Conv4(hidden=8)).eval()
    blob = {"format": FORMAT_1, "method": "protonet",
            "config": {"hidden": 8, "norm": "batch", "distance": "euclidean", "in_channels": 1},
            "state_dict": {k: v.clone() for k, v in method.state_dict().items()}, "torch_version": "2.1.0",
            "command": "python -m metalearn_lite train protonet --hidden 8 --seed 0", "seed": seed,
            "history": [{"step": 2, "loss": 1.25, "val_acc": 0.5}], "step": 2, "best_val": 0.5}
    blob["sha256"] = content_digest(blob)
    torch.save(blob, path)
    return method
