"""Lesson 00, start here: the checks of its exercises (the size of a task, the width of an error bar, and
what more classes per task do to accuracy).

A check prints "Correct! ..." or "Not yet: ..." and returns ``None``; ``strict=True`` raises
:class:`~metalearn_lite.lessons.exercises.CheckFailed` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .exercises import CheckFailed, report

__all__ = ["check_ci_width", "check_episode_sizes", "check_ways_prediction"]


def _episode_sizes(fn: Callable[[int, int, int], tuple[int, int]]) -> str:
    for ways, shots, queries in [(5, 1, 15), (20, 5, 5), (3, 2, 0)]:
        got = fn(ways, shots, queries)
        want = (ways * shots, ways * queries)
        if got is None:
            raise CheckFailed("your function returned None: return a pair (support images, query images)")
        if tuple(got) != want:
            raise CheckFailed(
                f"for a {ways}-way {shots}-shot task with {queries} queries per class you returned {tuple(got)}, "
                f"but it holds {want}. Hint: every one of the {ways} classes contributes shots support "
                "and queries query images"
            )
    return "a task holds ways x shots support images and ways x queries query images."


def check_episode_sizes(fn: Callable[[int, int, int], tuple[int, int]], strict: bool = False) -> None:
    """``fn(ways, shots, queries) -> (support images, query images)``.  Prints the verdict and returns ``None``."""
    return report(_episode_sizes, fn, strict)


def check_ci_width(fn: Callable[[float, int, int], float] | None, ci: float, episodes: int, new_episodes: int,
                   measured: float, strict: bool = False) -> None:
    """Derive: ``fn(ci, episodes, new_episodes) -> predicted ci`` (95 % half-widths, any unit), compared with
    the closed form ``ci * sqrt(episodes / new_episodes)``, and with ``measured``, the half-width measured on
    ``new_episodes`` tasks when ``episodes`` tasks gave ``ci``.  Prints the verdict and returns ``None``."""

    def judge(f: Callable[[float, int, int], float] | None) -> str:
        if f is None:
            raise CheckFailed("write predicted_ci(ci, episodes, new_episodes) first")
        for c, n, m in [(1.0, 600, 150), (0.64, 600, 2400), (2.0, 100, 400)]:
            got = f(c, n, m)
            if got is None:
                raise CheckFailed("predicted_ci returned None: return the predicted half-width")
            want = c * math.sqrt(n / m)
            if not math.isclose(float(got), want, rel_tol=0.02):
                hint = ("it changes linearly with the number of tasks, but the standard error of a mean of n "
                        "values is std / sqrt(n)") if math.isclose(float(got), c * n / m, rel_tol=0.02) else \
                    "the half-width is 1.96 * std / sqrt(n): how does it change when n changes?"
                raise CheckFailed(f"from a half-width of {c} on {n} tasks you predict {float(got):.3g} on {m}, "
                                  f"but it is {want:.3g}. Hint: {hint}")
        predicted = float(f(ci, episodes, new_episodes))
        if not math.isclose(predicted, measured, rel_tol=0.25):
            raise CheckFailed(f"the rule is right, yet the half-width measured on {new_episodes} tasks "
                              f"({measured:.3g}) is far from {predicted:.3g}: did you pass the {episodes}-task "
                              "half-width?")
        return (f"{episodes} -> {new_episodes} tasks scales the interval by sqrt({episodes}/{new_episodes}) = "
                f"{math.sqrt(episodes / new_episodes):.2f}: {ci:.3g} predicts {predicted:.3g}, and the run "
                f"measured {measured:.3g}.")

    return report(judge, fn, strict)


_WAYS_CHOICES = {
    "a": "about the same as 5-way",
    "b": "lower than 5-way, but still several times chance (5 %)",
    "c": "at chance (5 %)",
}


def check_ways_prediction(choice: str | None, acc_5way: float, acc_20way: float, strict: bool = False) -> None:
    """Predict-then-run: ``choice`` ("a", "b" or "c", see the lesson) for the pixel baseline's 20-way 1-shot
    accuracy, against the measured ``acc_5way`` and ``acc_20way`` (fractions).  Prints the verdict and
    returns ``None``."""

    def judge(c: str | None) -> str:
        if c is None:
            raise CheckFailed("set my_choice to 'a', 'b' or 'c' before running the measuring cell")
        if not isinstance(c, str) or c.strip().lower() not in _WAYS_CHOICES:
            raise CheckFailed(f"my_choice must be one of 'a', 'b', 'c'; got {c!r}")
        if acc_20way >= acc_5way - 0.05:
            truth = "a"
        elif acc_20way >= 2 * (1 / 20):
            truth = "b"
        else:
            truth = "c"
        said = c.strip().lower()
        measured = f"5-way {100 * acc_5way:.1f} %, 20-way {100 * acc_20way:.1f} %"
        if said != truth:
            raise CheckFailed(f"you chose ({said}) {_WAYS_CHOICES[said]}; measured: {measured}, so ({truth}) "
                              f"{_WAYS_CHOICES[truth]}. Hint: with 20 classes there are 19 wrong candidates "
                              "to confuse a query with instead of 4, yet a nearest-mean rule still uses what the "
                              "pixels share")
        return (f"({truth}) {_WAYS_CHOICES[truth]}: {measured}. More classes mean more look-alikes to confuse, "
                "so compare a method with chance for the same number of ways, never across ways.")

    return report(judge, choice, strict)
