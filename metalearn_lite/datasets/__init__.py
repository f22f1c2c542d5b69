"""Data: Omniglot from the shipped zips, the sinusoid task family, the copy task, image folders and a
generated data set of coloured shapes."""

from .image_folder import image_folder
from .omniglot import ALPHABET_SPLITS, Omniglot, load_omniglot, omniglot_split, read_image
from .shapes import make_shapes
from .sinusoid import SinusoidTasks

__all__ = ["ALPHABET_SPLITS", "Omniglot", "SinusoidTasks", "image_folder", "load_omniglot", "make_shapes",
           "omniglot_split", "read_image"]
