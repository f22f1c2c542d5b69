"""The fast training path of a method: ``channels_last`` convolutions and ``torch.compile``.

Both change how the step is computed, never what: ``channels_last`` stores a convolution's weights and
inputs ``(B, C, H, W)`` with the channels innermost (the layout the CPU's convolution kernels prefer),
and ``torch.compile`` fuses the step's operations into generated C++ (CPU) or Triton (CUDA) kernels.
Compiling is paid once, at the first training step (tens of seconds on a laptop CPU; less when
TorchInductor's on-disk cache, ``TORCHINDUCTOR_CACHE_DIR``, already holds the kernels).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def check_compiler(device: torch.device) -> None:
    """``ValueError`` saying what to do when ``torch.compile`` cannot run: on a CPU it needs a C++ compiler."""
    if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise ValueError("torch.compile on a CPU needs a C++ compiler (c++, g++ or clang++ on the PATH); "
                         "install one (e.g. apt install g++) or train without --compile")


def _inputs_channels_last(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                 else a for a in args)


def to_channels_last(module: nn.Module) -> bool:
    """Store a convolutional ``module``'s 4-d weights in ``channels_last`` and convert its 4-d inputs
    ``(B, C, H, W)`` on the way in (a forward pre-hook): the same maths, a faster layout.  Returns whether
    the module has an ``nn.Conv2d`` (a module without one is left as it is)."""
    if not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return False
    module.to(memory_format=torch.channels_last)
    module.register_forward_pre_hook(_inputs_channels_last)
    return True


def compiling_is_slower(method: nn.Module) -> bool:
    """Whether compiling ``method``'s step was measured slower than ``channels_last`` alone: on a CPU, with
    ``nn.BatchNorm2d`` keeping running statistics (the pretraining recipe's Conv-4), Inductor's fused batch-norm
    backward is slower than the native kernel (``benchmarks/compiled_step.py``: pretraining 1.00x compiled
    against 1.39x for channels_last alone)."""
    running = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in method.modules())
    return running and next(method.parameters()).device.type == "cpu"


def compile_for_training(method: nn.Module, step: Callable[..., Any], choose: bool = True) -> Callable[..., Any]:
    """The steps every method's ``compile_training`` shares: check that ``torch.compile`` can run (else
    ``ValueError``, with ``method`` left as it was), move each convolutional sub-network of ``method`` (its
    direct children) to ``channels_last`` (:func:`to_channels_last`), and return ``step`` (the part of the
    training loss that carries the work) under ``torch.compile(dynamic=False)``: one compiled graph per input
    shape, compiled at its first call.  The caller keeps the result and calls it in training mode only.

    Where compiling was measured slower (:func:`compiling_is_slower`) only the layout changes, ``step`` comes back
    as it is and ``method.layout_only`` is ``True`` (the trainer says so); ``choose=False`` compiles anyway (for
    the benchmark that measures the choice)."""
    layout_only = choose and compiling_is_slower(method)
    if not layout_only:
        check_compiler(next(method.parameters()).device)
    for module in method.children():
        to_channels_last(module)
    method.layout_only = layout_only
    return step if layout_only else torch.compile(step, dynamic=False)
