"""What can be checked before the first training step: the run folder, and whether the model accepts the tasks.

A mistake found here costs nothing; found after hours of training (a run folder that is a file, a model
built for other images) it costs the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .finite import non_finite_inputs, tensors_of
from .models import Conv4


def check_out_dir(out: Path) -> None:
    """``ValueError`` unless ``out`` is (or can be made) a folder this process can write to."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is a file, not a folder: choose another path for the run folder "
                         "(or move the file away)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to the run folder {out} ({err.strerror or err}): choose a folder you may "
                         "write to (out_dir= / --out)") from err


def _inputs(batch: Any) -> torch.Tensor | None:
    """The examples of a batch: ``support_x`` of an episode, else its first tensor."""
    named = dict(tensors_of(batch))
    if "support_x" in named:
        return named["support_x"]
    return next(iter(named.values()), None)


def _first(module: nn.Module, kind: type) -> Any:
    return next((m for m in module.modules() if isinstance(m, kind)), None)


def input_mismatch(method: nn.Module, batch: Any) -> str | None:
    """What about the tasks' inputs the model will not accept (dtype, channels, image size), with the fix;
    ``None`` when nothing is visibly wrong."""
    x = _inputs(batch)
    weight = next((p for p in method.parameters() if p.dtype.is_floating_point), None)
    if x is None or weight is None:
        return None
    if not x.dtype.is_floating_point:
        return (f"the tasks hold {x.dtype} inputs, but the model computes in {weight.dtype}: convert the data "
                f"with x.float() (and divide 0..255 bytes by 255) before building the task source")
    if x.dtype != weight.dtype:
        return (f"the tasks hold {x.dtype} inputs, but the model's weights are {weight.dtype}: convert the data "
                f"with x.to({weight.dtype}) (or the model with .to({x.dtype}))")
    conv = _first(method, nn.Conv2d)
    if conv is not None and x.dim() >= 3:
        channels = x.shape[-3]
        if channels != conv.in_channels:
            kind = "to grayscale" if conv.in_channels == 1 else f"to {conv.in_channels} channels"
            return (f"the images have {channels} channel(s) but the model's first convolution takes "
                    f"{conv.in_channels}: build the network with in_channels={channels} (e.g. "
                    f"Conv4(in_channels={channels})), or convert the images {kind}")
        net = _first(method, Conv4)
        size = getattr(net, "image_size", None)
        if net is not None and net.head is not None and x.shape[-1] == x.shape[-2] >= 16 \
                and net.embedding_dim(x.shape[-1]) != net.embedding_dim(size):
            return (f"the images are {x.shape[-2]}x{x.shape[-1]} pixels but the model was built for "
                    f"{size}x{size}: build it with image_size={x.shape[-1]} (Conv4(image_size={x.shape[-1]}, ...); "
                    f"CLI: --set image_size={x.shape[-1]}) or resize the images to {size}")
    return None


def check_first_task(method: nn.Module, batch: Any, loss_of: Any) -> None:
    """One forward pass of the training loss on the first meta-batch, with clear errors for non-finite inputs and
    for inputs the model cannot take (``ValueError`` naming what to convert or which ``image_size`` to pass,
    from :func:`input_mismatch`, when the pass fails: a model that takes integer token ids is not refused).
    The caller restores whatever the pass changed."""
    bad = non_finite_inputs(batch)
    if bad:
        raise ValueError(f"the first training tasks hold non-finite values (NaN or inf) in {bad}: clean the data "
                         "(e.g. torch.nan_to_num, or drop those examples) before building the task source")
    x = _inputs(batch)
    try:
        loss_of(batch)
    except (RuntimeError, ValueError) as err:  # torch's shape and dtype errors, from deep inside the network
        problem = input_mismatch(method, batch)
        if problem:
            raise ValueError(problem) from err
        if isinstance(err, ValueError):  # the model's own message
            raise
        shape = f"{tuple(x.shape)} {x.dtype}" if x is not None else "?"
        reason = (str(err).splitlines() or [""])[0]
        raise ValueError(f"{type(method).__name__} cannot run on the first training task (inputs {shape}): "
                         f"{reason}; build the network for these inputs (their channels, size and dtype) or "
                         "convert the data") from err
