"""Convert a checkpoint written by version 0.1 (format ``metalearn-lite-checkpoint/1``) to the current format.

    python -m metalearn_lite upgrade runs/old/best.pt               # best.pt converted; the original kept
                                                                    # as best.format1.pt
    python -m metalearn_lite upgrade runs/old/best.pt --out new.pt  # new.pt written; best.pt left as it is

Version 0.2 made the methods take the reader's own networks: a method's config names its networks as specs
(:func:`~metalearn_lite.models.model_spec`) instead of Conv-4 sizes and encoder names, and the sinusoid
regressors became MAML and Reptile on an MLP with ``loss="mse"``.  The weights' names did not change: only the
config is rewritten, every tensor and every other entry (command, seed, history, ...) is kept as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoints import FORMAT, FORMAT_1, model_from_checkpoint, read_verified, write_blob
from .integrity import atomic_write


def _conv4(in_channels: int = 1, hidden: int = 64, norm: str = "batch", out_features: int | None = None,
           image_size: int = 28) -> dict[str, Any]:
    return {"name": "conv4", "in_channels": in_channels, "hidden": hidden, "norm": norm,
            "out_features": out_features, "image_size": image_size}


def upgrade_format_1(blob: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict of format 1 in the current format: the config's networks become specs,
    ``maml_regressor``/``reptile_regressor`` become ``maml``/``reptile`` with ``loss="mse"`` on an MLP, and
    ``recipe`` records the course recipe that trained the file (0.1 named the recipe by the method)."""
    name, c = blob["method"], dict(blob["config"])
    recipe = name
    conv_methods = ("protonet", "siamese", "triplet", "pretrained", "maml", "reptile")  # built on a Conv-4
    conv = {k: c.pop(k) for k in ("in_channels", "hidden", "norm") if k in c} if name in conv_methods else {}
    if name in ("protonet", "siamese", "triplet"):
        c = {"encoder": _conv4(**conv), **c}
    elif name == "pretrained":
        c = {"backbone": _conv4(**conv), **c}
    elif name in ("maml", "reptile"):
        size = c.pop("image_size", 28)
        c = {"model": _conv4(**conv, out_features=c["ways"], image_size=size), **c, "loss": "cross_entropy",
             "head": "head."}
    elif name in ("maml_regressor", "reptile_regressor"):
        name = name.split("_")[0]
        hidden, layers = c.pop("hidden"), c.pop("layers")
        c = {"model": {"name": "mlp", "in_features": 1, "hidden": [hidden] * layers, "out_features": 1}, "ways": 5,
             **c, "zero_head": False, "loss": "mse", "head": f"net.{2 * layers}."}
    elif name in ("mann", "lstm_oneshot"):
        kind = c.pop("encoder")
        encoder = {"pixels": None, "conv": _conv4(hidden=32, norm="running"),
                   "pretrained": _conv4(hidden=64, norm="running")}[kind]
        c = {"encoder": encoder, **c, "freeze_encoder": kind == "pretrained"}
    if name == "reptile":
        for k in ("first_order", "first_order_warmup", "meta_sgd", "anil", "zero_head"):
            c.pop(k, None)
    return {**blob, "format": FORMAT, "method": name, "config": c, "recipe": recipe}


def upgrade_file(path: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Convert the format-1 checkpoint at ``path``; returns ``(converted, original)``.

    Without ``out`` the converted file replaces ``path`` and the original bytes are kept as
    ``NAME.format1.pt`` next to it (written first); with ``out`` a new file is written and ``path`` is untouched.
    Nothing is overwritten: ``ValueError`` if the target exists, or if the file is not a readable format-1
    checkpoint (missing, damaged, already current) or its converted weights do not fit the method.
    """
    path = Path(path)
    blob = read_verified(path)
    if blob["format"] != FORMAT_1:
        raise ValueError(f"{path} is already in the current format ({blob['format']}): nothing to upgrade; load it "
                         "as it is")
    new = upgrade_format_1(blob)
    try:  # the converted file must load before anything is written
        model_from_checkpoint(new)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path} could not be converted: its {blob['method']!r} model does not load in this "
                         f"version ({err}); nothing was written") from err
    if out is None:  # in place: the original bytes are kept next to it, written first
        target, kept = path, path.with_name(f"{path.stem}.format1{path.suffix}")
        clash = kept
    else:
        target, kept = Path(out), path
        if target.resolve() == path.resolve():
            raise ValueError(f"--out {target} is the file itself: leave --out out to convert it in place (the "
                             f"original is then kept as {path.stem}.format1{path.suffix})")
        clash = target
    if clash.exists():
        raise ValueError(f"{clash} already exists and is never overwritten: move it away, or choose another file "
                         "with --out NEW")
    if out is None:
        atomic_write(kept, path.read_bytes())
    write_blob(target, new)
    return target, kept
