"""The one episodic trainer every method uses.

``train(method, config, out_dir)`` draws training meta-batches from the method's task source
(``method.task_source``: N-way K-shot Omniglot episodes by default, see
:mod:`metalearn_lite.task_sources`), optimises ``method.loss`` with Adam and step decay, validates
every ``val_every`` steps, and keeps two checkpoints in ``out_dir``:

* ``best.pt``: the weights with the best validation score so far;
* ``last.pt``: the complete training state (weights, optimiser, schedule, sampler and RNG
  states, history), written every ``save_every`` steps and when training is interrupted.

Calling ``train`` again with the same ``out_dir`` resumes from ``last.pt`` and continues with
exactly the episodes an uninterrupted run would have seen.  Ctrl-C saves ``last.pt`` and returns.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .algorithms import EpisodicMethod
from .checkpoints import read_checkpoint, save_checkpoint
from .devices import resolve_device
from .task_sources import TaskSource


@dataclass
class TrainConfig:
    """Everything that shapes a training run (stored in every checkpoint)."""

    ways: int = 20
    shots: int = 5
    queries: int = 5
    tasks: int = 1  # episodes (or sequences) per optimisation step (meta-batch)
    steps: int = 2000
    lr: float = 1e-3
    lr_decay: float = 0.5
    lr_decay_every: int = 1000
    weight_decay: float = 0.0
    rotations: bool = True
    mirrors: bool = False
    augment: bool = False
    by: str = "alphabet"
    same_alphabet: float = 0.0  # fraction of training episodes whose classes all come from one alphabet
    image_size: int = 28
    val_every: int = 250
    val_episodes: int = 200
    val_ways: int = 5
    val_shots: int = 1
    save_every: int = 250
    time_limit_min: float = 0.0  # stop after this many minutes (0: no limit)
    max_length: int = 20  # sequence tasks (NTM copy): lengths 1..max_length in training
    grad_clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    compile: bool = False  # torch.compile the method's training step (method.compile_training)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "tasks", "steps", "lr_decay_every", "val_every", "save_every", "val_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        v = self.same_alphabet
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"same_alphabet is a fraction of the training episodes: a number in [0, 1]; got {v!r}")


@dataclass
class TrainResult:
    """What a training run left behind."""

    out_dir: Path
    step: int
    best_val: float
    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"


def _rng_state(source: TaskSource) -> dict[str, torch.Tensor]:
    state = {name: g.get_state() for name, g in source.generators().items()}
    state["torch"] = torch.get_rng_state()
    return state


def _set_rng_state(source: TaskSource, state: dict[str, torch.Tensor]) -> None:
    for name, g in source.generators().items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])


def train(
    method: EpisodicMethod,
    config: TrainConfig | None = None,
    out_dir: str | Path = "runs/default",
    device: str | torch.device | None = None,
    command: str = "",
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train ``method`` episodically (see the module docstring).

    Args:
        method: the model to train (updated in place; ends holding the *last* weights, while
            ``out_dir/best.pt`` holds the best validated ones).
        config: the run's settings.
        out_dir: where ``best.pt`` and ``last.pt`` go.
        device: where to train (default: the method's current device).
        command: the command line that started the run, recorded in the checkpoints.
        progress: show a ``tqdm`` bar (a widget in Jupyter, text in a terminal).
        resume: continue from ``out_dir/last.pt`` if it exists.
    """
    cfg = config or TrainConfig()
    out = Path(out_dir)
    device = resolve_device(device, next(method.parameters()))
    method.to(device)
    torch.manual_seed(cfg.seed)

    if cfg.compile:  # before the task source, which may encode every training drawing first
        method.compile_training()
    source = method.task_source(cfg, device)
    opt = torch.optim.Adam(method.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    step, best_val, history = 0, -math.inf, []

    last = out / "last.pt"
    if resume and last.exists():
        blob = read_checkpoint(last)
        if blob.get("method") != method.name or blob.get("config") != method.config:
            raise ValueError(
                f"{last} belongs to a different run ({blob.get('method')} {blob.get('config')}); "
                "choose another out_dir, or pass resume=False to start over (it will be overwritten)"
            )
        method.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        step, best_val, history = blob["step"], blob["best_val"], blob["history"]
        _set_rng_state(source, blob["rng"])

    def save(path: Path, training_state: bool, rng: dict[str, torch.Tensor] | None = None) -> None:
        extra: dict[str, Any] = {"train_config": asdict(cfg), "command": command, "seed": cfg.seed,
                                 "step": step, "best_val": best_val, "history": history}
        if training_state:
            rng = rng or _rng_state(source)
            extra.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=rng)
        save_checkpoint(path, method, **extra)

    start = time.monotonic()
    interrupted = False
    method.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=method.name, dynamic_ncols=True)
    run_loss = run_acc = None
    rng_before, step_started = None, False
    try:
        while step < cfg.steps:
            # the random state before this step's draws: an interrupt inside the step saves this one,
            # so the resumed run draws the same episode again
            rng_before, step_started = _rng_state(source), True
            loss, acc = method.loss(source.sample())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} at step {step + 1}; lower the learning rate "
                    f"(now {sched.get_last_lr()[0]:g}) or resume from {last} with a smaller one"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            step_started = False
            lv, av = loss.item(), acc.item()
            run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
            run_acc = av if run_acc is None else 0.95 * run_acc + 0.05 * av
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}")
            over_time = cfg.time_limit_min > 0 and time.monotonic() - start > 60 * cfg.time_limit_min
            if step % cfg.val_every == 0 or step == cfg.steps or over_time:
                score, metrics = source.validate(method)
                method.train()
                history.append({"step": step, "loss": run_loss, "acc": run_acc, **metrics,
                                "minutes": (time.monotonic() - start) / 60})
                bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}",
                                **{k: f"{v:.3g}" for k, v in metrics.items()})
                if score > best_val:
                    best_val = score
                    save(out / "best.pt", training_state=False)
            if step % cfg.save_every == 0 or step == cfg.steps or over_time:
                save(last, training_state=True)
            if over_time:
                break
    except KeyboardInterrupt:
        interrupted = True
        # weights and optimiser change only in opt.step(), at the end of a step; an interrupt before it
        # leaves them as after `step` steps, so pair them with the random state from before the draws
        save(last, training_state=True, rng=rng_before if step_started else None)
        print(f"\ninterrupted at step {step}: state saved to {last}; run again to resume")
    finally:
        bar.close()
    return TrainResult(out, step, best_val, history, interrupted)
