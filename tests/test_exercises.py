"""The shared exercise-check machinery: a check prints its verdict and returns None (no echoed bool)."""

from __future__ import annotations

import pytest
from conftest import check_fails, check_passes

from metalearn_lite.lessons.exercises import CheckFailed, report
from metalearn_lite.lessons.lesson00 import check_episode_sizes


def _sizes_right(ways, shots, queries):
    return ways * shots, ways * queries


def _sizes_swapped(ways, shots, queries):
    return ways * queries, ways * shots


def test_report_prints_correct_and_returns_none(capsys):
    assert report(lambda answer: f"{answer} is fine.", 42) is None
    assert capsys.readouterr().out == "Correct! 42 is fine.\n"


def test_report_prints_not_yet_and_returns_none(capsys):
    def check(answer):
        raise CheckFailed(f"{answer} is wrong")

    assert report(check, 7) is None
    assert capsys.readouterr().out == "Not yet: 7 is wrong\n"


def test_report_turns_the_readers_exception_into_feedback(capsys):
    def check(answer):
        return answer()

    assert report(check, lambda: 1 / 0) is None
    assert capsys.readouterr().out.startswith("Not yet: your function raised ZeroDivisionError")
    with pytest.raises(CheckFailed, match="ZeroDivisionError"):
        report(check, lambda: 1 / 0, strict=True)


def test_episode_sizes_check():
    assert "ways x shots" in check_passes(check_episode_sizes, _sizes_right)
    check_fails(check_episode_sizes, _sizes_swapped, "5-way 1-shot", "Hint")
    check_fails(check_episode_sizes, lambda w, s, q: None, "returned None")
