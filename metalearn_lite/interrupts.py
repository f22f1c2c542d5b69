"""Interrupts taken at a step boundary: SIGINT (Ctrl-C, a Jupyter "interrupt") and SIGTERM are noted, not raised.

Inside :class:`DeferredSignals` a first SIGINT or SIGTERM only sets :attr:`~DeferredSignals.signal`; the
training loop looks at it between steps, so the step in progress runs to its end (weights, optimiser,
random states and checkpoints all of one step).  A second signal raises :class:`KeyboardInterrupt` at once
(for a step that never ends); the trainer then discards the half-done step (:class:`StepSnapshot`).
Signal handlers can only be set in the main thread; elsewhere the block runs with the handlers it found.
"""

from __future__ import annotations

import copy
import signal
import threading
from types import FrameType
from typing import Any

import torch

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DeferredSignals:
    """A context in which SIGINT and SIGTERM are noted (``signal`` holds the first one's number)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """A stop was asked for."""
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


class StepSnapshot:
    """Everything one training step changes, copied before it, so that a step cut short can be undone:
    the module's weights and buffers, the optimiser's and scheduler's states, the random generators (the
    task source's and torch's), and the loop's own values (``values``, any picklable dict)."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 generators: dict[str, torch.Generator], values: dict[str, Any]) -> None:
        self.module_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.scheduler_state = copy.deepcopy(scheduler.state_dict())
        self.generator_states = {k: g.get_state() for k, g in generators.items()}
        self.torch_state = torch.get_rng_state()
        self.values = copy.deepcopy(values)

    def restore(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                generators: dict[str, torch.Generator]) -> dict[str, Any]:
        """Put everything back as it was; returns the loop's values."""
        module.load_state_dict(self.module_state)
        optimizer.load_state_dict(self.optimizer_state)
        scheduler.load_state_dict(self.scheduler_state)
        for k, g in generators.items():
            g.set_state(self.generator_states[k])
        torch.set_rng_state(self.torch_state)
        return self.values
