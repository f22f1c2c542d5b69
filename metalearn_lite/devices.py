"""Choosing where tensors live."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The best device this machine offers: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None, like: torch.Tensor | None = None) -> torch.device:
    """``device`` if given, else the device of ``like``, else the CPU."""
    if device is not None:
        return torch.device(device)
    if like is not None:
        return like.device
    return torch.device("cpu")
