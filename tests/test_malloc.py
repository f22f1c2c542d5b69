"""glibc malloc tuning at import, and its opt-out environment variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import metalearn_lite
from metalearn_lite import _malloc

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")


def imported_flag(**env: str) -> str:
    """``MALLOC_TUNED`` as seen by a fresh interpreter that imports the package."""
    full = {k: v for k, v in os.environ.items() if k != "METALEARN_LITE_MALLOC_TUNING"}
    full.update(env, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", "import metalearn_lite; print(metalearn_lite.MALLOC_TUNED)"],
        env=full, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@linux_only
def test_import_tunes_malloc_on_linux():
    if os.environ.get("METALEARN_LITE_MALLOC_TUNING") == "0":
        pytest.skip("tuning switched off in this environment")
    assert metalearn_lite.MALLOC_TUNED is True
    assert _malloc.MALLOC_TUNED is True
    assert _malloc.tune_malloc() is True  # idempotent


@linux_only
def test_opt_out_in_subprocess():
    assert imported_flag(METALEARN_LITE_MALLOC_TUNING="0") == "False"
    assert imported_flag() == "True"


def test_tune_malloc_respects_env(monkeypatch):
    monkeypatch.setenv("METALEARN_LITE_MALLOC_TUNING", "0")
    assert _malloc.tune_malloc() is False


def test_tune_malloc_off_other_platforms(monkeypatch):
    monkeypatch.delenv("METALEARN_LITE_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(_malloc.sys, "platform", "darwin")
    assert _malloc.tune_malloc() is False
