"""Checks of the common argument kinds, one definition each, so that every function says the same thing.

Each returns the value it accepts (so ``self.ways = positive_int("ways", ways)`` reads as one step) and
raises a ``ValueError`` that names the argument, the value given and what to pass instead.  ``True`` and
``False`` are refused where a count is asked for (in Python ``True == 1``, which would hide a slip).

Example::

    positive_int("ways", 0)      # ValueError: ways must be a positive int; got 0
    int_at_least("steps", -1, 0) # ValueError: steps must be an int >= 0; got -1
"""

from __future__ import annotations

import math
import numbers


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(name: str, value: object, low: int, hint: str = "") -> int:
    """``value`` if it is an ``int`` (not a bool) of at least ``low``, else ``ValueError``
    ``"{name} must be an int >= {low}{hint}; got {value!r}"``."""
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{hint}; got {value!r}")
    return value


def positive_int(name: str, value: object, hint: str = "") -> int:
    """``value`` if it is an ``int`` >= 1 (not a bool), else ``ValueError``
    ``"{name} must be a positive int{hint}; got {value!r}"``; ``hint`` says what it counts, e.g.
    ``" (pixels per side, e.g. 28)"``."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int{hint}; got {value!r}")
    return value


def non_negative_int(name: str, value: object) -> int:
    """``value`` if it is an ``int`` >= 0 (not a bool): a number of steps, where none is allowed."""
    return int_at_least(name, value, 0)


def flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (not ``1``, ``"yes"`` or ``None``), else ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite_number(name: str, value: object) -> float:
    """``float(value)`` if it is a finite real number (not a bool, NaN or infinity), else ``ValueError``."""
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def positive_number(name: str, value: object) -> float:
    """``float(value)`` if it is a finite real number > 0, else ``ValueError``."""
    if not _is_real(value) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return float(value)


def probability(name: str, value: object, meaning: str = "a probability") -> float:
    """``float(value)`` if it is a real number in ``[0, 1]`` (not a bool), else ``ValueError``
    ``"{name} is {meaning}: a number in [0, 1]; got {value!r}"``."""
    if not _is_real(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} is {meaning}: a number in [0, 1]; got {value!r}")
    return float(value)
