"""Checks for lesson 07's exercises: the gradient preprocessing of Andrychowicz et al. (2016), and the update
of a Meta-LSTM cell (Ravi & Larochelle, 2017) whose cell state is the learner's parameters.

Each check runs the reader's function on cases with known answers and names the mistake it recognises
(natural versus base-10 logarithm, a missing ``1/p``, ``e^-p`` for ``e^p``, swapped inputs; a sign, a
missing forget gate, the new parameters returned instead of the update).  As in
:mod:`metalearn_lite.lessons.exercises`, ``check_x(fn)`` prints "Correct! ..." or "Not yet: ..." and
returns ``None``; ``strict=True`` raises :class:`CheckFailed` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..algorithms.learned_optimizer import preprocess_gradient
from .exercises import CheckFailed, answer_tensor, close, report

__all__ = ["CheckFailed", "check_cell_update", "check_preprocess", "solution_cell_update", "solution_preprocess"]

#: gradients on both sides of e^-10 = 4.5e-5, with both signs and a zero
GRADIENTS = torch.tensor([[3.0, -0.5, 2e-3, -1e-4], [1e-5, -3e-6, 0.0, 40.0]], dtype=torch.float64)


def _preprocess_variants(grad: torch.Tensor, p: float) -> dict[str, torch.Tensor]:
    """Wrong answers that the check recognises, computed from the reference's pieces."""
    floor = math.exp(-p)
    big = grad.abs() >= floor
    safe = grad.abs().clamp_min(1e-300)

    def pair(scale: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return torch.stack([scale, direction], dim=-1)

    minus_one = torch.full_like(grad, -1.0)
    return {
        "swapped": preprocess_gradient(grad, p).flip(-1),
        "log10": pair(torch.where(big, safe.log10() / p, minus_one), torch.where(big, grad.sign(), grad * math.exp(p))),
        "no_p": pair(torch.where(big, safe.log(), minus_one), torch.where(big, grad.sign(), grad * math.exp(p))),
        "e_minus_p": pair(torch.where(big, safe.log() / p, minus_one), torch.where(big, grad.sign(),
                                                                                      grad * math.exp(-p))),
        "sign_everywhere": pair(torch.where(big, safe.log() / p, minus_one), grad.sign()),
        "one_branch": pair(grad.abs().log() / p, grad.sign()),  # -inf at 0
    }


HINTS = {
    "swapped": "the two inputs are in the wrong order: the first is the log-magnitude (or -1), the second the "
               "sign (or e^p * grad)",
    "log10": "use the natural logarithm (torch.log), not log10: the threshold e^-p is where log|g| / p = -1",
    "no_p": "divide the logarithm by p: log|g| / p lies in [-1, a little above 0] for the gradients we see",
    "e_minus_p": "small gradients are multiplied by e^p (a large number), so that e^p * grad reaches +-1 at the "
                 "threshold and the two branches meet",
    "sign_everywhere": "below the threshold the second input is e^p * grad, not the sign: it must go to 0 with the "
                       "gradient instead of jumping to +-1",
    "one_branch": "gradients with |g| < e^-p take the second branch (-1, e^p * grad); here log|g| / p was used for "
                  "all of them (and is -inf at 0)",
}


def _preprocess(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> str:
    for p in (10.0, 2.0):
        grad = GRADIENTS.clone()
        want = preprocess_gradient(grad, p)
        raw = fn(grad.clone(), p)
        if isinstance(raw, torch.Tensor) and tuple(raw.shape) == (2, *grad.shape):
            raise CheckFailed(f"your function returned shape {tuple(raw.shape)}: put the two inputs on the LAST "
                              f"dimension, shape {tuple(want.shape)} (torch.stack([...], dim=-1))")
        got = answer_tensor(raw, "preprocessed gradient (..., 2)", tuple(want.shape))
        if close(got, want, 1e-6):
            continue
        for name, wrong in _preprocess_variants(grad, p).items():
            if close(got.nan_to_num(), wrong.nan_to_num(), 1e-6):
                raise CheckFailed(HINTS[name])
        worst = int((got - want).abs().nan_to_num(math.inf).amax(-1).flatten().argmax())
        g = float(grad.flatten()[worst])
        raise CheckFailed(f"for the gradient {g:.3g} with p = {p:g} you return {got.reshape(-1, 2)[worst].tolist()}, "
                          f"but the preprocessing gives {want.reshape(-1, 2)[worst].tolist()}")
    return ("(log|g| / p, sgn g) for |g| >= e^-p and (-1, e^p g) below: every gradient becomes two numbers of "
            "order 1, whatever its magnitude.")


def check_preprocess(fn: Callable[[torch.Tensor, float], torch.Tensor], strict: bool = False) -> None:
    """``fn(grad, p) -> (..., 2)``: the preprocessing of Andrychowicz et al.'s appendix A."""
    return report(_preprocess, fn, strict)


def solution_preprocess(grad: torch.Tensor, p: float) -> torch.Tensor:
    """A reference answer (used by the tests)."""
    big = grad.abs() >= math.exp(-p)
    first = torch.where(big, grad.abs().clamp_min(math.exp(-p)).log() / p, -torch.ones_like(grad))
    second = torch.where(big, torch.sign(grad), math.exp(p) * grad)
    return torch.stack([first, second], dim=-1)


# ----------------------------------------------------------------------------- the Meta-LSTM cell's update

CellFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _cases() -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    theta, grad = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    gates = torch.rand(2, 6, generator=g, dtype=torch.float64)
    return [
        (theta, grad, torch.ones(6, dtype=torch.float64), torch.full((6,), 0.1, dtype=torch.float64)),  # f = 1, i = 0.1
        (theta, grad, gates[0], gates[1]),                                                                # any gates
    ]


def _cell_update(fn: CellFn) -> str:
    for theta, grad, forget, inp in _cases():
        answer = fn(theta.clone(), grad.clone(), forget.clone(), inp.clone())
        got = answer_tensor(answer, "update theta_t - theta_{t-1}", tuple(theta.shape))
        want = (forget - 1) * theta - inp * grad
        if close(got, want, 1e-8):
            continue
        if close(got, forget * theta - inp * grad, 1e-8):
            raise CheckFailed("you returned the new parameters theta_t = f * theta + i * (-grad); return the update, "
                              "theta_t - theta_{t-1}")
        if close(got, (forget - 1) * theta + inp * grad, 1e-8) or close(got, inp * grad, 1e-8):
            raise CheckFailed("the sign is wrong: the candidate cell value is minus the gradient, so the input gate "
                              "scales a step DOWN the gradient")
        if close(got, -inp * grad, 1e-8):
            raise CheckFailed("right when the forget gate is 1, but here it is not: theta_t = f * theta_{t-1} - i * "
                              "grad, so the update also contains (f - 1) * theta_{t-1}")
        if close(got, -forget * inp * grad, 1e-8) or close(got, -forget * grad, 1e-8):
            raise CheckFailed("the forget gate multiplies the previous cell state (the parameters), not the gradient")
        raise CheckFailed("not the cell's update. Hint: c_t = f * c_{t-1} + i * c~_t with c_t = theta_t and "
                          "c~_t = -grad; the update is c_t - c_{t-1}")
    return ("theta_t - theta_{t-1} = (f - 1) theta_{t-1} - i grad. With f = 1 and i = alpha it is -alpha grad: "
            "one step of SGD at rate alpha; a forget gate below 1 also shrinks the parameters toward 0, like "
            "weight decay.")


def check_cell_update(fn: CellFn, strict: bool = False) -> None:
    """``fn(theta, grad, forget, inp) -> theta_t - theta_{t-1}`` for a cell state that holds the parameters."""
    return report(_cell_update, fn, strict)


def solution_cell_update(theta: torch.Tensor, grad: torch.Tensor, forget: torch.Tensor,
                         inp: torch.Tensor) -> torch.Tensor:
    """A reference answer (used by the tests)."""
    return forget * theta - inp * grad - theta
