"""Fixtures of the browser tests: chromium through Playwright, one JupyterLab for the whole session,
and the screenshot folder with its response-time summary (its path is printed at the end of the run).

Environment variables:

* ``METALEARN_LITE_SCREENSHOTS``: the screenshot folder (default ``tests/browser/screenshots/``, git-ignored);
* ``METALEARN_LITE_README_SCREENSHOTS=1``: also write the README's screenshots into ``docs/screenshots/``
  (or into the folder given instead of ``1``);
* ``METALEARN_LITE_CHROMIUM``: a Chromium or Chrome executable to use instead of Debian's ``chromium``;
* ``METALEARN_LITE_BROWSER_MODE=full``: run the lessons in full mode (no quick mode) to measure the widgets'
  response times a reader gets (up to 20 minutes per lesson on 2 cores);
* ``CI``: when set, a missing chromium or playwright fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .lab import CHROMIUM_ARGS, MODE, REPO, LabServer, NotebookResult, ensure_chromium, skip_or_fail

#: every notebook's result in this session, for the summary printed at the end
RESULTS: list[NotebookResult] = []


def screenshot_folder() -> Path:
    return Path(os.environ.get("METALEARN_LITE_SCREENSHOTS") or REPO / "tests" / "browser" / "screenshots").resolve()


def readme_folder() -> Path | None:
    value = os.environ.get("METALEARN_LITE_README_SCREENSHOTS", "").strip()
    if value.lower() in ("", "0", "false", "no"):
        return None
    folder = REPO / "docs" / "screenshots" if value.lower() in ("1", "true", "yes") else Path(value).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed: `make test` installs it (the dev extra of pyproject.toml)")
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory):
    server = LabServer(tmp_path_factory.mktemp("lab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = screenshot_folder()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def results() -> list[NotebookResult]:
    return RESULTS


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", f"lessons in JupyterLab ({MODE} mode)")
    write(f"screenshots, summary.md and summary.json: {screenshot_folder()}")
    for r in RESULTS:
        write(
            f"{r.notebook}: opened in {_s(r.load_s)}, Run All Cells {_s(r.run_all_s)}, "
            f"{len(r.widgets)} widgets, whole test {_s(r.total_s)}"
        )
        for w in r.widgets:
            write(
                f"    cell {w.cell:2d}  {w.kind:8s} {w.label[:18]!r:20s} {w.change[:44]:44s} "
                f"response {_s(w.response_s):>7s}  {w.changed or 'NOTHING CHANGED'}"
            )


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"
