"""Checkpoints: atomic saves, safe loads, and the shipped pretrained models.

A checkpoint is a dict of plain values and tensors, written to a temporary file and renamed into
place (an interrupted save never leaves a half-written file), and read with
``torch.load(weights_only=True)``, which never unpickles code.  It carries what is needed to
rebuild the model (``method`` and ``config``), the ``command`` and ``seed`` that produced it,
and the training state needed to resume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .algorithms import METHODS, EpisodicMethod, build_method
from .paths import data_root

FORMAT = "metalearn-lite-checkpoint/1"


def save_checkpoint(path: str | os.PathLike, model: EpisodicMethod, **extra: Any) -> Path:
    """Write ``model`` (its method name, config and weights) and ``extra`` entries atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "method": model.name,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "torch_version": str(torch.__version__),
        **extra,
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's dict, tensors on the CPU; ``ValueError`` if it is missing or not ours."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}: check the path (train one with `python -m metalearn_lite train`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on damaged files; all mean the same here
        reason = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {reason}. "
            "Re-create it with the command in data/checkpoints/README.md, or restore it from git"
        ) from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a metalearn-lite checkpoint (no '{FORMAT}' marker)")
    return blob


def model_from_checkpoint(
    blob: dict[str, Any], method: str | None = None, device: str | torch.device | None = None
) -> EpisodicMethod:
    """Rebuild the model a checkpoint dict describes; ``method`` checks that it is the expected one."""
    name = blob.get("method")
    if method is not None and name != method:
        raise ValueError(f"this checkpoint holds a {name!r} model, not {method!r}: load it as {name!r}")
    if name not in METHODS:
        raise ValueError(f"checkpoint method {name!r} is unknown to this version; known: {sorted(METHODS)}")
    model = build_method(name, **blob["config"])
    own = model.state_dict()
    state = blob["state_dict"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"the checkpoint's weights do not fit a {name} built from its config {blob['config']}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, mismatched shapes {wrong[:3]}"
        )
    model.load_state_dict(state)
    if device is not None:
        model.to(device)
    return model.eval()


def load_checkpoint(
    path: str | os.PathLike, method: str | None = None, device: str | torch.device | None = None
) -> EpisodicMethod:
    """The model saved at ``path``, in eval mode, on ``device`` (default CPU)."""
    return model_from_checkpoint(read_checkpoint(path), method, device)


def checkpoint_dir() -> Path:
    """``data/checkpoints`` (or ``$METALEARN_LITE_DATA/checkpoints``)."""
    return data_root() / "checkpoints"


def available_pretrained() -> list[str]:
    """Names accepted by :func:`load_pretrained`."""
    return sorted(p.stem for p in checkpoint_dir().glob("*.pt"))


def load_pretrained(name: str, device: str | torch.device | None = None) -> EpisodicMethod:
    """A ready model trained by this package, e.g. ``load_pretrained("protonet-omniglot")``.

    The returned model carries how it was trained: ``.command`` and ``.seed`` (also in
    ``data/checkpoints/README.md``), ``.train_config``, ``.history`` (one dict per validation:
    step, loss, acc, val_acc, minutes), ``.step`` and ``.best_val``.
    """
    names = available_pretrained()
    if name not in names:
        raise ValueError(f"no pretrained model {name!r}; available: {names}")
    blob = read_checkpoint(checkpoint_dir() / f"{name}.pt")
    model = model_from_checkpoint(blob, device=device)
    model.command = blob.get("command", "")
    model.seed = blob.get("seed")
    model.history = blob.get("history", [])
    model.train_config = blob.get("train_config", {})
    model.step = blob.get("step")
    model.best_val = blob.get("best_val")
    return model


def pretrained_backbone(name: str) -> torch.nn.Module:
    """The Conv-4 body of a shipped classifier, e.g. ``pretrained_backbone("pretrained-omniglot")``.

    Raises a ``ValueError`` naming a model that has one when ``name`` has no Conv-4 backbone.
    """
    from .models import Conv4

    source = load_pretrained(name)
    backbone = getattr(source, "backbone", None)
    if not isinstance(backbone, Conv4):
        raise ValueError(f"{name} is a {source.name} model, which has no Conv-4 backbone to start from; use a "
                         "pretrained model such as pretrained-omniglot")
    return backbone

