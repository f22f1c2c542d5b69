"""Every lesson in a real JupyterLab, in a real browser (quick mode).

For each notebook: open it in the lab started as `make lab` starts it; its committed outputs must render
without "Error displaying widget" and without JavaScript errors; Run All Cells must run every cell with
no error traceback and no echoed matplotlib repr in any output; then every widget control (slider,
dropdown, checkbox, button...) is changed once, and the output it drives must change (its text or the
pixels of its figure) within 60 s.  Screenshots of each widget's output before and after, and every
response time (summary.md, summary.json), go to the screenshot folder (see conftest.py).

    nice -n 19 .venv/bin/python -m pytest tests/browser -x -q          # or: make test-browser
    METALEARN_LITE_README_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser -k 00_start_here
"""

from __future__ import annotations

import shutil
import time

import pytest

from .conftest import readme_folder
from .lab import NOTEBOOKS, LessonPage, write_summary

NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
#: the lesson whose page and first widget become the README's screenshots
README_NOTEBOOK = "00_start_here.ipynb"


@pytest.mark.parametrize("notebook", NOTEBOOK_PATHS, ids=lambda path: path.stem)
def test_lesson_in_jupyterlab(notebook, browser, lab, screenshots, results) -> None:
    folder = screenshots / notebook.stem
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"screenshots: {folder}")
    readme = readme_folder() if notebook.name == README_NOTEBOOK else None
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    lesson = LessonPage(page, lab, notebook, folder, readme)
    results.append(lesson.result)
    start = time.perf_counter()
    try:
        lesson.open()
        lesson.run_all()
        if readme is not None:
            lesson.readme_page_shot()
        if lesson.kernel_idle():
            lesson.exercise_widgets()
            lesson.check_tracebacks("after moving the widgets")
            lesson.check_widget_errors("after moving the widgets")
            lesson.check_stray_reprs("after moving the widgets")
    finally:
        lesson.result.total_s = round(time.perf_counter() - start, 2)
        write_summary(screenshots, results)
        context.close()
        try:
            lab.close_sessions(notebook.name)
        except OSError:
            pass
    problems = lesson.result.problems + [f"JavaScript error: {e}" for e in lesson.result.page_errors]
    assert not problems, f"{notebook.name} ({len(problems)} problems; screenshots in {folder}):\n" + "\n".join(
        f"- {p}" for p in problems
    )
