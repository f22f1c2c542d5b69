"""The methods, one file per family, each wrapping the reader's own network, and the registry that
checkpoints rebuild them from (``method.name -> class``)."""

from __future__ import annotations

from .base import EpisodicMethod
from .batched_classifier import BatchedClassifier
from .gradient_learner import AdaptedModel, GradientLearner
from .learned_optimizer import LearnedOptimizer, hand_designed, meta_train, optimize, tune_learning_rate
from .maml import MAML
from .mann import MANN, LSTMOneShot
from .matching import MatchingNet
from .meta_lstm import MetaLSTM
from .ntm import NTMCopy
from .proto_maml import ProtoMAML
from .protonet import ProtoNet
from .relation import RelationNet
from .reptile import Reptile
from .siamese import SiameseNet, TripletNet
from .transfer import BaselinePlusPlus, FineTune, LinearProbe, Pretrained

METHODS: dict[str, type[EpisodicMethod]] = {
    cls.name: cls for cls in (ProtoNet, SiameseNet, TripletNet, Pretrained, MAML, Reptile, NTMCopy, MANN, LSTMOneShot,
                              MetaLSTM, MatchingNet, RelationNet, ProtoMAML)
}


def build_method(name: str, **config) -> EpisodicMethod:
    """A fresh method from its registry name and a checkpoint's config (networks as specs)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name].from_config(config)


__all__ = ["METHODS", "MAML", "MANN", "AdaptedModel", "BaselinePlusPlus", "EpisodicMethod", "FineTune",
           "LSTMOneShot", "LinearProbe", "NTMCopy", "Pretrained", "ProtoNet", "Reptile", "SiameseNet", "TripletNet",
           "build_method", "MetaLSTM"]
__all__ += ["BatchedClassifier", "GradientLearner", "MatchingNet", "ProtoMAML", "RelationNet"]
__all__ += ["LearnedOptimizer", "hand_designed", "meta_train", "optimize", "tune_learning_rate"]
