"""Lesson 00's exercise checks: right answers pass, typical wrong ones fail with a hint."""

from __future__ import annotations

import math

import pytest
from conftest import check_passes

from metalearn_lite.lessons.exercises import CheckFailed
from metalearn_lite.lessons.lesson00 import check_ci_width, check_ways_prediction


def test_check_ci_width():
    check_passes(check_ci_width, lambda ci, n, m: ci * math.sqrt(n / m), 0.64, 600, 150, 1.3)
    check_passes(check_ci_width, lambda ci, n, m: ci * (n / m) ** 0.5, 0.64, 600, 150, 1.1)
    cases = [
        (None, "write predicted_ci"),
        (lambda ci, n, m: ci * n / m, "linearly"),            # the standard error is not 1/n
        (lambda ci, n, m: ci, "1.96"),                        # width does not depend on n
        (lambda ci, n, m: None, "returned None"),
    ]
    for fn, match in cases:
        with pytest.raises(CheckFailed, match=match):
            check_ci_width(fn, 0.64, 600, 150, 1.3, strict=True)
    with pytest.raises(CheckFailed, match="far from"):  # right rule, but not what the run measured
        check_ci_width(lambda ci, n, m: ci * math.sqrt(n / m), 0.64, 600, 150, 3.0, strict=True)


def test_check_ways_prediction(capsys):
    check_passes(check_ways_prediction, "b", 0.39, 0.20)
    check_passes(check_ways_prediction, " B ", 0.39, 0.20)
    check_passes(check_ways_prediction, "c", 0.39, 0.06)  # the check follows the measurement
    for choice, match in [("a", "so \\(b\\)"), ("c", "so \\(b\\)"), ("d", "one of"), (None, "set my_choice")]:
        with pytest.raises(CheckFailed, match=match):
            check_ways_prediction(choice, 0.39, 0.20, strict=True)
    assert check_ways_prediction(None, 0.39, 0.20) is None
    assert capsys.readouterr().out.startswith("Not yet:")
