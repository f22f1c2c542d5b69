"""The few-shot methods, one file per family, and the registry checkpoints rebuild them from."""

from __future__ import annotations

from .base import EpisodicMethod
from .maml import MAML
from .maml_regression import MAMLRegressor
from .mann import MANN, LSTMOneShot
from .ntm import NTMCopy
from .protonet import ProtoNet
from .reptile import Reptile, ReptileRegressor
from .siamese import SiameseNet, TripletNet
from .transfer import Pretrained

METHODS: dict[str, type[EpisodicMethod]] = {cls.name: cls for cls in (ProtoNet, SiameseNet, TripletNet)}
METHODS[Pretrained.name] = Pretrained  # transfer baselines: pretraining on all classes
METHODS.update({cls.name: cls for cls in (MAML, MAMLRegressor, Reptile, ReptileRegressor)})  # lesson 04
METHODS[NTMCopy.name] = NTMCopy  # memory-augmented: the NTM on the copy task
METHODS[MANN.name] = MANN  # memory-augmented: one-shot Omniglot sequences
METHODS[LSTMOneShot.name] = LSTMOneShot  # ... and their LSTM-only baseline


def build_method(name: str, **config) -> EpisodicMethod:
    """A fresh method from its registry name and config."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**config)
    except TypeError as err:
        raise ValueError(f"bad config for {name}: {err}") from err


__all__ = ["METHODS", "EpisodicMethod", "ProtoNet", "SiameseNet", "TripletNet", "build_method"]
