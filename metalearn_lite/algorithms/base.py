"""What every trainable method shares: a rebuildable config, a training loss, a validation score.

A method wraps the reader's own network (``ProtoNet(encoder=my_cnn)``, ``MAML(model=my_net)``); it
knows nothing of data sets, command lines or checkpoint files.  The trainer
(:func:`~metalearn_lite.train`) only calls ``method.loss(batch)`` and ``method.validation_score(episode)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..episodes import Episode
from ..fewshot import FewShotMixin
from ..models import build_model, is_custom, model_spec


class EpisodicMethod(FewShotMixin, nn.Module):
    """Base of the trainable methods.

    A subclass sets ``name`` (the registry key), stores the keyword arguments that rebuild it in
    ``self.config`` (plain JSON values; a network argument is stored as its
    :func:`~metalearn_lite.models.model_spec` and listed in ``module_args``), and implements
    ``loss(batch) -> (loss, metric)`` on a training meta-batch.  A few-shot classifier also implements
    ``logits(support_x, support_y, query_x)`` (:class:`~metalearn_lite.FewShotClassifier`).
    """

    name: ClassVar[str] = ""
    #: config keys that hold a network's :func:`~metalearn_lite.models.model_spec`
    module_args: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = {k: model_spec(v) if k in self.module_args else v for k, v in config.items()}

    @property
    def custom_modules(self) -> list[str]:
        """Names of the networks given by the user (a checkpoint cannot rebuild those)."""
        return [f"{k}={self.config[k]['custom']}" for k in self.module_args if is_custom(self.config.get(k))]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EpisodicMethod:
        """A fresh method from a checkpoint's ``config`` (networks rebuilt from their specs)."""
        custom = [f"{k}={config[k]['custom']}" for k in cls.module_args if is_custom(config.get(k))]
        if custom:
            raise ValueError(
                f"this {cls.name} was trained on your own network ({', '.join(custom)}), which a checkpoint "
                f"cannot rebuild: build the method as you did for training and pass it, e.g. "
                f"load_checkpoint(path, method={cls.__name__}(...your module...))"
            )
        args = {k: build_model(v) if k in cls.module_args else v for k, v in config.items()}
        try:
            return cls(**args)
        except TypeError as err:
            raise ValueError(f"bad config for {cls.name}: {err}") from err

    def loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, metric)`` of one training meta-batch: the loss is minimised, the metric only shown."""
        raise NotImplementedError

    def validation_score(self, episode: Episode) -> tuple[float, dict[str, float]]:
        """``(score, metrics)`` on fixed validation tasks, higher is better: few-shot accuracy by default."""
        grad = getattr(self, "adapts_with_gradients", False)
        with torch.enable_grad() if grad else torch.no_grad():
            acc = float(torch.stack([(self.predict(*episode.task(i).unbatched()[:3]) == episode.query_y[i])
                                     .double().mean() for i in range(episode.num_tasks)]).mean())
        return acc, {"val_acc": acc}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())
