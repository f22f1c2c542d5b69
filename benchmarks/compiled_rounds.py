"""How the compiled-step benchmarks time their variants: the first compiled step apart, then interleaved rounds.

Used by ``protonet_step.py --compiled`` and ``compiled_step.py``; not a benchmark itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any


def compiled_rounds(step: Callable[[str, Any], float], names: Iterable[str], sample: Callable[[], Any],
                    repeats: int, warmup: int = 3) -> dict[str, float]:
    """``step(name, batch) -> seconds`` for every variant in ``names`` on the same batches (``sample()``).

    The first step of ``"compiled"`` is timed alone (it compiles the forward and the backward); then ``warmup``
    untimed rounds and ``repeats`` timed ones, each running every variant once on one new batch.  Returns
    ``{"<name>_ms": median}`` and ``"first_compiled_step_s"``.
    """
    names = list(names)
    first = step("compiled", sample())
    for _ in range(warmup):
        batch = sample()
        for name in names:
            step(name, batch)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        batch = sample()
        for name in names:
            times[name].append(step(name, batch))
    out = {f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()}
    out["first_compiled_step_s"] = first
    return out
