"""Transfer learning baselines: pretrain once on all classes, then adapt to each new task.

**Pretraining** (:class:`Pretrained`) fits a Conv-4 backbone ``f_theta`` and a classifier over
*all* ``C`` meta-train classes at once with ordinary cross-entropy on flat mini-batches,

    ``min_{theta, W}  E_{(x, y)} [ -log softmax(W f_theta(x))_y ]``,

the "Baseline" of Chen et al. (2019, *A Closer Look at Few-shot Classification*).  No episodes,
no meta-learning: the hope is that features good for 624 classes are good for new ones too.

**Adaptation** to an N-way K-shot task ``S = {(x_i, y_i)}`` then fits a new N-class head on the
support set, with the pretrained model itself never modified:

* :class:`LinearProbe`: backbone frozen, logistic regression (scikit-learn) on the features
  ``f_theta(x)`` (or a nearest-centroid head);
* :class:`FineTune`: a copy of the backbone plus a zero-initialised linear head, trained for
  ``steps`` steps of Adam on the support cross-entropy; the first ``frozen_layers`` Conv-4 blocks
  keep their pretrained weights;
* :class:`BaselinePlusPlus`: a cosine-classifier head, ``logit_c = s * cos(f_theta(x), w_c)``
  (Chen et al.'s Baseline++), trained on the support set over a frozen backbone by default.

Each wrapper is a :class:`~metalearn_lite.fewshot.FewShotClassifier`, so
:func:`~metalearn_lite.evaluate` measures them exactly like ProtoNet or MAML.

:meth:`Pretrained.compile_training` (``train(..., compile=True)``, ``--compile``) is the fast pretraining path:
the backbone in ``channels_last`` and the batch's logits under ``torch.compile``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..compiling import compile_for_training
from ..distances import squared_euclidean
from ..fewshot import FewShotMixin, check_task, class_means
from ..models import Conv4
from ..validation import int_at_least, non_negative_int
from .base import EpisodicMethod

HEADS = ("linear", "cosine")


class CosineHead(nn.Module):
    """``logits = scale * normalize(z) @ normalize(W)^T``: ``z`` ``(B, D)`` -> ``(B, classes)``.

    Cosine lies in ``[-1, 1]``; the fixed ``scale`` sharpens the softmax (Chen et al. use a
    constant too).  Class vectors are compared by direction only, so a class with many or
    bright examples cannot dominate by the length of its weight vector.
    """

    def __init__(self, features: int, classes: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, features) * features**-0.5)
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z, dim=-1) @ F.normalize(self.weight, dim=-1).T


def _make_head(kind: str, features: int, classes: int, scale: float) -> nn.Module:
    if kind == "linear":
        return nn.Linear(features, classes)
    if kind == "cosine":
        return CosineHead(features, classes, scale)
    raise ValueError(f"unknown head {kind!r}; choose one of {list(HEADS)}")


def conv_blocks(backbone: Conv4) -> list[nn.Module]:
    """The four [conv, norm, ReLU, pool] blocks of a Conv-4, input side first."""
    layers = list(backbone.features)
    return [nn.Sequential(*layers[i : i + 4]) for i in range(0, len(layers), 4)]


class Pretrained(EpisodicMethod):
    """A backbone plus a classifier over all training classes, trained with cross-entropy.

    Trained by the one trainer on class-labelled batches (objects with ``images`` ``(B, *x)`` and global
    ``labels`` ``(B,)``, e.g. the course's :class:`~metalearn_lite.recipes.omniglot.ClassBatches`).  As a
    :class:`FewShotClassifier` it classifies a query by the nearest class mean of the frozen features (the
    cheap adaptation used for validation); wrap it in :class:`LinearProbe`, :class:`FineTune` or
    :class:`BaselinePlusPlus` for the others.

    Args:
        backbone: the feature network; ``None`` gives the course's Conv-4 with ``norm="running"``, which
            makes the features of one image independent of the other images it is embedded with (which
            adaptation relies on).
        classes: outputs of the pretraining head: the number of training classes (624 = 156 Omniglot
            characters x 4 rotations).
        head: ``"linear"`` (Baseline) or ``"cosine"`` (Baseline++ pretraining).
        scale: cosine head's scale.
        image_size: input side the head is sized for (Conv-4's feature width depends on it).
    """

    name = "pretrained"
    module_args = ("backbone",)
    _compiled_logits = None  # set by compile_training(); used in training mode only

    def __init__(
        self,
        backbone: nn.Module | None = None,
        classes: int = 624,
        head: str = "linear",
        scale: float = 10.0,
        image_size: int = 28,
    ) -> None:
        if backbone is None:
            backbone = Conv4(norm="running")
        if not isinstance(backbone, Conv4):
            raise ValueError(f"Pretrained needs a Conv4 backbone (the adaptation wrappers fine-tune its blocks); "
                             f"got {type(backbone).__name__}. For your own network use ProtoNet(encoder=...)")
        super().__init__(backbone=backbone, classes=classes, head=head, scale=scale, image_size=image_size)
        int_at_least("classes", classes, 2, " (the training classes)")
        self.classes = classes
        self.backbone = backbone
        self.head = _make_head(head, self.backbone.embedding_dim(image_size), classes, scale)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, D)`` backbone features."""
        return self.backbone.embed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, classes)`` pretraining logits (compiled in training after
        :meth:`compile_training`)."""
        if self._compiled_logits is not None and self.training:
            return self._compiled_logits(x)
        return self.pretraining_logits(x)

    def pretraining_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, classes)``: the head on the backbone's features."""
        return self.head(self.embed(x))

    def compile_training(self) -> None:
        """The fast pretraining path: the backbone moves to ``channels_last`` and a training batch's logits
        (:meth:`pretraining_logits`) run under ``torch.compile``; evaluation and the adaptation wrappers keep the
        eager backbone (in ``channels_last``).  :meth:`loss` (cross-entropy on those logits) is unchanged.

        Gradients are the eager ones up to float rounding (``tests/test_compiled_training.py``); compiling
        is paid at the first training step; without a C++ compiler on a CPU this raises ``ValueError``, as
        :meth:`ProtoNet.compile_training <metalearn_lite.algorithms.ProtoNet.compile_training>` does.  On a CPU
        with the default ``norm="running"`` (``nn.BatchNorm2d``) the compiled step is about as fast as the eager
        one and slower than ``channels_last`` alone: Inductor's fused batch-norm backward is slower there than
        the native kernel (``benchmarks/compiled_step.py``).  There, chosen by that measurement, only the layout
        changes (``layout_only`` is then ``True``) and nothing is compiled
        (:func:`~metalearn_lite.compiling.compile_for_training`, as for every method).
        """
        if self._compiled_logits is None:  # idempotent, as the other methods' compile_training
            self._compiled_logits = compile_for_training(self, self.pretraining_logits)

    def loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy on a batch with ``images`` and global class ``labels``."""
        if int(batch.labels.max()) >= self.classes:
            raise ValueError(f"the batch has class ids up to {int(batch.labels.max())} but the head has {self.classes} "
                             f"classes; build the model with classes >= {int(batch.labels.max()) + 1}")
        logits = self(batch.images)
        return F.cross_entropy(logits, batch.labels), (logits.argmax(-1) == batch.labels).float().mean()

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """Nearest class mean of the features: ``(S, C, H, W), (S,), (Q, C, H, W) -> (Q, N)``."""
        classes, targets = check_task(support_x, support_y, query_x)
        # one pass for both, so that with norm="batch" they share statistics (as in ProtoNet)
        z = self.embed(torch.cat([support_x, query_x]))
        zs, zq = z[: len(support_x)], z[len(support_x) :]
        return -squared_euclidean(zq, class_means(zs, targets, len(classes)))


@contextmanager
def _eval_mode(module: nn.Module | None) -> Iterator[None]:
    """Run ``module`` in eval mode (running batch-norm statistics, never updated), then restore its mode."""
    if module is None:
        yield
        return
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


class _Wrapper(FewShotMixin, nn.Module):
    """An adaptation wrapper: always in eval mode, and ``train()``/``eval()`` (which
    :func:`~metalearn_lite.evaluate` calls) leave the wrapped pretrained model's mode alone."""

    def __init__(self) -> None:
        super().__init__()
        self.training = False

    def train(self, mode: bool = True) -> _Wrapper:
        return self


def _backbone_of(model: nn.Module | None) -> Conv4 | None:
    if model is None:
        return None
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, Conv4):
        return backbone
    if isinstance(model, Conv4):
        return model
    raise ValueError(
        f"expected a Pretrained model (load_pretrained('pretrained-omniglot')) or a Conv4; got {type(model).__name__}"
    )


