"""The two backbones every lesson uses, Conv-4 for images and an MLP for regression, and the relation
module of Relation Networks.

Normalisation is a choice, named explicitly, because it changes what "evaluating on a task" means:

* ``norm="batch"`` normalises every forward pass with the statistics of the batch it is given,
  in training *and* evaluation, and keeps no running statistics.  This is what MAML's reference
  code did.  At test time the statistics come from the support or query batch itself, so the
  prediction for one query depends on the other queries in the batch: evaluation is
  *transductive*.  It is the right choice when training and test batches are alike (episodes of
  the same shape), and it makes reported accuracies depend on the query batch size.
* ``norm="running"`` is ordinary batch norm: batch statistics while training, running averages in
  ``eval()`` mode.  Each query is then classified on its own (inductive), but the running averages
  come from the training classes and can be off for new ones.
* ``norm="none"`` removes normalisation.

``norm="batch"`` is written out from mean and variance operations rather than calling
``torch.nn.functional.batch_norm``: its second derivatives stay exact under ``torch.func.vmap``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NORMS = ("batch", "running", "none")


class BatchStatNorm2d(nn.Module):
    """Batch normalisation that always uses the current batch's statistics (no running stats).

    ``y = gamma * (x - mean_b) / sqrt(var_b + eps) + beta`` with the mean and biased variance
    taken over the batch and spatial dimensions of ``x`` ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return BatchStatNorm2d(channels)
    if norm == "running":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)} (see metalearn_lite.models)")


