"""The recurrent pieces that several methods share: one LSTM cell and the learned optimisers' gradient preprocessing.

**The LSTM cell** (Hochreiter & Schmidhuber 1997, with a forget gate), from its pre-activations
``z = W [x, h] + b`` ``(..., 4H)``, split in PyTorch's gate order (input, forget, candidate, output)::

    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o),   c~ = tanh(z_c)
    c' = f * c + i * c~,   h' = o * tanh(c')

The learned optimiser runs it on ``Linear(I + H, 4H)`` layers (:func:`lstm_cell`), the MANN controller on
pre-activations it assembles itself from ``nn.LSTMCell`` weights (:func:`lstm_step`).

**Preprocessing** (Andrychowicz et al. 2016, appendix A): a number ``g`` of any magnitude becomes two
inputs, ``(log|g| / p, sgn g)`` if ``|g| >= e^{-p}`` and ``(-1, e^p g)`` otherwise (:func:`preprocess_gradient`);
the learned optimiser feeds it the optimisee's gradients, Meta-LSTM its learner's gradients and losses.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def preprocess_gradient(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """The paper's gradient preprocessing: ``grad`` ``(...)`` -> ``(..., 2)``.

    ``(log|g| / p, sgn g)`` where ``|g| >= e^{-p}``, ``(-1, e^p g)`` where it is smaller (see the module
    docstring).  The first input lies in ``[-1, inf)`` and grows by ``1/p`` per factor ``e``; the
    second is ``+-1`` for every gradient that is not tiny.
    """
    if not isinstance(grad, torch.Tensor) or not grad.dtype.is_floating_point:
        raise ValueError(f"grad must be a floating-point tensor; got {type(grad).__name__}"
                         f"{'' if not isinstance(grad, torch.Tensor) else ' of dtype ' + str(grad.dtype)}")
    if not p > 0:
        raise ValueError(f"p must be > 0; got {p}")
    floor = math.exp(-p)
    big = grad.abs() >= floor
    scale = torch.where(big, grad.abs().clamp_min(floor).log() / p, torch.full_like(grad, -1.0))
    direction = torch.where(big, grad.sign(), grad * math.exp(p))
    return torch.stack([scale, direction], dim=-1)


def gate_activations(z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pre-activations ``z`` ``(..., 4H)`` -> ``(i, f, c~, o)``, each ``(..., H)``: ``sigmoid``, ``sigmoid``,
    ``tanh``, ``sigmoid`` of its four quarters, in that order (PyTorch's ``nn.LSTM`` order)."""
    zi, zf, zc, zo = z.chunk(4, dim=-1)
    return torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zc), torch.sigmoid(zo)


def lstm_step(z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from the pre-activations ``z`` ``(..., 4H)`` and the cell ``c`` ``(..., H)``:
    ``c' = f * c + i * c~``, ``h' = o * tanh(c')``; returns ``(h', c')``, each ``(..., H)``."""
    i, f, cand, o = gate_activations(z)
    c = f * c + i * cand
    return o * torch.tanh(c), c


def lstm_gates(x: torch.Tensor, h: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, ...]:
    """The four gates of an LSTM cell: ``x`` ``(..., I)``, ``h`` ``(..., H)``, ``layer`` ``Linear(I + H, 4H)``.

    Returns ``(i, f, c~, o)``, each ``(..., H)``: input gate ``sigma(z_i)``, forget gate ``sigma(z_f)``,
    candidate ``tanh(z_c)`` and output gate ``sigma(z_o)``, where ``z = layer([x, h])`` is split in four
    in that order (PyTorch's ``nn.LSTM`` uses the same order).
    """
    return gate_activations(layer(torch.cat([x, h], dim=-1)))


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: ``c' = f * c + i * c~``, ``h' = o * tanh(c')``; returns ``(h', c')``, each ``(..., H)``."""
    return lstm_step(layer(torch.cat([x, h], dim=-1)), c)