class LinearProbe(_Wrapper):
    """Frozen features, a new linear classifier per task.

    ``head="logistic"``: multinomial logistic regression (scikit-learn, L2 penalty ``1/C``) on
    the L2-normalised features; logits are its log-probabilities.  ``head="centroid"``: minus the
    squared distance to each class's mean feature.  ``pretrained=None`` uses the raw pixels as
    features (the no-transfer baseline).  The backbone is only ever run under ``torch.no_grad``.
    """

    def __init__(self, pretrained: nn.Module | None, head: str = "logistic", C: float = 10.0,
                 normalize: bool = True, max_iter: int = 1000) -> None:
        super().__init__()
        if head not in ("logistic", "centroid"):
            raise ValueError(f"unknown probe head {head!r}; choose 'logistic' or 'centroid'")
        if not C > 0:
            raise ValueError(f"C (inverse regularisation strength) must be > 0; got {C}")
        self.backbone = _backbone_of(pretrained)
        self.head, self.C, self.normalize, self.max_iter = head, float(C), normalize, max_iter

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, D)``, frozen (no autograd), L2-normalised if ``normalize``."""
        with torch.no_grad(), _eval_mode(self.backbone):
            z = x.flatten(1) if self.backbone is None else self.backbone.embed(x)
        return F.normalize(z, dim=-1) if self.normalize else z

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        classes, targets = check_task(support_x, support_y, query_x)
        zs, zq = self.features(support_x), self.features(query_x)
        n = len(classes)
        if self.head == "centroid" or n == 1:
            return -squared_euclidean(zq, class_means(zs, targets, n))
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        # one BLAS thread: the problem is tiny, and idle BLAS threads spinning next to torch's
        # threads made each task several times slower on a 2-core machine
        with threadpool_limits(limits=1):
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
            clf.fit(zs.cpu().double().numpy(), targets.cpu().numpy())
            out = clf.predict_log_proba(zq.cpu().double().numpy())
        return torch.from_numpy(out).to(device=query_x.device, dtype=query_x.dtype)


@dataclass
class AdaptedClassifier:
    """One task's classifier, as :meth:`FineTune.adapt` returns it: ``adapted(x) -> (B, N)`` scores.

    ``backbone`` is the pretrained one (all blocks frozen) or a fine-tuned copy, ``head`` the new head, ``losses``
    the support loss before each step; output column ``j`` belongs to ``classes[j]``, the ``j``-th smallest
    support label.
    """

    backbone: Conv4
    head: nn.Module
    losses: list[float]
    classes: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with _eval_mode(self.backbone):
            return self.head(self.backbone.embed(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels from the support set's labels ``(B,)``."""
        with torch.no_grad():
            return self.classes[self(x).argmax(-1)]


