"""The few-shot methods, one file per family, and the registry checkpoints rebuild them from."""

from __future__ import annotations

from .base import EpisodicMethod
from .protonet import ProtoNet
from .siamese import SiameseNet, TripletNet

METHODS: dict[str, type[EpisodicMethod]] = {cls.name: cls for cls in (ProtoNet, SiameseNet, TripletNet)}


def build_method(name: str, **config) -> EpisodicMethod:
    """A fresh method from its registry name and config."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**config)
    except TypeError as err:
        raise ValueError(f"bad config for {name}: {err}") from err


__all__ = ["METHODS", "EpisodicMethod", "ProtoNet", "SiameseNet", "TripletNet", "build_method"]
