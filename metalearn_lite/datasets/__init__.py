"""Data: Omniglot from the shipped zips, and the sinusoid task family."""

from .omniglot import ALPHABET_SPLITS, Omniglot, load_omniglot, omniglot_split, read_image
from .sinusoid import SinusoidTasks

__all__ = ["ALPHABET_SPLITS", "Omniglot", "SinusoidTasks", "load_omniglot", "omniglot_split", "read_image"]
