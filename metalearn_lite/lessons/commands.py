"""A recorded training command as a lesson shows it: without the machine's paths."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

__all__ = ["public_command"]


def public_command(command: str) -> str:
    """``command`` with every absolute path shown as ``<scratch>/name``.

    Training commands record where their run folder was (often a temporary directory); that path says
    nothing about the model, and a lesson's output should not show the machine's paths.  Relative paths
    (``runs/x``, ``data/checkpoints/x.pt``) are kept.
    """
    return re.sub(r"(?<![\w.~-])/(?:[^\s/]+/)*[^\s/]+", lambda m: f"<scratch>/{PurePosixPath(m.group(0)).name}",
                  command)
