"""Automatic checks for the lessons' exercises.

Each ``check_*`` function takes the reader's function, tries it on cases with known answers, and
prints a confirmation, or what was wrong and a hint.  It returns ``None``, so that a notebook cell
ending in a check shows the verdict alone (a returned ``True``/``False`` would be echoed after it).
With ``strict=True`` a wrong answer raises :class:`CheckFailed` instead (the tests use this).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch


class CheckFailed(AssertionError):
    """A reader's answer did not pass; the message says what was wrong."""


#: What an exercise asks of the reader.  At most one exercise per lesson is an "implement" (re-typing code
#: the lesson printed); the others make the reader predict then run, derive, extend or ablate.
Kind = Literal["predict", "derive", "extend", "ablate", "implement"]


@dataclass(frozen=True)
class Exercise:
    """One exercise of a lesson, with its worked solution (kept in ``lessons/solutions/lessonNN.py``).

    Args:
        name: a short identifier, used by :func:`show_solution`.
        kind: "predict", "derive", "extend", "ablate" or "implement" (see :data:`Kind`).
        check: the lesson's check, called as ``check(*solution(), strict=True)``; it prints "Correct! ..."
            and returns ``None``, or raises :class:`CheckFailed` with a hint.
        solution: a function of no arguments that returns the arguments the check takes (the answer, and
            whatever measured value the check compares a prediction with).
    """

    name: str
    kind: Kind
    check: Callable[..., None]
    solution: Callable[[], tuple[Any, ...]]


def exercises(lesson: str) -> list[Exercise]:
    """The exercises of lesson ``lesson`` ("00" .. "07"), with their solutions."""
    module = importlib.import_module(f"{__package__}.solutions.lesson{lesson}")
    return list(module.EXERCISES)


def show_solution(lesson: str, name: str) -> None:
    """Print the worked solution of exercise ``name`` of lesson ``lesson``: try the exercise first."""
    found = {e.name: e for e in exercises(lesson)}
    if name not in found:
        raise KeyError(f"lesson {lesson} has no exercise {name!r}; its exercises are {sorted(found)}")
    module = inspect.getmodule(found[name].solution)
    helpers = [
        obj for key, obj in vars(module).items()
        if key.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
        and obj.__name__ in inspect.getsource(found[name].solution)
    ]
    for obj in [*helpers, found[name].solution]:
        print(inspect.getsource(obj))


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    """Same shape and equal within ``tol`` (compared in float64): how checks compare an answer."""
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def answer_tensor(got: Any, what: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """The reader's answer, checked to be a floating-point tensor (of ``shape`` if given) and returned
    as is (still attached to the graph); :class:`CheckFailed` naming the problem otherwise.  ``what``
    describes the expected value."""
    if got is None:
        raise CheckFailed(f"your function returned None: return the {what}")
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"your function returned a {type(got).__name__}; return a torch.Tensor: the {what}")
    if not got.dtype.is_floating_point:
        raise CheckFailed(f"your function returned a tensor of dtype {got.dtype}; the {what} must be floating point")
    if shape is not None and tuple(got.shape) != shape:
        raise CheckFailed(f"your function returned shape {tuple(got.shape)}, but the {what} has shape {shape}")
    return got


def report(check: Callable[[Any], str], answer: Any, strict: bool = False) -> None:
    """Run ``check(answer)``; print its success message or the reason it failed.  Returns ``None``: the
    printed verdict is the whole result (a notebook cell would echo a returned bool after it)."""
    try:
        message = check(answer)
    except CheckFailed as err:
        if strict:
            raise
        print(f"Not yet: {err}")
        return
    except NotImplementedError:  # the exercise's cell as the page leaves it
        if strict:
            raise CheckFailed("your function is not written yet (it raises NotImplementedError)") from None
        print("Not yet: write your answer in the cell above (it still raises NotImplementedError), then run it again")
        return
    except Exception as err:  # the reader's code raised: show it as feedback, not a crash
        if strict:
            raise CheckFailed(f"your function raised {type(err).__name__}: {err}") from err
        print(f"Not yet: your function raised {type(err).__name__}: {err}")
        return
    print(f"Correct! {message}")
