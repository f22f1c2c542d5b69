"""What only the notebooks need: the quick-mode switch, plotting helpers and exercise checks."""

from .quick import QUICK, budget

__all__ = ["QUICK", "budget"]