def check_images(x: torch.Tensor, channels: int, name: str = "images") -> None:
    """Raise a clear ``ValueError`` unless ``x`` is a float batch ``(B, channels, H, W)``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{name} must have shape (batch, {channels}, height, width); got {tuple(x.shape)}. "
            "A single image needs a batch dimension: x.unsqueeze(0)"
        )
    if not x.dtype.is_floating_point:
        raise ValueError(
            f"{name} must be floating point with strokes near 1.0 on 0.0; got dtype {x.dtype}. "
            "Convert with x.float() (and divide by 255 if it holds 0..255 bytes)"
        )


class Conv4(nn.Module):
    """Four blocks of [3x3 conv with ``hidden`` filters, norm, ReLU, 2x2 max-pool].

    Args:
        in_channels: image channels (1 for Omniglot).
        hidden: filters per block (64 in the papers).
        norm: ``"batch"``, ``"running"`` or ``"none"`` (module docstring says why it matters).
        out_features: add a linear head with this many outputs; ``None`` returns the flattened
            embedding (64 features for 28x28 inputs).
        image_size: input side the linear head is sized for (only used with ``out_features``).
        pools: how many of the blocks (the first ones) end in the max-pool; Relation Networks keep
            ``pools=2`` (64 maps of 7x7 for 28x28 inputs).  The others keep an ``nn.Identity`` in its place,
            so parameter names do not depend on it.
        flatten: ``False`` returns the feature maps ``(B, hidden, h, w)`` instead of the flattened embedding
            (no head then).

    Input ``(B, in_channels, H, W)`` float; output ``(B, features)`` (or ``(B, hidden, h, w)``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 64,
        norm: str = "batch",
        out_features: int | None = None,
        image_size: int = 28,
        pools: int = 4,
        flatten: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(pools, bool) or not isinstance(pools, int) or not 0 <= pools <= 4:
            raise ValueError(f"pools is how many of the 4 blocks end in a max-pool: an int in 0..4; got {pools!r}")
        if not flatten and out_features is not None:
            raise ValueError("a Conv-4 that returns feature maps (flatten=False) has no linear head: leave "
                             "out_features=None")
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(4):
            layers += [
                nn.Conv2d(channels, hidden, 3, padding=1),
                _norm_layer(norm, hidden),
                nn.ReLU(),
                nn.MaxPool2d(2) if block < pools else nn.Identity(),
            ]
            channels = hidden
        self.in_channels, self.hidden, self.norm = in_channels, hidden, norm
        self.pools, self.flatten = pools, flatten
        self.features = nn.Sequential(*layers)
        self.head = None if out_features is None else nn.Linear(self.embedding_dim(image_size), out_features)
        self.out_features, self.image_size = out_features, image_size

    def spec(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network (:func:`build_model`)."""
        spec = {"name": "conv4", "in_channels": self.in_channels, "hidden": self.hidden, "norm": self.norm,
                "out_features": self.out_features, "image_size": self.image_size}
        if (self.pools, self.flatten) != (4, True):  # only when set: the specs of earlier files stay the same
            spec.update(pools=self.pools, flatten=self.flatten)
        return spec

    def embedding_dim(self, image_size: int = 28) -> int:
        """Length of the flattened embedding for ``image_size`` x ``image_size`` inputs."""
        side = image_size
        for _ in range(self.pools):
            side //= 2
        if side < 1:
            raise ValueError(f"images of side {image_size} are too small for {self.pools} poolings; use >= "
                             f"{2 ** self.pools} pixels")
        return self.hidden * side * side

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, hidden, H / 2^pools, W / 2^pools)``."""
        check_images(x, self.in_channels)
        least = 2 ** self.pools
        if min(x.shape[-2:]) < least:
            raise ValueError(f"images must be at least {least}x{least} for Conv-4's {self.pools} poolings; got "
                             f"{tuple(x.shape[-2:])}")
        return self.features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, embedding_dim)``."""
        return self.feature_maps(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.flatten:
            return self.feature_maps(x)
        z = self.embed(x)
        return z if self.head is None else self.head(z)


class MLP(nn.Module):
    """Fully connected ReLU network: ``in_features -> hidden... -> out_features``.

    The default is the 40-40 regressor of the MAML sinusoid experiments.
    Input ``(B, in_features)``; output ``(B, out_features)``.
    """

    def __init__(self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40), out_features: int = 1) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.in_features, self.hidden, self.out_features = in_features, tuple(hidden), out_features
        self.net = nn.Sequential(*layers)

    def spec(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network (:func:`build_model`)."""
        return {"name": "mlp", "in_features": self.in_features, "hidden": list(self.hidden),
                "out_features": self.out_features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"MLP input must be (batch, {self.in_features}); got {tuple(x.shape)}")
        return self.net(x)


class RelationModule(nn.Module):
    """The relation module of Relation Networks (Sung et al. 2018): one score per pair of feature maps.

    Two blocks of [3x3 conv with ``hidden`` filters, norm, ReLU, 2x2 max-pool], a max over what is left of the
    map, then ``Linear(hidden, fc) - ReLU - Linear(fc, 1)``.  On Omniglot's 7x7 maps (Conv-4 with ``pools=2``)
    the poolings leave 1x1, as in the paper; a pooling is skipped once the map is 1x1, and the final max makes
    any map size work.  The paper's last layer is a sigmoid; this module returns the raw score and
    :class:`~metalearn_lite.algorithms.RelationNet` applies the sigmoid (or a softmax, for cross-entropy).

    Args:
        in_channels: channels of a pair (twice the encoder's).  hidden: filters per block.  fc: hidden units.
        norm: ``"batch"``, ``"running"`` or ``"none"``, as for :class:`Conv4`.

    Input ``(P, in_channels, H, W)``: ``P`` pairs; output ``(P,)`` raw scores.
    """

    def __init__(self, in_channels: int, hidden: int = 64, fc: int = 8, norm: str = "batch") -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("hidden", hidden), ("fc", fc)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        self.in_channels, self.hidden, self.fc, self.norm = in_channels, hidden, fc, norm
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), _norm_layer(norm, hidden), nn.ReLU())
            for c in (in_channels, hidden)
        )
        self.scores = nn.Sequential(nn.Linear(hidden, fc), nn.ReLU(), nn.Linear(fc, 1))

    def spec(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network (:func:`build_model`)."""
        return {"name": "relation", "in_channels": self.in_channels, "hidden": self.hidden, "fc": self.fc,
                "norm": self.norm}

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        if pairs.dim() != 4 or pairs.shape[1] != self.in_channels:
            raise ValueError(f"the relation module takes pairs of feature maps (P, {self.in_channels}, H, W); got "
                             f"{tuple(pairs.shape)}: build it with in_channels = twice the encoder's channels")
        x = pairs
        for block in self.blocks:
            x = block(x)
            if min(x.shape[-2:]) >= 2:
                x = torch.nn.functional.max_pool2d(x, 2)
        return self.scores(x.amax(dim=(-2, -1))).squeeze(-1)


MODELS: dict[str, type[nn.Module]] = {"conv4": Conv4, "mlp": MLP, "relation": RelationModule}


def model_spec(module: nn.Module | None) -> dict[str, Any] | None:
    """What a checkpoint records of a network a method was given.

    ``None`` for no network; the constructor arguments for this package's own :class:`Conv4` and :class:`MLP`
    (which :func:`build_model` rebuilds); ``{"custom": "ClassName"}`` for any other module, which only its
    author can rebuild (pass the method you built to :func:`~metalearn_lite.load_checkpoint`).
    """
    if module is None:
        return None
    if type(module) in MODELS.values():
        return module.spec()
    return {"custom": type(module).__name__}


def is_custom(spec: Any) -> bool:
    """True for a :func:`model_spec` of a module this package cannot rebuild."""
    return isinstance(spec, dict) and "custom" in spec


def build_model(spec: dict[str, Any] | None) -> nn.Module | None:
    """The network a :func:`model_spec` describes (``None`` for ``None``)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("name") not in MODELS:
        raise ValueError(f"cannot build a network from {spec!r}: known networks are {sorted(MODELS)}")
    args = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "mlp":
        args["hidden"] = tuple(args["hidden"])
    return MODELS[spec["name"]](**args)