class _GradientAdapter(_Wrapper):
    """A new head (and optionally the upper backbone blocks) trained on the support set per task."""

    adapts_with_gradients = True

    def __init__(self, pretrained: nn.Module, steps: int, lr: float, frozen_layers: int, head: str,
                 scale: float, weight_decay: float, head_init: str = "zeros") -> None:
        super().__init__()
        self.backbone = _backbone_of(pretrained)
        if self.backbone is None:
            raise ValueError("fine-tuning needs a backbone: pass a Pretrained model or a Conv4")
        non_negative_int("steps", steps)
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        if frozen_layers not in range(5):
            raise ValueError(f"frozen_layers must be 0..4 (Conv-4 blocks kept fixed, input side first); "
                             f"got {frozen_layers!r}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
        self.steps, self.lr, self.frozen_layers = steps, float(lr), frozen_layers
        if head_init not in ("zeros", "prototypes"):
            raise ValueError(f"unknown head_init {head_init!r}; choose 'zeros' or 'prototypes'")
        self.head_kind, self.scale, self.weight_decay = head, float(scale), float(weight_decay)
        self.head_init = head_init

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> AdaptedClassifier:
        """A head (and the unfrozen blocks of a *copy* of the backbone) fitted to one support set: ``adapted(query_x)
        -> (Q, N)`` scores.  Labels may be any integers; output column ``j`` is for the ``j``-th smallest.

        ``FloatingPointError`` if the loss stops being finite (learning rate too large).
        """
        classes, targets = check_task(support_x, support_y, support_x)
        all_frozen = self.frozen_layers == 4
        # batch-norm layers stay in eval mode: 5 support images give useless batch statistics
        with _eval_mode(self.backbone):
            return self._adapt(support_x, targets, classes, all_frozen)

    def _adapt(self, support_x: torch.Tensor, targets: torch.Tensor, classes: torch.Tensor,
               all_frozen: bool) -> AdaptedClassifier:
        backbone = self.backbone if all_frozen else copy.deepcopy(self.backbone)
        if not all_frozen:  # only the copy's flags change; the pretrained model is left as it is
            for i, block in enumerate(conv_blocks(backbone)):
                for p in block.parameters():
                    p.requires_grad_(i >= self.frozen_layers)
        with torch.enable_grad():
            if all_frozen:
                with torch.no_grad():
                    fixed = backbone.embed(support_x)
            head = self._new_head(backbone, support_x, targets, len(classes))
            params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
            losses = []
            for step in range(self.steps):
                z = fixed if all_frozen else backbone.embed(support_x)
                loss = F.cross_entropy(head(z), targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{type(self).__name__}: the support loss became {loss.item()} at step {step + 1} of "
                        f"{self.steps} with lr={self.lr:g}; the fine-tune diverged. Use a smaller learning "
                        f"rate (e.g. lr={self.lr / 10:g}) or fewer steps"
                    )
                losses.append(loss.item())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if not all_frozen:
            for p in backbone.parameters():
                p.requires_grad_(False)
        return AdaptedClassifier(backbone, head, losses, classes)

    def _new_head(self, backbone: Conv4, support_x: torch.Tensor, targets: torch.Tensor, n: int) -> nn.Module:
        dim = backbone.embedding_dim(support_x.shape[-1])
        head = _make_head(self.head_kind, dim, n, self.scale).to(support_x.device)
        with torch.no_grad():
            if self.head_kind == "linear" and self.head_init == "zeros":  # every class equally likely at step 0
                head.weight.zero_()
                head.bias.zero_()
                return head
            z = backbone.embed(support_x)
            if self.head_kind == "cosine":
                z = F.normalize(z, dim=-1)
            means = class_means(z, targets, n)
            if self.head_kind == "cosine":  # class-mean directions: step 0 = cosine nearest centroid
                head.weight.copy_(means)
            else:  # w_c = 2 p_c, b_c = -|p_c|^2: step 0 = nearest class mean (ProtoNet's linear form)
                head.weight.copy_(2 * means)
                head.bias.copy_(-(means**2).sum(1))
        return head

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        check_task(support_x, support_y, query_x)
        adapted = self.adapt(support_x, support_y)
        with torch.no_grad():
            return adapted(query_x)


class FineTune(_GradientAdapter):
    """Fine-tune a copy of the pretrained backbone with a new linear head on each support set.

    Args:
        pretrained: a :class:`Pretrained` model (or a bare :class:`~metalearn_lite.models.Conv4`);
            never modified: every task starts from a fresh copy of its weights.
        steps: full-batch Adam steps on the support set.
        lr: Adam learning rate.
        frozen_layers: Conv-4 blocks (from the input) that keep their pretrained weights, 0..4;
            0 fine-tunes all layers, 4 trains the head only.
        head: ``"linear"`` or ``"cosine"``.
        scale: cosine head's scale.
        weight_decay: Adam weight decay.
        head_init: ``"zeros"`` (every class equally likely before the first step) or ``"prototypes"``
            (``w_c = 2 p_c``, ``b_c = -|p_c|^2`` with ``p_c`` the class's mean feature, so step 0 is
            the nearest-class-mean classifier, as in Proto-MAML).

    The defaults (50 steps, ``lr=1e-4``) were chosen on the meta-val alphabet: with ``lr=1e-3``
    all-layer fine-tuning on one drawing per class overfits (5-way 1-shot: 87 % against 94 %).
    """

    def __init__(self, pretrained: nn.Module, steps: int = 50, lr: float = 1e-4, frozen_layers: int = 0,
                 head: str = "linear", scale: float = 10.0, weight_decay: float = 0.0,
                 head_init: str = "zeros") -> None:
        super().__init__(pretrained, steps, lr, frozen_layers, head, scale, weight_decay, head_init)


class BaselinePlusPlus(_GradientAdapter):
    """Baseline++ adaptation: a cosine-classifier head trained on the support set.

    ``logit_c(x) = scale * cos(f(x), w_c)``, with ``w_c`` started at the normalised mean feature of
    class ``c`` and trained for ``steps`` Adam steps; the backbone is frozen unless
    ``freeze_backbone=False`` (then all blocks are fine-tuned on a copy, like :class:`FineTune`).
    """

    def __init__(self, pretrained: nn.Module, steps: int = 100, lr: float = 1e-2, scale: float = 10.0,
                 freeze_backbone: bool = True, weight_decay: float = 0.0) -> None:
        super().__init__(pretrained, steps, lr, 4 if freeze_backbone else 0, "cosine", scale, weight_decay)


ADAPTERS = {"probe": LinearProbe, "finetune": FineTune, "baseline++": BaselinePlusPlus}


def adapter(pretrained: nn.Module | None, mode: str = "probe", **options: Any) -> nn.Module:
    """The adapter of ``mode``: a few-shot classifier that adapts ``pretrained`` per task, ``mode`` in ``"probe"``,
    ``"finetune"``, ``"baseline++"``; ``options`` go to :class:`LinearProbe`, :class:`FineTune`
    or :class:`BaselinePlusPlus`."""
    if mode not in ADAPTERS:
        raise ValueError(f"unknown adaptation mode {mode!r}; choose one of {list(ADAPTERS)}")
    try:
        return ADAPTERS[mode](pretrained, **options)
    except TypeError as err:
        raise ValueError(f"bad option for {mode}: {err}") from err
