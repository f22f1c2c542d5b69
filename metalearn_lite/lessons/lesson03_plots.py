"""Kept for lesson 06, which imports two of lesson 03's helpers from here: everything else of lesson 03 is
in :mod:`metalearn_lite.lessons.lesson03`.  Import from there; this shim goes once lesson 06 does."""

from .lesson03 import plot_history, public_command

__all__ = ["plot_history", "public_command"]
