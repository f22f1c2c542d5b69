"""Every lesson has exercises that teach, and every worked solution passes its own check.

A lesson has at least three exercises (lesson 00: two), at most one of kind "implement" (re-typing code
the lesson printed); the solutions live in ``metalearn_lite/lessons/solutions/lessonNN.py``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from metalearn_lite.lessons.exercises import exercises, show_solution

LESSONS = sorted(p.name[:2] for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
ALL = [(lesson, e.name) for lesson in LESSONS for e in exercises(lesson)]


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_lesson_has_exercises_that_teach(lesson: str) -> None:
    found = exercises(lesson)
    assert len(found) >= (2 if lesson == "00" else 3), f"lesson {lesson} has {len(found)} exercises"
    kinds = [e.kind for e in found]
    assert kinds.count("implement") <= 1, f"lesson {lesson}: {kinds.count('implement')} re-typing exercises"
    assert len({e.name for e in found}) == len(found)


@pytest.mark.parametrize(("lesson", "name"), ALL, ids=[f"{lesson}-{name}" for lesson, name in ALL])
def test_solution_passes_its_check(lesson: str, name: str) -> None:
    (exercise,) = [e for e in exercises(lesson) if e.name == name]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = exercise.check(*exercise.solution(), strict=True)
    assert result is None
    assert printed.getvalue().startswith("Correct!"), printed.getvalue()


@pytest.mark.parametrize(("lesson", "name"), ALL[:1])
def test_show_solution_prints_the_source(lesson: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    show_solution(lesson, name)
    assert "def " in capsys.readouterr().out
    with pytest.raises(KeyError, match="has no exercise"):
        show_solution(lesson, "no-such-exercise")
