"""Checkpoints: atomic saves, safe loads, and the shipped pretrained models.

A checkpoint is a dict of plain values and tensors, written to a temporary file, flushed to disk (``fsync``) and renamed
into place (an interrupted save never leaves a half-written file; temporary files of killed processes are
removed by the next save), and read with ``torch.load(weights_only=True)``, which never unpickles code.
It carries ``sha256``, the :func:`~metalearn_lite.integrity.content_digest` of everything else in it, checked
when it is read: a damaged file is refused.  Files written before the digest existed have no ``sha256`` and
load unverified (the shipped models carry theirs, added without changing a tensor).  It carries what is needed to
rebuild the method (``method``, its registry name, and ``config``, with the networks as
:func:`~metalearn_lite.models.model_spec`), the ``recipe`` that trained it (if any), the ``command`` and
``seed`` that produced it, and the training state needed to resume.  A file of version 0.1 (format 1) is
refused with the command that converts it, ``python -m metalearn_lite upgrade FILE``.

A method built on your own network cannot be rebuilt from a file: build it again and pass it,
``load_checkpoint(path, method=ProtoNet(MyNet()))``, and the weights are loaded into it.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from .algorithms import METHODS, EpisodicMethod, build_method
from .algorithms.learned_optimizer import LearnedOptimizer
from .integrity import atomic_write, content_digest
from .models import Conv4
from .paths import data_root, data_root_origin

FORMAT = "metalearn-lite-checkpoint/2"
#: the format of the files written by version 0.1, before the methods took the reader's own networks: refused
#: here with the command that converts them (:mod:`metalearn_lite.upgrade`)
FORMAT_1 = "metalearn-lite-checkpoint/1"


#: what every checkpoint holds, and its type
REQUIRED: dict[str, type] = {"method": str, "config": dict, "state_dict": dict}


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
    return write_blob(path, blob)


def write_blob(path: str | os.PathLike, blob: dict[str, Any]) -> Path:
    """Stamp ``blob`` with its content digest (``sha256``) and write it to ``path`` atomically: the one way every
    checkpoint file of the package is written."""
    blob["sha256"] = content_digest(blob)
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    return atomic_write(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's dict, tensors on the CPU; ``ValueError`` if it is missing, not ours, or of version 0.1."""
    blob = read_verified(path)
    if blob["format"] == FORMAT_1:
        raise ValueError(
            f"{path} was written by metalearn-lite 0.1 (format '{FORMAT_1}'), which this version no longer reads: "
            f"convert it with `python -m metalearn_lite upgrade {path}` (it keeps the original next to it, or "
            "writes the converted copy elsewhere with --out NEW)"
        )
    return blob


def read_verified(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint of any format this package knows (0.1's included, for the converter), verified against its
    digest, with the required entries, not yet checked for being readable by this version."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}: check the path (train one with `python -m metalearn_lite train`)")
    restore = ("re-create it (the command that made a shipped model is in metalearn_lite/data/checkpoints/README.md), "
               f"or restore it: `git checkout -- {path.name}` in its folder, or reinstall the package")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():
            raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {type(err).__name__}. "
                             f"{restore}") from err
        # torch's own message recommends the unsafe weights_only=False: never repeat that advice
        raise ValueError(
            f"{path} holds Python objects other than tensors and plain values (code could run when it is "
            f"unpickled), which this package never loads; {restore}"
        ) from err
    except Exception as err:  # torch raises many types on damaged files; all mean the same here
        reason = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {reason}. {restore}") from err
    if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, FORMAT_1):
        raise ValueError(f"{path} is not a metalearn-lite checkpoint (no '{FORMAT}' marker)")
    digest = blob.pop("sha256", None)
    if digest is not None and digest != content_digest(blob):
        raise ValueError(f"{path} is damaged: its contents do not match the SHA-256 recorded when it was saved; "
                         f"{restore}")
    missing = [k for k, kind in REQUIRED.items() if not isinstance(blob.get(k), kind)]
    if missing or not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values()):
        raise ValueError(f"{path} is an incomplete checkpoint: {missing or ['state_dict']} missing or of the wrong "
                         f"type; {restore}")
    return blob


def load_weights(method: EpisodicMethod, blob: dict[str, Any]) -> EpisodicMethod:
    """Load a checkpoint dict's weights into ``method``; ``ValueError`` naming what does not fit."""
    name = blob.get("method")
    if name != method.name:
        raise ValueError(f"this checkpoint holds a {name!r} model, not {method.name!r}: build a "
                         f"{METHODS[name].__name__ if name in METHODS else name} to load it into")
    own = method.state_dict()
    state = blob["state_dict"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"the checkpoint's weights do not fit this {name} (checkpoint config {blob['config']}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, mismatched shapes {wrong[:3]}; build the method "
            "with the same network and options as the run that saved it"
        )
    method.load_state_dict(state)
    return method


