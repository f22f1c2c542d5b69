"""Where the shipped data and the decoding cache live."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository's ``data/`` folder (the package is installed editable from the repository).
REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def data_root() -> Path:
    """``$METALEARN_LITE_DATA`` if set, else the repository's ``data/`` folder."""
    env = os.environ.get("METALEARN_LITE_DATA")
    return Path(env).expanduser() if env else REPO_DATA


def cache_dir() -> Path:
    """``$METALEARN_LITE_CACHE`` if set, else ``~/.cache/metalearn_lite`` (created on demand)."""
    env = os.environ.get("METALEARN_LITE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metalearn_lite"
