"""A learner's output layer: which submodule it is, the zero head built per task, and its scores' shape.

ANIL adapts only the head; the zeroing trick (Kao, Chiu & Chen, ICLR 2022) and Proto-MAML build it afresh for
each task, with one row per class of that task; every classifier's scores need one column per class.
"""

from __future__ import annotations

import torch
from torch import nn

from .inner_loop import LossFn


def find_head(net: nn.Module, head: str | None = None) -> str:
    """The parameter-name prefix of ``net``'s output layer (ANIL adapts only it; ``zero_head`` zeroes it).

    ``head`` names it (a submodule name such as ``"fc"``); by default ``net.head`` if it exists, else the
    last submodule that holds parameters of its own.
    """
    names = [n for n, _ in net.named_parameters()]
    if head is not None:
        prefix = head.rstrip(".") + "."
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(f"the model has no parameters under head={head!r}; its parameters are {names[:6]}...: "
                             "name the output layer's submodule")
        return prefix
    if isinstance(getattr(net, "head", None), nn.Module) and any(n.startswith("head.") for n in names):
        return "head."
    owners = [m for m, mod in net.named_modules() if any(True for _ in mod.parameters(recurse=False))]
    if not owners:
        raise ValueError("the model has no submodule with parameters to act as its head; pass head=NAME")
    return owners[-1] + "." if owners[-1] else ""  # a one-layer model is its own head


def head_layer(net: nn.Module, prefix: str) -> nn.Module:
    """The submodule under the parameter-name ``prefix`` that :func:`find_head` returned (``""``: ``net`` itself)."""
    return net.get_submodule(prefix.rstrip(".")) if prefix else net


def is_linear_with_bias(layer: nn.Module) -> bool:
    """Whether ``layer`` is an ``nn.Linear`` with a bias: a head that can be zeroed or built from prototypes."""
    return isinstance(layer, nn.Linear) and layer.bias is not None


def zero_and_freeze_head(net: nn.Module, head: str) -> None:
    """The zeroing trick's stored head: the layer under ``head`` (an ``nn.Linear`` with a bias, else a
    ``ValueError``) set to zero and excluded from meta-training; every task builds its own from zero."""
    layer = head_layer(net, head)
    if not is_linear_with_bias(layer):
        raise ValueError(f"zero_head=True needs a classifier whose head ({head.rstrip('.') or 'the model'}) is an "
                         f"nn.Linear with a bias; got {type(layer).__name__}")
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    layer.requires_grad_(False)


def default_zero_head(net: nn.Module, head: str, loss: str | LossFn) -> bool:
    """``zero_head=None`` resolved: ``True`` for a classifier (``loss="cross_entropy"``) whose head (the layer
    under the prefix ``head``) is an ``nn.Linear`` with a bias, ``False`` for anything else."""
    return loss == "cross_entropy" and is_linear_with_bias(head_layer(net, head))


def check_class_scores(output: torch.Tensor, target: torch.Tensor, classes: int | None) -> None:
    """``ValueError`` unless ``output`` holds one score per class for each of the ``target`` examples."""
    if output.dim() != 2 or (classes is not None and output.shape[-1] != classes):
        raise ValueError(
            f"the model outputs {tuple(output.shape)} for {target.shape[0]} examples, but each needs one score "
            f"per class ({classes} classes in these tasks): give its last layer {classes} outputs (e.g. "
            f"nn.Linear(features, {classes})), train on {output.shape[-1]}-way tasks, or use "
            "zero_head=True, which builds the head for each task's classes"
        )
