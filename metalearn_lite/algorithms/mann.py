"""Memory-Augmented Neural Network with least-recently-used access (Santoro et al., 2016).

An LSTM controller reads drawings one at a time together with the previous step's label and
learns, across many episodes, to *store* each drawing's features with its label in an external
memory and to *retrieve* them when a drawing of the same class comes back: the learning inside an
episode happens in the memory, with no gradient step.

At step ``t`` the controller emits one key ``k_t`` and one gate ``alpha`` per head.  With ``M_t`` the
``N x M`` memory, usage ``w^u`` and read weights ``w^r``:

* write (to the slot read last step or to a least-used slot)::

      w^w_t = sigmoid(alpha) * w^r_{t-1} + (1 - sigmoid(alpha)) * w^lu_{t-1}
      M_t(i) = M_{t-1}(i) + w^w_t(i) k_t              (least-used slots are zeroed first)

* read (content addressing by cosine similarity, in the memory just written to)::

      w^r_t(i) = softmax_i( beta * cos(k_t, M_t(i)) ),     r_t = sum_i w^r_t(i) M_t(i)

* usage::

      w^u_t = gamma * w^u_{t-1} + w^r_t + w^w_t,      w^lu_t = 1 on the least-used slots

and the output is ``softmax(W [h_t, r_t])``.

Why the order within a step matters: the label of drawing ``x_t`` arrives one step late, in the
input of step ``t + 1``.  Writing first, the read of step ``t`` finds the slot ``k_t`` was just
written to (a key matches itself best), so ``w^r_t`` points at ``x_t``'s slot, and at step
``t + 1`` the gate can add ``k_{t+1}``, which carries the label ``y_t``, into that same slot: one
step binds a drawing to its label.  ``write_first=False`` reads the memory as the earlier steps
left it instead; the read then never returns the key just written, but ``w^r_t`` points at an
older slot, the binding needs a drawing of the class to have been seen twice, and the 2nd
presentation stays at chance for much longer (``metalearn_lite/data/checkpoints/README.md`` has the runs).

Two choices of ours, both small: each head gets its own least-used slot (head ``j`` the ``j``-th
least used, so the heads never add their keys into one slot); and the cosine is scaled by a
learned strength ``beta = 1 + softplus`` (the paper's plain cosine in ``[-1, 1]`` gives a nearly
uniform softmax over 128 slots).  A third is optional, ``keys_see_input``: the heads' keys, gates
and strengths are computed from ``[h_t, x_t, y_{t-1}]`` instead of ``h_t`` alone, so a key can carry
the drawing's features without squeezing them through the LSTM's state first.

:class:`LSTMOneShot` is the paper's baseline: the same inputs and outputs with an LSTM only.
Both implement :class:`~metalearn_lite.fewshot.FewShotClassifier` (the support set is shown in a
random order, then every query is answered from the state after the support set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..compiling import check_compiler
from ..distances import cosine_similarity
from ..evaluation import presentation_accuracy
from ..fewshot import check_task
from ..models import Conv4
from ..validation import flag, positive_int
from .base import EpisodicMethod
from .lstm import lstm_step
from .ntm import EPS


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """One-hot rows marking the ``n`` least-used slots: ``(B, N)`` -> ``(B, n, N)`` (row ``j``: ``j``-th least used).

    Ties go to the lower slot index.
    """
    if n > usage.shape[-1]:
        raise ValueError(f"{n} heads need {n} distinct least-used slots, but the memory has {usage.shape[-1]}")
    # a stable sort on usage breaks ties by slot index, so an empty memory fills from slot 0
    idx = torch.sort(usage, dim=-1, stable=True).indices[:, :n]
    return F.one_hot(idx, usage.shape[-1]).to(usage.dtype)


@dataclass
class MANNState:
    """What the MANN carries from one step to the next (``B`` sequences, ``R`` heads)."""

    memory: torch.Tensor  # (B, N, M)
    reads: torch.Tensor  # (B, R, M)
    read_w: torch.Tensor  # (B, R, N)
    usage: torch.Tensor  # (B, N)
    controller: tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c)


class SequenceClassifier(EpisodicMethod):
    """What the MANN and its LSTM baseline share: inputs, the loss, per-presentation accuracy, few-shot use.

    A subclass implements ``forward(images (B, L, C, H, W), labels (B, L)) -> (logits (B, L, classes), info)``
    where step ``t`` may only use ``labels[:, :t]`` (the labels are shifted inside: :meth:`inputs`).

    Args:
        encoder: what the controller sees of a drawing: ``None`` for its raw pixels (the paper), or any
            ``nn.Module`` mapping ``(B, C, H, W)`` to ``(B, F)`` features, trained with the rest unless
            ``freeze_encoder``.
        classes: output classes (and width of the label input).
        image_size: side of the drawings.
        freeze_encoder: keep the encoder fixed (``requires_grad_(False)``, always in eval mode); drawings can
            then be encoded once, ahead of training (:meth:`encode_drawings`).
        normalize_features: scale each drawing's features to length ``sqrt(F)`` (keep their direction only).
    """

    module_args = ("encoder",)

    def __init__(self, encoder: nn.Module | None, classes: int, image_size: int, freeze_encoder: bool,
                 normalize_features: bool, **config: Any) -> None:
        super().__init__(encoder=encoder, classes=classes, image_size=image_size, freeze_encoder=freeze_encoder,
                         normalize_features=normalize_features, **config)
        for name, v in (("classes", classes), ("image_size", image_size)):
            positive_int(name, v)
        for name, v in (("freeze_encoder", freeze_encoder), ("normalize_features", normalize_features)):
            flag(name, v)
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be a torch.nn.Module or None (raw pixels); got {type(encoder).__name__}")
        if freeze_encoder and encoder is None:
            raise ValueError("freeze_encoder=True needs an encoder; raw pixels have nothing to freeze")
        self.classes, self.image_size = classes, image_size
        self.normalize_features, self.freeze_encoder = normalize_features, freeze_encoder
        self.encoder = encoder
        if freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()
        self.feature_size = self._feature_size()
        self.input_size = self.feature_size + classes

    def _feature_size(self) -> int:
        """``F``: pixels per drawing, Conv-4's embedding width, or another encoder's output width (one
        forward pass of a blank drawing, in eval mode)."""
        if self.encoder is None:
            return self.image_size * self.image_size
        if isinstance(self.encoder, Conv4):
            return self.encoder.embedding_dim(self.image_size)
        was = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                p = next(iter(self.encoder.parameters()), None)
                blank = torch.zeros(1, 1, self.image_size, self.image_size,
                                    device=None if p is None else p.device)
                return int(self.encoder(blank).flatten(1).shape[1])
        finally:
            self.encoder.train(was)

    @property
    def frozen_encoder(self) -> bool:
        """True when the encoder is fixed, so drawings can be encoded once (:meth:`encode_drawings`)."""
        return self.freeze_encoder

    def train(self, mode: bool = True) -> SequenceClassifier:
        super().train(mode)
        if self.frozen_encoder:  # a frozen encoder always uses its running statistics
            self.encoder.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What the controller sees of each drawing: ``(B, L, 1, H, W)`` -> ``(B, L, F)`` (pixels or features)."""
        if self.encoder is None:
            return images.flatten(2)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_encoder):
            return self.encoder(images.flatten(0, 1)).flatten(1).unflatten(0, images.shape[:2])

    @torch.no_grad()
    def encode_drawings(self, images: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Frozen-encoder features of grouped drawings, computed once: ``(C, D, 1, H, W)`` -> ``(C, D, F)``.

        The result can be given to :meth:`forward` in place of the drawings.
        """
        if not self.frozen_encoder:
            raise ValueError("only a frozen encoder (freeze_encoder=True) can encode drawings ahead of time; this "
                             "model's encoder is trained with the rest (or it reads raw pixels)")
        flat = images.flatten(0, 1)
        self.inputs(flat[:1].unsqueeze(0), torch.zeros(1, 1, dtype=torch.long, device=flat.device))  # checks shapes
        feats = torch.cat([self.encoder(flat[i : i + chunk]).flatten(1) for i in range(0, len(flat), chunk)])
        return feats.unflatten(0, images.shape[:2])

    def _precomputed(self, images: torch.Tensor) -> bool:
        return (self.frozen_encoder and isinstance(images, torch.Tensor) and images.dim() == 3
                and images.shape[-1] == self.feature_size)

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[f(x_t), onehot(y_{t-1})]`` for every step: ``(B, L, 1, H, W)``, ``(B, L)`` -> ``(B, L, F + classes)``
        (``F = H*W`` for raw pixels)."""
        s = self.image_size
        precomputed = self._precomputed(images)
        if not precomputed and (not isinstance(images, torch.Tensor) or images.dim() != 5
                                or tuple(images.shape[2:]) != (1, s, s)):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(
                f"images must be (batch, steps, 1, {s}, {s}) for this model (built for {s}x{s} drawings); got "
                f"{shape}. Load the data with omniglot_split(..., size={s})"
            )
        if labels.shape != images.shape[:2]:
            raise ValueError(f"labels must be (batch, steps) = {tuple(images.shape[:2])}; got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.classes):
            raise ValueError(
                f"labels must lie in 0..{self.classes - 1}: this model was built for episodes of at most "
                f"{self.classes} classes; got labels {int(labels.min())}..{int(labels.max())}"
            )
        onehot = F.one_hot(labels.long(), self.classes).to(images.dtype)
        prev = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
        feats = images if precomputed else self.features(images)
        if self.normalize_features:  # keep each drawing's direction, at length sqrt(F): about 1 per feature
            feats = F.normalize(feats, dim=-1) * self.feature_size**0.5
        return torch.cat([feats, prev], -1)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits, _ = self(images, labels)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return loss, (logits.argmax(-1) == labels).float().mean()

    @torch.no_grad()
    def presentation_accuracy(self, images: torch.Tensor, labels: torch.Tensor, chunk: int = 100,
                              presentations: int | None = None) -> torch.Tensor:
        """Per-episode accuracy at each presentation: ``(T, L, 1, H, W)``, ``(T, L)`` -> ``(T, P)``.

        ``P`` defaults to the most presentations of a class in the episodes (10 for 5 x 10 episodes).
        """
        was = self.training
        self.eval()
        try:
            correct = torch.cat([self(images[i : i + chunk], labels[i : i + chunk])[0].argmax(-1)
                                 == labels[i : i + chunk] for i in range(0, len(labels), chunk)])
        finally:
            self.train(was)
        if presentations is None:
            presentations = int(F.one_hot(labels.long(), self.classes).sum(1).max())
        return presentation_accuracy(correct.cpu(), labels.cpu(), presentations)

    # ------------------------------------------------------------------ few-shot classifier

    def logits(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """One task: the support set in a fixed random order, then each query from the state after it.

        ``(S, 1, H, W), (S,), (Q, 1, H, W) -> (Q, N)``.  ``N`` may not exceed ``classes``.
        """
        classes, targets = check_task(support_x, support_y, query_x)
        n = len(classes)
        if n > self.classes:
            raise ValueError(f"this model answers at most {self.classes} classes per task; the support set has {n}")
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0)).to(targets.device)
        sx, sy = support_x[order].unsqueeze(0), targets[order].unsqueeze(0)
        state = self.expand_state(self(sx, sy)[1]["state"], query_x.shape[0])
        # every query is shown as the next step, with the last support label as the "previous label"
        step = self.inputs(query_x.unsqueeze(1), torch.zeros_like(targets[:1]).expand(query_x.shape[0], 1))
        step = torch.cat([step[..., : -self.classes],
                          F.one_hot(sy[0, -1], self.classes).to(step.dtype).expand_as(step[..., -self.classes:])], -1)
        out, _ = self.run_inputs(step, state)
        return out[:, 0, :n]


class MANN(SequenceClassifier):
    """MANN with an LSTM controller and LRU access memory (module docstring).

    Args:
        encoder: ``None`` (the paper: the controller sees the flattened drawing) or any network mapping
            ``(B, 1, H, W)`` to ``(B, F)``; the course uses the frozen Conv-4 backbone of ``pretrained-omniglot``
            (``freeze_encoder=True``, trained on the meta-train classes only; drawings are then encoded once,
            ahead of training), handed in by the recipe the way ``--init-body`` hands one to MAML.
        classes: output classes (and width of the label input): 5 in the paper's 5-way episodes.
        image_size: side of the drawings.
        freeze_encoder: keep the encoder fixed.
        hidden: LSTM units (200 in the paper).
        memory_size, memory_width: ``N`` slots of width ``M`` (128 x 40 in the paper; the shipped model: 128 x 64).
        read_heads: heads (4); each reads with its own key and writes that key.
        gamma: usage decay (0.95).
        write_first: the paper's order within a step (write, then read the memory just written to);
            ``False`` reads first (module docstring says why the order matters).
        normalize_features: scale each drawing's features to length ``sqrt(F)`` before the controller sees
            them, keeping only their direction (what the cosine of the memory reads compares).  The frozen
            encoder's features have lengths near 37 on meta-train drawings but near 32 on the test alphabets'
            (means over 800 drawings of each); normalised, the controller cannot come to rely on a scale
            that new alphabets do not have.
        keys_see_input: compute the heads' parameters (key, gate ``alpha``, strength ``beta``) from the
            step's input ``[f(x_t), y_{t-1}]`` as well as from ``h_t``: ``interface(h_t) + interface_input(input_t)``.
            The paper's keys come from ``h_t`` only; a key that sees the features directly can match drawings
            by what they look like, which the hidden state only passes on approximately.

    The memory starts at zero (an empty slot has cosine 0 with every key) and the key strength
    starts near 11: with ``beta`` near 1 a read spreads over all 128 slots (a matching slot gets
    ``e^1`` against ``e^0`` for each of the others), the retrieved vector is a blur, and training
    sits on a plateau where only the first-presentation guess improves.
    """

    name = "mann"

    def __init__(self, encoder: nn.Module | None = None, classes: int = 5, image_size: int = 28,
                 freeze_encoder: bool = False, hidden: int = 200, memory_size: int = 128, memory_width: int = 40,
                 read_heads: int = 4, gamma: float = 0.95, write_first: bool = True, normalize_features: bool = False,
                 keys_see_input: bool = False) -> None:
        super().__init__(encoder, classes, image_size, freeze_encoder, normalize_features, hidden=hidden,
                         memory_size=memory_size, memory_width=memory_width, read_heads=read_heads, gamma=gamma,
                         write_first=write_first, keys_see_input=keys_see_input)
        for name, v in (("hidden", hidden), ("memory_size", memory_size), ("memory_width", memory_width),
                        ("read_heads", read_heads)):
            positive_int(name, v)
        if read_heads > memory_size:
            raise ValueError(f"memory_size={memory_size} is too small for {read_heads} heads: each head writes "
                             "to its own least-used slot; use memory_size >= read_heads")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma (usage decay) must lie in [0, 1]; got {gamma}")
        self.hidden, self.n, self.m, self.heads, self.gamma = hidden, memory_size, memory_width, read_heads, gamma
        self.write_first = bool(write_first)
        self.keys_see_input = flag("keys_see_input", keys_see_input)
        self.lstm = nn.LSTMCell(self.input_size + read_heads * memory_width, hidden)
        self.interface = nn.Linear(hidden, read_heads * (memory_width + 2))  # key, alpha, beta per head
        # with keys_see_input, the step's input [f(x_t), y_{t-1}] also goes straight into the heads' parameters
        self.interface_input = (nn.Linear(self.input_size, read_heads * (memory_width + 2), bias=False)
                                if keys_see_input else None)
        with torch.no_grad():  # reads start selective: beta = 1 + softplus(10) ~ 11 (see the class docstring)
            self.interface.bias.view(read_heads, memory_width + 2)[:, -1] = 10.0
        self.out = nn.Linear(hidden + read_heads * memory_width, classes)
        self._compiled_step = None  # set by compile_training(); used in training mode only

    def compile_training(self) -> None:
        """Compile :meth:`_step` (one time step of the controller and memory) with ``torch.compile``.

        Training then runs the compiled step; evaluation keeps the eager one.  Measured on this project's
        2-core CPU (``benchmarks/mann_step.py``): 0.44 -> 0.30 s per 64-episode training step of the shipped
        configuration, after about 20 s of compiling (less when the compiled kernels are cached).  On a CPU
        ``torch.compile`` needs a C++ compiler.
        """
        check_compiler(self.out.weight.device)
        self._compiled_step = torch.compile(self._step, dynamic=False)

    def initial_state(self, batch: int) -> MANNState:
        p = self.out.weight
        z = p.new_zeros(batch, self.hidden)
        return MANNState(
            memory=p.new_zeros(batch, self.n, self.m),
            reads=p.new_zeros(batch, self.heads, self.m),
            read_w=p.new_zeros(batch, self.heads, self.n),
            usage=p.new_zeros(batch, self.n),
            controller=(z, z),
        )

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The LSTM's weights split for speed: input part, [reads, h] part, and the summed biases."""
        w_ih, n_in = self.lstm.weight_ih, self.input_size
        w_rh = torch.cat([w_ih[:, n_in:], self.lstm.weight_hh], 1)
        return w_ih[:, :n_in], w_rh, self.lstm.bias_ih + self.lstm.bias_hh

    def forward_step(
        self, inp: torch.Tensor, state: MANNState
    ) -> tuple[torch.Tensor, MANNState, dict[str, torch.Tensor]]:
        """One step: ``inp`` ``(B, H*W + classes)`` -> logits ``(B, classes)``, new state, weightings."""
        w_x, w_rh, bias = self._weights()
        params_x = None if self.interface_input is None else self.interface_input(inp)
        return self._step(F.linear(inp, w_x, bias), w_rh, state, params_x)

    @staticmethod
    def _read(keys: torch.Tensor, beta: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content read: cosine of every key ``(B, R, M)`` with every slot of ``memory`` ``(B, N, M)``, sharpened
        by ``beta`` ``(B, R, 1)``: weights ``(B, R, N)`` and read vectors ``(B, R, M)``."""
        sim = cosine_similarity(keys, memory, EPS)
        read_w = torch.softmax(beta * sim, -1)
        return read_w, read_w @ memory

    def _step(self, gates_x: torch.Tensor, w_rh: torch.Tensor, state: MANNState,
              params_x: torch.Tensor | None = None):
        """:meth:`forward_step` with the input's share of the LSTM gates ``(B, 4 * hidden)`` precomputed (and of
        the heads' parameters ``(B, R * (M + 2))`` with ``keys_see_input``)."""
        b = gates_x.shape[0]
        h, c = state.controller
        # the LSTM cell on its pre-activations (gate order of torch.nn.LSTMCell: input, forget, cell, output)
        h, c = lstm_step(gates_x + F.linear(torch.cat([state.reads.flatten(1), h], -1), w_rh), c)
        params = self.interface(h) if params_x is None else self.interface(h) + params_x
        params = params.view(b, self.heads, self.m + 2)
        keys = torch.tanh(params[..., : self.m])  # (B, R, M)
        alpha = torch.sigmoid(params[..., self.m : self.m + 1])  # (B, R, 1)
        beta = 1 + F.softplus(params[..., self.m + 1 :])  # (B, R, 1)
        memory = state.memory
        if not self.write_first:  # read first, from the memory as the earlier steps left it
            read_w, reads = self._read(keys, beta, memory)
        # write the keys: to the slots read last step, or to the least-used ones (zeroed first)
        lu = least_used(state.usage, self.heads)  # (B, R, N) one-hot rows
        write_w = alpha * state.read_w + (1 - alpha) * lu
        memory = memory * (1 - lu.sum(1).clamp_max(1)).unsqueeze(-1)
        memory = memory + write_w.transpose(1, 2) @ keys  # (B, N, M)
        if self.write_first:  # the paper's order: read the memory this step's keys were just written to
            read_w, reads = self._read(keys, beta, memory)
        usage = self.gamma * state.usage + read_w.sum(1) + write_w.sum(1)
        logits = self.out(torch.cat([h, reads.flatten(1)], -1))
        return logits, MANNState(memory, reads, read_w, usage, (h, c)), {"read": read_w, "write": write_w}

    def run_inputs(self, inputs: torch.Tensor, state: MANNState | None = None):
        """Steps over prepared inputs ``(B, L, H*W + classes)`` -> logits ``(B, L, classes)`` and info."""
        state = state or self.initial_state(inputs.shape[0])
        w_x, w_rh, bias = self._weights()
        gates_x = F.linear(inputs, w_x, bias)  # every step's input share of the gates in one product
        params_x = ([None] * inputs.shape[1] if self.interface_input is None
                    else self.interface_input(inputs).unbind(1))
        outs, reads, writes, usages = [], [], [], []
        # unbind, not gates_x[:, t]: the backward of each slice fills a zero tensor of all L steps, L times
        # (O(L^2) work: a fifth of a one-thread training step at L = 50); unbind's backward stacks once
        step = self._compiled_step if self._compiled_step is not None and self.training else self._step
        for g, p in zip(gates_x.unbind(1), params_x):
            y, state, w = step(g, w_rh, state, p)
            outs.append(y)
            reads.append(w["read"])
            writes.append(w["write"])
            usages.append(state.usage)
        return torch.stack(outs, 1), {"read": torch.stack(reads, 1), "write": torch.stack(writes, 1),
                                      "usage": torch.stack(usages, 1), "memory": state.memory, "state": state}

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        """``(B, L, 1, H, W)``, ``(B, L)`` -> logits ``(B, L, classes)`` and a dict of per-step
        ``"read"``/``"write"`` weightings ``(B, L, R, N)``, ``"usage"`` ``(B, L, N)``, the final
        ``"memory"`` and ``"state"``."""
        return self.run_inputs(self.inputs(images, labels))

    @staticmethod
    def expand_state(state: MANNState, q: int) -> MANNState:
        """A one-sequence state repeated for ``q`` sequences."""
        return MANNState(state.memory.expand(q, -1, -1), state.reads.expand(q, -1, -1),
                         state.read_w.expand(q, -1, -1), state.usage.expand(q, -1),
                         tuple(s.expand(q, -1) for s in state.controller))


class LSTMOneShot(SequenceClassifier):
    """The baseline of Santoro et al.: an LSTM on the same ``[x_t, y_{t-1}]`` inputs, no external memory.

    Args:
        encoder, classes, image_size, freeze_encoder, normalize_features: as :class:`MANN`.
        hidden: LSTM units.
    """

    name = "lstm_oneshot"

    def __init__(self, encoder: nn.Module | None = None, classes: int = 5, image_size: int = 28,
                 freeze_encoder: bool = False, hidden: int = 200, normalize_features: bool = False) -> None:
        super().__init__(encoder, classes, image_size, freeze_encoder, normalize_features, hidden=hidden)
        self.hidden = positive_int("hidden", hidden)
        self.lstm = nn.LSTM(self.input_size, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def run_inputs(self, inputs: torch.Tensor, state: dict[str, Any] | None = None):
        h, (hn, cn) = self.lstm(inputs, None if state is None else state["controller"])
        return self.out(h), {"state": {"controller": (hn, cn)}}

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        """``(B, L, 1, H, W)``, ``(B, L)`` -> logits ``(B, L, classes)`` and ``{"state": ...}``."""
        return self.run_inputs(self.inputs(images, labels))

    @staticmethod
    def expand_state(state: dict[str, Any], q: int) -> dict[str, Any]:
        return {"controller": tuple(s.expand(-1, q, -1).contiguous() for s in state["controller"])}
