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


def check_device(name: str | torch.device) -> torch.device:
    """The device ``name`` if this machine has it, else a ``ValueError`` saying what to use instead."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda (cuda:N) or mps") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU "
                             "(torch.cuda.is_available() is False): use cpu, or install a CUDA build of PyTorch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                             "GPU(s), cuda:0 ...")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {name!r} asked for, but Apple's MPS is not available here: use cpu")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported: use cpu, cuda or mps")
    return device
