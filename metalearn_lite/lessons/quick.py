"""Quick mode: the one switch that lets the test suite run every lesson in seconds.

Set ``METALEARN_LITE_QUICK=1`` (the README's test command does) and every lesson shrinks its
budgets (training steps, evaluation episodes, widget ranges) through :func:`budget`.  A reader
running the notebook normally gets the full numbers.
"""

from __future__ import annotations

import os

#: True when ``METALEARN_LITE_QUICK`` is set to anything but ``""``, ``"0"`` or ``"false"``.
QUICK: bool = os.environ.get("METALEARN_LITE_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def budget(full: int, quick: int) -> int:
    """``quick`` in quick mode, else ``full``: ``episodes = budget(600, 20)``."""
    return quick if QUICK else full
