"""Batches of small optimisation problems, the "tasks" of a learned optimiser (lesson 07).

A learned optimiser is trained on a *distribution of objective functions*, as a few-shot learner is
trained on a distribution of classification tasks.  Each sampler here draws ``n`` independent
problems at once and returns them as one batch that knows

* ``theta0`` ``(n, P)``: where each problem's optimisation starts (``P`` parameters per problem);
* ``loss(theta)`` ``(n, P) -> (n,)``: every problem's objective at its own parameters.

Because the problems share no parameter, the gradient of ``loss(theta).sum()`` with respect to
``theta`` is, row by row, the gradient of each problem's own objective: any coordinate-wise
optimiser runs on the whole batch as if on ``n`` separate problems.

Two families:

* :class:`QuadraticProblems`, the synthetic functions of Andrychowicz et al. (2016, section 3.1),

      ``f(theta) = || W theta - y ||^2``,   ``W`` ``(d, d)`` and ``y`` ``(d,)`` with i.i.d. ``N(0, scale^2)`` entries,

  ``d = 10`` by default.  Its gradient is ``2 W^T (W theta - y)`` and its Hessian ``2 W^T W``: the
  eigenvalues are twice the squared singular values of a random Gaussian matrix, so the
  conditioning varies a lot from one problem to the next (the smallest singular value of a square
  Gaussian matrix is often close to 0), which is what makes a single learning rate a compromise.
* :class:`MLPProblems`, a different family for testing what an optimiser trained on quadratics has
  learned: fit a one-hidden-layer sigmoid MLP (20 units, as in the paper's MNIST network) by full-batch
  cross-entropy to a random two-dimensional classification task whose labels come from a random
  "teacher" network.  It is non-convex, its gradients shrink as the predictions saturate, and their
  scales are unlike the quadratics', while each problem stays small enough to batch by the hundred
  on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..devices import resolve_device
from ..validation import int_at_least, positive_number


def _check_theta(theta: torch.Tensor, n: int, params: int, what: str) -> None:
    if not isinstance(theta, torch.Tensor) or theta.shape != (n, params):
        shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
        raise ValueError(f"theta must be a tensor (problems, parameters) = ({n}, {params}) for this batch of "
                         f"{n} {what}; got {shape}")


@dataclass(frozen=True)
class QuadraticBatch:
    """``n`` quadratics ``f_i(theta) = || W_i theta - y_i ||^2``.

    Attributes:
        W: ``(n, d, d)``; y: ``(n, d)``; theta0: ``(n, d)``, the starting points.
    """

    W: torch.Tensor
    y: torch.Tensor
    theta0: torch.Tensor

    @property
    def n(self) -> int:
        """Number of problems in the batch."""
        return self.W.shape[0]

    @property
    def num_params(self) -> int:
        """Parameters per problem (``d``)."""
        return self.W.shape[-1]

    def residual(self, theta: torch.Tensor) -> torch.Tensor:
        """``W theta - y`` ``(n, d)`` for ``theta`` ``(n, d)``."""
        _check_theta(theta, self.n, self.num_params, "quadratics")
        return (self.W @ theta.unsqueeze(-1)).squeeze(-1) - self.y

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """``(n,)``: ``|| W_i theta_i - y_i ||^2`` for each problem."""
        return self.residual(theta).pow(2).sum(-1)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """The analytic gradient ``2 W_i^T (W_i theta_i - y_i)`` ``(n, d)`` (autograd gives the same)."""
        return 2.0 * (self.W.transpose(-1, -2) @ self.residual(theta).unsqueeze(-1)).squeeze(-1)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> QuadraticBatch:
        """The same problems on ``device`` and/or in ``dtype``."""
        return QuadraticBatch(*(t.to(device=device, dtype=dtype) for t in (self.W, self.y, self.theta0)))


class QuadraticProblems:
    """Seeded sampler of random quadratics ``|| W theta - y ||^2`` (Andrychowicz et al., 2016, section 3.1).

    Args:
        dim: ``d``, the number of parameters of each problem (10 in the paper).
        scale: standard deviation of the entries of ``W`` and ``y`` (1 in the paper).  With
            ``scale = s`` the gradients grow like ``s^2`` and the best learning rate of SGD shrinks
            like ``1 / s^2``.
        init_std: standard deviation of the starting point ``theta0``, drawn around the origin.
        seed: the same seed gives the same problems (the draws come from a ``torch.Generator``).
        device: where batches are returned (default CPU); ``.to()`` on a batch moves it later.

    ``sample(n)`` returns a :class:`QuadraticBatch` with ``W`` ``(n, d, d)``, ``y`` ``(n, d)`` and
    ``theta0`` ``(n, d)``.
    """

    def __init__(self, dim: int = 10, scale: float = 1.0, init_std: float = 0.01, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        int_at_least("dim", dim, 1)
        positive_number("scale", scale)
        if not (init_std >= 0 and math.isfinite(init_std)):
            raise ValueError(f"init_std must be a number >= 0; got {init_std!r}")
        self.dim, self.scale, self.init_std = dim, float(scale), float(init_std)
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n: int = 1) -> QuadraticBatch:
        """``n`` new problems (float32, on the sampler's device)."""
        int_at_least("n", n, 1)
        d, g = self.dim, self.generator
        W = self.scale * torch.randn(n, d, d, generator=g)
        y = self.scale * torch.randn(n, d, generator=g)
        theta0 = self.init_std * torch.randn(n, d, generator=g)
        return QuadraticBatch(W, y, theta0).to(self.device)


@dataclass(frozen=True)
class MLPBatch:
    """``n`` classification problems, each fitting its own one-hidden-layer MLP to its own points.

    A problem's parameters are one flat row of ``theta`` ``(n, P)``, read as ``W1`` ``(inputs, hidden)``,
    ``b1`` ``(hidden,)``, ``W2`` ``(hidden, classes)``, ``b2`` ``(classes,)`` in that order.

    Attributes:
        x: ``(n, points, inputs)`` inputs; labels: ``(n, points)`` integer classes; theta0: ``(n, P)``;
        hidden: hidden units; classes: classes; activation: ``"sigmoid"`` or ``"relu"``.
    """

    x: torch.Tensor
    labels: torch.Tensor
    theta0: torch.Tensor
    hidden: int
    classes: int
    activation: str = "sigmoid"

    @property
    def n(self) -> int:
        """Number of problems in the batch."""
        return self.x.shape[0]

    @property
    def num_params(self) -> int:
        """Parameters per problem: ``inputs * hidden + hidden + hidden * classes + classes``."""
        return self.theta0.shape[-1]

    def unflatten(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``theta`` ``(n, P)`` -> ``W1`` ``(n, in, H)``, ``b1`` ``(n, H)``, ``W2`` ``(n, H, C)``, ``b2`` ``(n, C)``."""
        _check_theta(theta, self.n, self.num_params, "MLP problems")
        i, h, c = self.x.shape[-1], self.hidden, self.classes
        w1, b1, w2, b2 = theta.split([i * h, h, h * c, c], dim=-1)
        return w1.reshape(-1, i, h), b1, w2.reshape(-1, h, c), b2

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        """``(n, points, classes)``: each problem's network on its own points."""
        w1, b1, w2, b2 = self.unflatten(theta)
        pre = self.x @ w1 + b1.unsqueeze(1)
        hidden = torch.sigmoid(pre) if self.activation == "sigmoid" else torch.relu(pre)
        return hidden @ w2 + b2.unsqueeze(1)

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """``(n,)``: each problem's mean cross-entropy over its points."""
        logits = self.logits(theta)
        ce = F.cross_entropy(logits.reshape(-1, self.classes), self.labels.reshape(-1), reduction="none")
        return ce.view(self.n, -1).mean(-1)

    def accuracy(self, theta: torch.Tensor) -> torch.Tensor:
        """``(n,)``: the fraction of each problem's points its network classifies right."""
        return (self.logits(theta).argmax(-1) == self.labels).to(theta.dtype).mean(-1)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> MLPBatch:
        """The same problems on ``device`` and/or with float tensors in ``dtype``."""
        return MLPBatch(self.x.to(device=device, dtype=dtype), self.labels.to(device=device),
                        self.theta0.to(device=device, dtype=dtype), self.hidden, self.classes, self.activation)


class MLPProblems:
    """Seeded sampler of small classification problems for an MLP (lesson 07's "another family").

    Each problem draws ``points`` inputs ``x ~ N(0, I)`` in ``inputs`` dimensions and labels them with a
    random teacher network (``teacher`` tanh units, ``N(0, 1)`` weights, label = the arg-max of its
    ``classes`` outputs), so every problem has its own curved decision boundaries.  The student, whose
    weights are optimised, has one hidden layer of ``hidden`` units and starts from PyTorch's default
    initialisation for ``nn.Linear`` (uniform in ``+-1/sqrt(fan_in)``).

    Args:
        inputs, hidden, classes, points, teacher: sizes (see above).
        activation: the student's hidden non-linearity, ``"sigmoid"`` (as in the paper's MNIST network)
            or ``"relu"``.
        seed: the same seed gives the same problems; device: where batches are returned.

    ``sample(n)`` returns an :class:`MLPBatch` with ``x`` ``(n, points, inputs)``, ``labels``
    ``(n, points)`` and ``theta0`` ``(n, P)``.
    """

    def __init__(self, inputs: int = 2, hidden: int = 20, classes: int = 2, points: int = 64, teacher: int = 8,
                 activation: str = "sigmoid", seed: int = 0, device: str | torch.device | None = None) -> None:
        for name, v in (("inputs", inputs), ("hidden", hidden), ("points", points), ("teacher", teacher)):
            int_at_least(name, v, 1)
        int_at_least("classes", classes, 1)
        if classes < 2:
            raise ValueError(f"classes must be >= 2 for a classification problem; got {classes}")
        if activation not in ("sigmoid", "relu"):
            raise ValueError(f"activation must be 'sigmoid' or 'relu'; got {activation!r}")
        self.inputs, self.hidden, self.classes, self.points, self.teacher = inputs, hidden, classes, points, teacher
        self.activation = activation
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def num_params(self) -> int:
        """Parameters of one student network."""
        return self.inputs * self.hidden + self.hidden + self.hidden * self.classes + self.classes

    def _uniform(self, shape: tuple[int, ...], bound: float) -> torch.Tensor:
        return bound * (2.0 * torch.rand(shape, generator=self.generator) - 1.0)

    def sample(self, n: int = 1) -> MLPBatch:
        """``n`` new problems (float32, on the sampler's device)."""
        int_at_least("n", n, 1)
        g, i, h, c, t = self.generator, self.inputs, self.hidden, self.classes, self.teacher
        x = torch.randn(n, self.points, i, generator=g)
        t1, tb1 = torch.randn(n, i, t, generator=g), torch.randn(n, 1, t, generator=g)
        t2 = torch.randn(n, t, c, generator=g)
        labels = (torch.tanh(x @ t1 + tb1) @ t2).argmax(-1)
        theta0 = torch.cat([
            self._uniform((n, i * h), 1 / math.sqrt(i)), self._uniform((n, h), 1 / math.sqrt(i)),
            self._uniform((n, h * c), 1 / math.sqrt(h)), self._uniform((n, c), 1 / math.sqrt(h)),
        ], dim=-1)
        return MLPBatch(x, labels, theta0, h, c, self.activation).to(self.device)
