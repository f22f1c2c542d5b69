"""What every trainable few-shot method shares: its config, its episodic loss, its classifier API."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..episodes import Episode
from ..fewshot import FewShotMixin


class EpisodicMethod(FewShotMixin, nn.Module):
    """Base of the trainable methods.

    A subclass sets ``name`` (the registry key), stores the keyword arguments that rebuild it in
    ``self.config`` (plain JSON values: checkpoints carry them), and implements

    * ``loss(episode) -> (loss, accuracy)`` on a training meta-batch, and
    * ``logits(support_x, support_y, query_x)`` for one task (:class:`FewShotClassifier`).

    ``queries_needed`` says whether its training episodes need query examples.  A method that
    trains on something other than Omniglot episodes (sinusoid tasks, sequences, flat batches)
    overrides ``task_source``; ``train_defaults`` holds the :class:`~metalearn_lite.training.TrainConfig`
    values its CLI uses when a flag is not given.
    """

    name: ClassVar[str] = ""
    queries_needed: ClassVar[bool] = True
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = dict(config)

    def loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def task_source(self, config: Any, device: torch.device) -> Any:
        """The :class:`~metalearn_lite.task_sources.TaskSource` the trainer draws batches from."""
        from ..task_sources import OmniglotEpisodes

        return OmniglotEpisodes(config, device, queries=None if self.queries_needed else 0)

    def compile_training(self) -> None:
        """Compile the heavy part of the training step with ``torch.compile`` (the trainer's ``compile``
        option).  Only methods that gain from it implement this; the others refuse clearly."""
        raise ValueError(f"{self.name} has no compiled training step (compile=True / --compile is for: mann); "
                         "train it without --compile")

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())
