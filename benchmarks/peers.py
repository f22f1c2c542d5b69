"""learn2learn 0.2.0 and higher 0.2.1, imported for the benchmarks' comparison columns when they are present.

metalearn-lite never depends on either (``pyproject.toml`` and ``environment.yml`` do not name them, and they
are not installed in the project's environment).  To compare against them, install both into a folder of their
own and put it on ``PYTHONPATH`` after the worktree, for example ``/work/peers``::

    # higher 0.2.1: pure Python
    pip install --no-deps --target /work/peers higher==0.2.1

    # learn2learn 0.2.0: its published C files (Cython 0.29) do not compile on Python 3.11, so
    # regenerate them from the .pyx sources with a current Cython (kept in a throwaway folder)
    pip download --no-deps --no-binary :all: learn2learn==0.2.0 -d /tmp/l2l
    tar xzf /tmp/l2l/learn2learn-0.2.0.tar.gz -C /tmp/l2l
    pip install --target /tmp/cy cython
    cd /tmp/l2l/learn2learn-0.2.0/learn2learn/data
    for f in meta_dataset task_dataset transforms; do PYTHONPATH=/tmp/cy python /tmp/cy/bin/cython -3 $f.pyx; done
    cd - && pip install --no-build-isolation --no-deps --target /work/peers /tmp/l2l/learn2learn-0.2.0

    PYTHONPATH=.:/work/peers python benchmarks/maml_step.py --only conv4

(``pip`` and ``python`` being the project environment's; learn2learn 0.2.0's package also installs a
top-level ``tests`` folder into the target, which the worktree's own ``tests`` shadows on that path.)

learn2learn's ``__init__`` imports all its subpackages, among them ``learn2learn.vision`` (needs torchvision)
and ``learn2learn.gym`` (needs gym), which the project does not install.  The parts the benchmarks use
(``learn2learn.algorithms``, ``learn2learn.nn``) need neither, so when the ordinary import fails on one of those
missing third-party modules, :func:`learn2learn_module` registers the ``learn2learn`` package object without running
its ``__init__`` and imports the submodule from the installed files as they are (nothing patched or stubbed).  The
one difference: names that ``__init__`` would re-export at the top level (``learn2learn.clone_module``, ...) and
subpackages it would import eagerly are absent unless imported by their full name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from types import ModuleType

#: the versions the columns are meant for (issue 24); another installed version is used but named in the output
VERSIONS = {"learn2learn": "0.2.0", "higher": "0.2.1"}
INSTALL = {
    "higher": "pip install --no-deps --target /work/peers higher==0.2.1",
    "learn2learn": "install it as benchmarks/peers.py shows (its Cython files regenerated for Python 3.11)",
}
#: how learn2learn was imported in this process ("" until it was)
l2l_note = ""


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def learn2learn_module(sub: str) -> ModuleType | None:
    """``learn2learn.<sub>`` (e.g. ``"algorithms"``), or None when learn2learn is not installed."""
    global l2l_note
    if not _installed("learn2learn"):
        return None
    try:
        module = importlib.import_module(f"learn2learn.{sub}")
        l2l_note = l2l_note or "imported normally"
        return module
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] == "learn2learn":
            raise
        missing = err.name
    for name in [m for m in sys.modules if m.split(".")[0] == "learn2learn"]:
        del sys.modules[name]  # what the failed import left behind
    spec = importlib.util.find_spec("learn2learn")
    sys.modules["learn2learn"] = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    l2l_note = f"package __init__ skipped: it imports {missing}, not installed"
    return importlib.import_module(f"learn2learn.{sub}")


def higher_module() -> ModuleType | None:
    """The ``higher`` package, or None when it is not installed."""
    return importlib.import_module("higher") if _installed("higher") else None


def version(name: str) -> str:
    return importlib.metadata.version(name)


def describe(available: dict[str, bool]) -> list[str]:
    """One line per library: the version found (and how learn2learn was imported), or how to install it."""
    lines = []
    for name, ok in available.items():
        if ok:
            v = version(name)
            extra = f" (not {VERSIONS[name]}, the version the columns are meant for)" if v != VERSIONS[name] else ""
            how = f"; {l2l_note}" if name == "learn2learn" and l2l_note else ""
            lines.append(f"{name} {v}{extra}: found{how}")
        else:
            lines.append(f"{name} {VERSIONS[name]}: not importable, its column is left out (never a dependency of "
                         f"metalearn-lite; to compare, {INSTALL[name]}, and run with PYTHONPATH=.:/work/peers)")
    return lines
