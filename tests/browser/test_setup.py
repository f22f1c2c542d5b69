"""The browser tests' set-up: without chromium they skip with a clear message, or fail under CI."""

from __future__ import annotations

import pytest

from . import lab


def test_skip_locally_fail_under_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        lab.skip_or_fail("no chromium")
    for value in ("true", "1", "yes"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match=r"(?s)no chromium.*CI is set"):
            lab.skip_or_fail("no chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        lab.skip_or_fail("no chromium")


def test_missing_chromium_without_root_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("METALEARN_LITE_CHROMIUM", raising=False)
    monkeypatch.setattr(lab, "find_chromium", lambda: None)
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y chromium"):
        lab.ensure_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        lab.ensure_chromium()


def test_a_wrong_chromium_path_is_named(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("METALEARN_LITE_CHROMIUM", str(tmp_path / "no-such-browser"))
    assert lab.find_chromium() is None
    with pytest.raises(pytest.skip.Exception, match="no-such-browser"):
        lab.ensure_chromium()


def test_tracebacks_are_told_from_warnings() -> None:
    assert lab.TRACEBACK.search("---\nValueError                 Traceback (most recent call last)\nCell In[3], line 1")
    assert lab.TRACEBACK.search("  Cell In[1], line 1\n    x =\n       ^\nSyntaxError: invalid syntax")
    assert not lab.TRACEBACK.search("/x/y.py:12: UserWarning: the figure layout has changed\n  fig.tight_layout()")
