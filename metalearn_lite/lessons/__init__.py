"""What only the notebooks need: the quick-mode switch, plotting helpers and exercise checks."""

from .exercises import show_solution
from .quick import QUICK, budget

__all__ = ["QUICK", "budget", "show_solution"]
