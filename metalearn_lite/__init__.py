"""metalearn-lite: small, tested PyTorch implementations of meta-learning and few-shot methods.

The public API::

    from metalearn_lite import (
        default_device,            # cuda, then mps, then cpu
        omniglot_split, read_image, SinusoidTasks,   # data
        EpisodeSampler, Episode,   # N-way K-shot Q-query tasks as stacked tensors
        Conv4, MLP,                # backbones
        FewShotClassifier, evaluate, mean_ci,        # the contract and its measurement
        load_pretrained, load_checkpoint,            # trained models
    )
"""

from ._malloc import MALLOC_TUNED
from .checkpoints import available_pretrained, load_checkpoint, load_pretrained
from .datasets import ALPHABET_SPLITS, Omniglot, SinusoidTasks, load_omniglot, omniglot_split, read_image
from .devices import default_device
from .episodes import Episode, EpisodeSampler
from .evaluation import EvalResult, evaluate, mean_ci
from .fewshot import FewShotClassifier
from .models import MLP, Conv4

__version__ = "0.1.0"

__all__ = [
    "ALPHABET_SPLITS",
    "MALLOC_TUNED",
    "available_pretrained",
    "load_checkpoint",
    "load_pretrained",
    "Conv4",
    "Episode",
    "EpisodeSampler",
    "EvalResult",
    "FewShotClassifier",
    "MLP",
    "Omniglot",
    "SinusoidTasks",
    "default_device",
    "evaluate",
    "load_omniglot",
    "mean_ci",
    "omniglot_split",
    "read_image",
]
