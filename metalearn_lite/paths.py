"""Where the shipped data and the decoding cache live.

The Omniglot zips and the pretrained checkpoints ship inside the package (``metalearn_lite/data/``), so a
wheel or sdist install finds them from any folder, offline.  They are located with ``importlib.resources``;
``$METALEARN_LITE_DATA`` points the package at another folder with the same layout (``omniglot/`` and
``checkpoints/`` subfolders) instead.
"""

from __future__ import annotations

import atexit
import os
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

_PACKAGE_DATA: Path | None = None


def package_data() -> Path:
    """The ``data/`` folder shipped inside the installed package (extracted to a temporary folder in the rare
    case that the package is imported from a zip file)."""
    global _PACKAGE_DATA
    if _PACKAGE_DATA is None:
        found = resources.files("metalearn_lite").joinpath("data")
        if isinstance(found, Path):
            _PACKAGE_DATA = found
        else:  # pragma: no cover - only for a package imported from a zip archive
            extracted = ExitStack()  # the extracted copy lives until the interpreter exits
            atexit.register(extracted.close)
            _PACKAGE_DATA = Path(extracted.enter_context(resources.as_file(found)))
    return _PACKAGE_DATA


def data_root() -> Path:
    """``$METALEARN_LITE_DATA`` if set, else the package's own ``data/`` folder (:func:`package_data`)."""
    env = os.environ.get("METALEARN_LITE_DATA")
    return Path(env).expanduser() if env else package_data()


def data_root_origin() -> str:
    """Where :func:`data_root` comes from, for messages: the variable, or the package."""
    if os.environ.get("METALEARN_LITE_DATA"):
        return "$METALEARN_LITE_DATA"
    return "the data shipped inside the metalearn_lite package"


def cache_dir() -> Path:
    """``$METALEARN_LITE_CACHE`` if set, else ``~/.cache/metalearn_lite`` (created on demand)."""
    env = os.environ.get("METALEARN_LITE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metalearn_lite"


def __getattr__(name: str) -> Path:
    """``REPO_DATA``, the old name of the shipped data folder, still answers (it is the package's now)."""
    if name == "REPO_DATA":
        return package_data()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
