"""A training run's record: ``history.csv`` in the run folder, and the callbacks told of every step.

``history.csv`` has one row per optimisation step (``step``, ``loss``, ``acc``: that step's own values;
``run_loss``, ``run_acc``: the running averages the progress bar shows; ``lr``; ``minutes``) and, on the steps
that validate, the validation metrics in their own columns (``val_acc``, ...; empty on the other rows).  A
resumed run first drops the rows after the step it resumes from, so the file always describes the steps the
weights went through.  Plot it with any tool: ``pandas.read_csv("runs/x/history.csv")``.

A callback is any ``callable(event)``, called after every step (``event.kind == "step"``) and every validation
(``"validation"``); :class:`RunEvent` says what it gets.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HISTORY = "history.csv"
FIRST = ["step", "loss", "acc", "run_loss", "run_acc", "lr", "minutes"]


@dataclass(frozen=True)
class RunEvent:
    """What a callback is told: ``kind`` (``"step"`` or ``"validation"``), the ``step`` just finished, its
    ``metrics`` (those of the row in ``history.csv``), and the ``method`` and ``optimizer`` being trained."""

    kind: str
    step: int
    metrics: dict[str, float]
    method: Any = field(repr=False, default=None)
    optimizer: Any = field(repr=False, default=None)


def check_callbacks(callbacks: Callable[[RunEvent], Any] | Iterable[Callable[[RunEvent], Any]] | None
                    ) -> list[Callable[[RunEvent], Any]]:
    """``callbacks`` as a list (one callable, or several); ``ValueError`` for anything not callable."""
    if callbacks is None:
        return []
    found = [callbacks] if callable(callbacks) else list(callbacks)
    wrong = [type(c).__name__ for c in found if not callable(c)]
    if wrong:
        raise ValueError(f"callbacks must be callables taking one RunEvent (def on_event(event): ...); got {wrong}")
    return found


class RunLog:
    """Writes ``out_dir/history.csv`` (when ``write``) and calls the callbacks."""

    def __init__(self, out_dir: Path, callbacks: list[Callable[[RunEvent], Any]], write: bool = True,
                 resume_step: int = 0) -> None:
        self.path = out_dir / HISTORY
        self.callbacks, self.write = callbacks, write
        self.columns, self.rows = list(FIRST), []
        self._pending: dict[str, float] | None = None
        if write and resume_step > 0 and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or FIRST)
                self.rows = [r for r in reader if r.get("step") and int(r["step"]) <= resume_step]
        if write:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{HISTORY}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)

    def _append(self, row: dict[str, Any]) -> None:
        row = {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        self.rows.append(row)
        if not self.write:
            return
        if set(row) - set(self.columns):
            self.columns += [k for k in row if k not in self.columns]
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)

    def _notify(self, event: RunEvent) -> None:
        for callback in self.callbacks:
            callback(event)

    def step(self, step: int, metrics: dict[str, float], method: Any, optimizer: Any) -> None:
        """Record a finished step (its row is written at once, or with its validation if one follows)."""
        self.flush()
        self._pending = {"step": step, **metrics}
        self._notify(RunEvent("step", step, dict(metrics), method, optimizer))

    def validation(self, step: int, metrics: dict[str, float], method: Any, optimizer: Any) -> None:
        """Add a validation's metrics to the row of ``step``."""
        if self._pending is None or self._pending["step"] != step:
            self.flush()
            self._pending = {"step": step}
        self._pending.update(metrics)
        self._notify(RunEvent("validation", step, dict(metrics), method, optimizer))

    def flush(self) -> None:
        """Write the row of the last step, if not yet written."""
        if self._pending is not None:
            self._append(self._pending)
            self._pending = None
