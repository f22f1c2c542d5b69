"""What a course task source is built from: the task settings, kept apart from the run's settings
(:class:`~metalearn_lite.training.TrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import non_negative_int, positive_int, probability

BY = ("alphabet", "character")


@dataclass
class TaskSettings:
    """Everything that says what a training task is (stored in every checkpoint as ``task_config``).

    A recipe uses the fields that apply to its tasks: Omniglot episodes use the first group, the
    NTM's copy task ``max_length``, an image folder (``data``) ``val_classes`` and ``grayscale``.
    """

    ways: int = 20
    shots: int = 5
    queries: int = 5
    rotations: bool = True  # add 90/180/270-degree rotations of the training characters as new classes
    mirrors: bool = False  # add the mirror image of every training class (after rotations)
    augment: bool = False  # a random affine distortion of every training image
    by: str = "alphabet"  # split Omniglot by alphabet (test alphabets unseen) or by character
    same_alphabet: float = 0.0  # fraction of training episodes whose classes all come from one alphabet
    image_size: int = 28
    val_ways: int = 5
    val_shots: int = 1
    max_length: int = 20  # copy task: training sequences of lengths 1..max_length
    data: str | None = None  # an image folder (one subfolder per class) instead of Omniglot
    val_classes: float = 0.2  # share of the folder's classes held out for validation
    grayscale: bool = True  # read the folder's images as one channel
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "image_size", "val_ways", "val_shots", "max_length"):
            positive_int(name, getattr(self, name))
        non_negative_int("queries", self.queries)
        if self.by not in BY:
            raise ValueError(f"by must be one of {list(BY)}; got {self.by!r}")
        probability("same_alphabet", self.same_alphabet, "a fraction of the training episodes")
        if not 0 < self.val_classes < 1:
            raise ValueError(f"val_classes is the share of the folder's classes kept for validation, in (0, 1); "
                             f"got {self.val_classes!r}")
