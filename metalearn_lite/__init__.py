"""metalearn-lite: small, tested PyTorch implementations of meta-learning and few-shot methods.

Every method wraps your own network and trains on your own tasks through one trainer::

    import metalearn_lite as ml

    method = ml.ProtoNet(encoder=my_cnn)                  # or ml.MAML(my_net, ways=5), ml.MatchingNet(...), ...
    x, y, names = ml.image_folder("my_images/", size=32)  # one subfolder per class
    tasks = ml.EpisodeSampler(x, y, ways=5, shots=1, queries=5, seed=0)
    result = ml.train(method, tasks, val_tasks=val_sampler, steps=500, out_dir="runs/mine")
    ml.evaluate(method, (x_test, y_test), ways=5, shots=1)
    ml.load_checkpoint(result.best_path, method=ml.ProtoNet(MyCNN()))

The package is layered, and imports run one way: core (episodes, the few-shot contract, distances, models,
devices, evaluation) <- data (``datasets``) <- methods (``algorithms``) <- training and checkpoints <-
``recipes`` (the course's Omniglot runs) and the command line <- ``lessons``.
"""

from ._malloc import malloc_tuned, tune_for_training
from .algorithms import (
    MAML,
    MANN,
    AdaptedModel,
    BaselinePlusPlus,
    EpisodicMethod,
    FineTune,
    LinearProbe,
    LSTMOneShot,
    MatchingNet,
    MetaLSTM,
    NTMCopy,
    Pretrained,
    ProtoMAML,
    ProtoNet,
    RelationNet,
    Reptile,
    SiameseNet,
    TripletNet,
)
from .algorithms.learned_optimizer import LearnedOptimizer
from .checkpoints import available_pretrained, load_checkpoint, load_pretrained, save_checkpoint
from .datasets import (
    ALPHABET_SPLITS,
    Omniglot,
    SinusoidTasks,
    image_folder,
    load_omniglot,
    make_shapes,
    omniglot_split,
    read_image,
)
from .datasets.quadratics import MLPProblems, QuadraticProblems
from .devices import default_device
from .episode_loader import EpisodeBatchSampler, EpisodeCollate, LoaderTasks, episode_loader
from .episodes import Episode, EpisodeSampler
from .evaluation import EvalResult, evaluate, mean_ci
from .fewshot import FewShotClassifier, class_means
from .models import MLP, BatchStatNorm2d, Conv4, RelationModule
from .run_log import RunEvent
from .training import TrainConfig, TrainResult, train

__version__ = "0.2.0"

__all__ = [
    "ALPHABET_SPLITS",
    "MAML",
    "MANN",
    "MLP",
    "AdaptedModel",
    "BaselinePlusPlus",
    "BatchStatNorm2d",
    "Conv4",
    "Episode",
    "EpisodeBatchSampler",
    "EpisodeCollate",
    "EpisodeSampler",
    "EpisodicMethod",
    "EvalResult",
    "FewShotClassifier",
    "FineTune",
    "LSTMOneShot",
    "LinearProbe",
    "LoaderTasks",
    "MetaLSTM",
    "NTMCopy",
    "Omniglot",
    "Pretrained",
    "ProtoNet",
    "Reptile",
    "RunEvent",
    "SiameseNet",
    "SinusoidTasks",
    "TrainConfig",
    "TrainResult",
    "TripletNet",
    "available_pretrained",
    "class_means",
    "default_device",
    "episode_loader",
    "evaluate",
    "image_folder",
    "load_checkpoint",
    "load_omniglot",
    "load_pretrained",
    "make_shapes",
    "malloc_tuned",
    "mean_ci",
    "omniglot_split",
    "read_image",
    "save_checkpoint",
    "train",
    "tune_for_training",
]
__all__ += ["LearnedOptimizer", "MLPProblems", "QuadraticProblems"]
__all__ += ["MatchingNet", "ProtoMAML", "RelationModule", "RelationNet"]
