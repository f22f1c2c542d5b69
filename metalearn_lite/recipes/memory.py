"""The memory models' runs: the NTM's copy task and the MANN's one-shot sequences (sources and reports)."""

from __future__ import annotations

import torch

from ..algorithms.mann import SequenceClassifier
from ..algorithms.ntm import NTMCopy
from ..datasets import omniglot_split
from ..datasets.copy_task import CopyTasks, copy_batch
from ..datasets.omniglot_sequences import SequenceEpisodes
from ..evaluation import mean_ci
from .omniglot import VAL_SEED, no_alphabets
from .settings import TaskSettings


class CopySource(CopyTasks):
    """Copy-task batches of lengths ``1..max_length``, validated by the mean wrong bits per sequence on
    ``val_episodes`` fixed sequences of length ``max_length`` (score: its negative)."""

    def __init__(self, settings: TaskSettings, device: torch.device, bits: int, val_episodes: int = 64) -> None:
        no_alphabets(settings, "copy-task sequences")
        super().__init__(settings.max_length, bits, settings.seed, device)
        val_gen = torch.Generator().manual_seed(VAL_SEED)
        self.val = tuple(t.to(device) for t in copy_batch(val_episodes, settings.max_length, bits, val_gen))

    def validate(self, method: NTMCopy) -> tuple[float, dict[str, float]]:
        return method.validation_score(self.val)


def copy_report(method: NTMCopy, episodes: int = 600, seed: int = 0) -> str:
    """Mean wrong bits per sequence (± 95 % CI) over ``episodes`` sequences of lengths 10..60."""
    recorded = {**getattr(method, "train_config", {}), **getattr(method, "task_config", {})}
    max_length = recorded.get("max_length", "?")
    lengths = [n for n in (10, 20, 30, 40, 50, 60) if n <= method.ntm.n]
    lines = [f"bits wrong per sequence ({method.bits}-bit vectors, {episodes} sequences per length; "
             f"trained on lengths 1..{max_length}):"]
    for length, errs in method.bit_error_by_length(lengths, episodes, seed).items():
        mean, ci = mean_ci(errs)
        share = 100 * mean / (length * method.bits)
        lines.append(f"  length {length:3d}: {mean:7.3f} ± {ci:.3f} bits  ({share:.2f} % of the bits)")
    return "\n".join(lines)


def presentation_report(method: SequenceClassifier, episodes: int = 600, seed: int = 0, split: str = "test",
                        shots: int = 10) -> str:
    """Accuracy at presentations 1, 2, 3, 5, 10 (± 95 % CI over episodes) on ``split``'s alphabets."""
    device = next(method.parameters()).device
    data = omniglot_split(split, size=method.image_size).images.to(device)
    if method.frozen_encoder:
        data = method.encode_drawings(data)
    x, y = SequenceEpisodes(data, method.classes, shots, seed=seed).sample(episodes)
    acc = method.presentation_accuracy(x, y)
    lines = [f"accuracy by presentation ({method.classes} classes x {shots} drawings, {episodes} episodes "
             f"of the {split} alphabets):"]
    for k in (1, 2, 3, 5, 10):
        if k <= acc.shape[1]:
            mean, ci = mean_ci(acc[:, k - 1])
            lines.append(f"  presentation {k:2d}: {100 * mean:6.2f} ± {100 * ci:.2f} %")
    return "\n".join(lines)
