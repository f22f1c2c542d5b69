"""The sinusoid regression runs of Finn et al. (2017, section 5.1): the task source, the test tasks, the
jointly pretrained baseline and the report.

Each task is ``y = A sin(x - phi)`` (:class:`~metalearn_lite.datasets.SinusoidTasks`); the model is the 40-40
ReLU MLP trained with the mean squared error, ``K = 10`` support points per task in training, inner rate
``alpha = 0.01``, meta-batch 25.  It is scored by the MSE on a task's query points after ``test_steps``
gradient steps on ``K = 5`` support points.  The paper's baseline, "pretrained", fits *one* network to points
of all tasks at once (joint regression; the best such network predicts roughly the average function,
-(2/pi) E[A] cos x, about -1.62 cos x for amplitudes in [0.1, 5] and phases in [0, pi]), then fine-tunes on a
task's support points the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..algorithms.inner_loop import Rate, adapted_params_tasks, check_finite_inner, forward_tasks, params_of
from ..algorithms.maml import MAML
from ..datasets.sinusoid import SinusoidTasks
from ..devices import resolve_device
from ..episodes import Episode
from ..evaluation import mean_ci
from ..models import MLP
from .omniglot import VAL_SEED, no_alphabets
from .settings import TaskSettings

EVAL_SHOTS = 5  # support points of the test tasks (the paper's 5-shot numbers)
EVAL_QUERIES = 100  # query points per test task


def adapted_mse(net: torch.nn.Module, episode: Episode, steps: int, lr: Rate, trainable: list[str] | None = None,
                batching: str = "vmap") -> torch.Tensor:
    """Per-task query MSE ``(T,)`` after ``steps`` gradient steps on each task's support points,
    starting from ``net``'s weights (which are not changed)."""
    with torch.enable_grad():
        params, inner = adapted_params_tasks(net, params_of(net, detach=True), episode.support_x, episode.support_y,
                                             F.mse_loss, steps, lr, True, trainable, batching)
    check_finite_inner(inner, lr)
    with torch.no_grad():
        pred = forward_tasks(net, {n: p.detach() for n, p in params.items()}, episode.query_x, batching)
        return ((pred - episode.query_y) ** 2).flatten(1).mean(1)


def pretrain_regressor(steps: int = 5000, tasks: int = 25, points: int = 10, lr: float = 1e-3, hidden: int = 40,
                       layers: int = 2, seed: int = 0, device: str | torch.device | None = None) -> MLP:
    """The "pretrained" baseline: an MLP trained by plain regression on points pooled from many tasks.

    Each step draws ``tasks`` sinusoids with ``points`` points each and minimises the MSE over all of
    them with Adam (a few seconds on a CPU).
    """
    device = resolve_device(device)
    torch.manual_seed(seed)
    net = MLP(1, (hidden,) * layers, 1).to(device)
    sampler = SinusoidTasks(seed=seed + 1, device=device)
    opt = torch.optim.Adam(net.parameters(), lr)
    for _ in range(steps):
        ep = sampler.sample(tasks, points, 0)
        loss = F.mse_loss(net(ep.support_x.flatten(0, 1)), ep.support_y.flatten(0, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def eval_tasks(episodes: int, seed: int, shots: int = EVAL_SHOTS, device: str | torch.device | None = None) -> Episode:
    """``episodes`` seeded sinusoid tasks with ``shots`` support and 100 query points."""
    return SinusoidTasks(seed=seed, device=device).sample(episodes, shots, EVAL_QUERIES)


class SinusoidSource:
    """Meta-batches of sinusoid tasks with ``shots`` support and ``queries`` query points; validated by
    the MSE after ``test_steps`` steps on ``val_episodes`` fixed ``val_shots``-shot tasks (score: ``-mse``)."""

    def __init__(self, settings: TaskSettings, device: torch.device, val_episodes: int = 200) -> None:
        no_alphabets(settings, "sinusoid regression tasks")
        self.settings = settings
        self.tasks = SinusoidTasks(seed=settings.seed, device=device)
        self.val = eval_tasks(val_episodes, VAL_SEED, settings.val_shots, device)

    def sample(self, tasks: int = 1) -> Episode:
        return self.tasks.sample(tasks, self.settings.shots, self.settings.queries)

    def validate(self, method: MAML) -> tuple[float, dict[str, float]]:
        mse = float(method.query_losses(self.val).mean())
        return -mse, {"val_mse": mse}

    def generators(self) -> dict[str, torch.Generator]:
        return {"tasks": self.tasks.generator}


def sinusoid_report(method: MAML, episodes: int = 600, seed: int = 0) -> str:
    """MSE ± 95 % CI on ``episodes`` 5-shot test tasks after ``test_steps`` steps, next to the jointly
    pretrained baseline fine-tuned the same way (trained here, seconds)."""
    device = next(method.parameters()).device
    tasks = eval_tasks(episodes, seed, device=device)
    ours = mean_ci(method.query_losses(tasks).cpu())
    base_net = pretrain_regressor(device=device)
    base = mean_ci(adapted_mse(base_net, tasks, method.test_steps, method.inner_lr).cpu())
    return (f"MSE {ours[0]:.3f} ± {ours[1]:.3f} after {method.test_steps} steps (lr {method.inner_lr:g}) on "
            f"{episodes} {EVAL_SHOTS}-shot tasks; jointly pretrained baseline fine-tuned the same way: "
            f"{base[0]:.3f} ± {base[1]:.3f}")
