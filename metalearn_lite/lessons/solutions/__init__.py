"""Worked solutions to the lessons' exercises, one module per lesson (``lesson04.py``).

They live apart from the modules a lesson imports, so a reader sees a solution only by asking:
``metalearn_lite.lessons.show_solution("04", "anil_vs_full")`` prints it.  Each module defines
``EXERCISES``, a list of :class:`~metalearn_lite.lessons.exercises.Exercise`; the test suite runs
every solution through its own check (``tests/test_exercise_solutions.py``).
"""
