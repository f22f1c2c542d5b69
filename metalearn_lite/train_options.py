"""The trainer's open parts: which optimiser, and mixed precision.

``optimizer=`` is a ``torch.optim.Optimizer`` class (built as ``cls(params, lr=lr, weight_decay=weight_decay)``
from the run's settings) or a factory ``f(params) -> optimizer`` that sets its own hyper-parameters; the default
is Adam.  ``amp=`` runs each step's forward pass under ``torch.autocast``:

* ``"bf16"``: bfloat16 on the CPU or CUDA.  Its 8 exponent bits cover float32's range, so no loss scaling;
* ``"fp16"``: float16 on CUDA, with a ``torch.amp.GradScaler`` that multiplies the loss before ``backward``
  (small gradients would round to zero in float16) and skips a step whose gradients overflowed.

Second-order MAML (``first_order=False``) is refused under either: its meta-gradient runs through the inner
loop's own gradients (second derivatives, built with ``create_graph=True``), and whether those survive rounding
to bfloat16 or float16 has not been checked against float32 here; the trainer refuses rather than hand back a
meta-gradient nobody has verified.  Train it in float32, or with ``first_order=True`` under ``amp``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

AMP_CHOICES = (None, "bf16", "fp16")


def make_optimizer(optimizer: Any, params: Iterable[torch.nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The run's optimiser (see the module docstring)."""
    params = list(params)
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if inspect.isclass(optimizer) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr, weight_decay=weight_decay)
    if callable(optimizer):
        built = optimizer(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise ValueError(f"optimizer(params) returned a {type(built).__name__}, not a torch.optim.Optimizer: "
                             "the factory must build one, e.g. lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)")
        return built
    raise ValueError(f"optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.SGD) or a factory "
                     f"params -> optimizer; got {type(optimizer).__name__}")


class Precision:
    """Autocast and loss scaling for one run (``amp`` ``None``, ``"bf16"`` or ``"fp16"`` on ``device``)."""

    def __init__(self, amp: str | None, device: torch.device, method: Any) -> None:
        if amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}; got {amp!r}")
        if amp == "fp16" and device.type != "cuda":
            raise ValueError(f"amp='fp16' (float16 with a gradient scaler) is for CUDA; this run is on {device.type}: "
                             "use amp='bf16' there")
        if amp is not None and device.type not in ("cpu", "cuda"):
            raise ValueError(f"amp is supported on the CPU and CUDA; this run is on {device.type}: use amp=None")
        if amp is not None and getattr(method, "name", "") == "maml" and not getattr(method, "first_order", True):
            raise ValueError(
                f"amp={amp!r} is refused for second-order MAML: its meta-gradient goes through the inner loop's "
                "second derivatives, whose accuracy in low precision has not been checked against float32 "
                "(metalearn_lite.train_options); train it with amp=None, or set first_order=True")
        self.amp, self.device = amp, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, clip: Callable[[], Any] | None = None) -> None:
        """``clip()`` (on unscaled gradients), then the optimiser's step (skipped by the scaler on overflow)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip is not None:
            clip()
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