def model_from_checkpoint(
    blob: dict[str, Any], method: EpisodicMethod | str | None = None, device: str | torch.device | None = None
) -> EpisodicMethod:
    """The method a checkpoint dict describes, in eval mode: ``method`` itself with the weights loaded into it
    if it is a method, else rebuilt from the registry (``method`` as a name checks that it is the expected one)."""
    name = blob.get("method")
    if isinstance(method, EpisodicMethod):
        model = load_weights(method, blob)
    else:
        if method is not None and name != method:
            raise ValueError(f"this checkpoint holds a {name!r} model, not {method!r}: load it as {name!r}")
        if name not in METHODS:
            raise ValueError(f"checkpoint method {name!r} is unknown to this version; known: {sorted(METHODS)}")
        model = load_weights(build_method(name, **blob["config"]), blob)
    model.recipe = blob.get("recipe")
    if device is not None:
        model.to(device)
    return model.eval()


def load_checkpoint(
    path: str | os.PathLike, method: EpisodicMethod | str | None = None, device: str | torch.device | None = None
) -> EpisodicMethod:
    """The method saved at ``path``, in eval mode, on ``device`` (default: where it is, CPU for a rebuilt one).

    Args:
        method: ``None`` rebuilds the method from the registry (the package's own networks only); a method
            you built (e.g. ``ProtoNet(MyNet())``) gets the weights loaded into it and is returned; a name
            checks that the file holds that method.
    """
    return model_from_checkpoint(read_checkpoint(path), method, device)


def checkpoint_dir() -> Path:
    """The package's ``data/checkpoints`` (or ``$METALEARN_LITE_DATA/checkpoints``)."""
    return data_root() / "checkpoints"


def no_pretrained_message() -> str:
    """What to say when no pretrained model is found: the folder searched, and why that one."""
    return (f"no pretrained models (*.pt) in {checkpoint_dir()} (looked there because of {data_root_origin()}); "
            "unset METALEARN_LITE_DATA to use the shipped ones, or point it at a folder whose checkpoints/ "
            "subfolder holds .pt files")


def available_pretrained() -> list[str]:
    """Names accepted by :func:`load_pretrained`; an empty list warns where it looked."""
    names = sorted(p.stem for p in checkpoint_dir().glob("*.pt"))
    if not names:
        warnings.warn(no_pretrained_message(), stacklevel=2)
    return names


def load_pretrained(name: str, device: str | torch.device | None = None) -> EpisodicMethod | LearnedOptimizer:
    """A ready model trained by this package, e.g. ``load_pretrained("protonet-omniglot")`` (a
    :class:`LearnedOptimizer` for ``learned-optimizer-quadratic``, every other name a few-shot method).

    The returned model carries how it was trained: ``.command`` and ``.seed`` (also in
    ``metalearn_lite/data/checkpoints/README.md``), ``.train_config`` (the run's settings), ``.task_config`` (the
    task source's), ``.history`` (one dict per validation: step, loss, acc, val_acc, minutes), ``.step``,
    ``.best_val`` and ``.recipe``.
    """
    names = sorted(p.stem for p in checkpoint_dir().glob("*.pt"))
    if not names:
        raise ValueError(no_pretrained_message())
    if name not in names:
        raise ValueError(f"no pretrained model {name!r}; available: {names}")
    blob = read_checkpoint(checkpoint_dir() / f"{name}.pt")
    if blob.get("method") == "learned_optimizer":  # lesson 07's optimiser: an update rule, not a few-shot method
        model = LearnedOptimizer(**blob["config"])
        model.load_state_dict(blob["state_dict"])
        model = model.to(device).eval() if device is not None else model.eval()
    else:
        model = model_from_checkpoint(blob, device=device)
    model.command = blob.get("command", "")
    model.seed = blob.get("seed")
    model.history = blob.get("history", [])
    model.train_config = blob.get("train_config", {})
    model.task_config = blob.get("task_config", {})
    model.step = blob.get("step")
    model.best_val = blob.get("best_val")
    return model


def pretrained_backbone(name: str) -> Conv4:
    """The Conv-4 body of a shipped classifier, e.g. ``pretrained_backbone("pretrained-omniglot")``.

    Raises a ``ValueError`` naming a model that has one when ``name`` has no Conv-4 backbone.
    """
    source = load_pretrained(name)
    backbone = getattr(source, "backbone", None)
    if not isinstance(backbone, Conv4):
        raise ValueError(f"{name} is a {source.name} model, which has no Conv-4 backbone to start from; use a "
                         "pretrained model such as pretrained-omniglot")
    return backbone
