"""The one trainer every method uses, on any source of tasks.

``train(method, tasks, val_tasks)`` draws ``tasks_per_step`` tasks per step from ``tasks`` (an
:class:`~metalearn_lite.EpisodeSampler`, or any object with ``sample(n)``), minimises ``method.loss`` with
Adam and step decay, validates every ``val_every`` steps, and keeps two checkpoints in ``out_dir``:

* ``best.pt``: the weights with the best validation score so far (accuracy on ``val_tasks``; without
  ``val_tasks``, the lowest running training loss);
* ``last.pt``: the complete training state (weights, optimiser, schedule, the task source's and torch's
  random states, history), written every ``save_every`` steps and when training is interrupted.

Calling ``train`` again with the same ``out_dir`` resumes from ``last.pt`` and continues with exactly the
tasks an uninterrupted run would have drawn.  Ctrl-C saves ``last.pt`` and returns.

Under ``torchrun`` (or with ``distributed=True``) it runs on every process with ``torch.distributed`` and
DDP (:mod:`metalearn_lite.distributed`): each rank draws ``tasks_per_step / ranks`` tasks from its own
stream (its task generators re-seeded from the run's seed and its rank), the gradients are averaged,
and only rank 0 validates, writes ``best.pt`` and ``last.pt`` (with every rank's random state, so a
resumed run with the same number of processes continues exactly) and shows the progress bar.

What the trainer asks of its inputs:

* ``tasks.sample(n)``: the next training meta-batch, passed as is to ``method.loss``; its random state is
  found in ``tasks.generators()`` (a dict of ``torch.Generator``) or ``tasks.generator``;
* ``val_tasks``: an object with ``validate(method) -> (score, metrics)`` (higher is better), fixed tasks (an
  :class:`~metalearn_lite.Episode`), or a sampler, from which ``val_episodes`` tasks are drawn once; tasks
  are scored by ``method.validation_score`` (few-shot accuracy for a classifier, minus the loss otherwise).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ._malloc import tune_for_training
from .algorithms import EpisodicMethod
from .checkpoints import load_weights, read_checkpoint, save_checkpoint
from .devices import resolve_device
from .distributed import Group, agree, gather, join, leave, reseed, share, wrap
from .episode_loader import as_task_source
from .episodes import Episode
from .run_log import RunLog, check_callbacks
from .train_options import Precision, make_optimizer


@dataclass
class TrainConfig:
    """The run-level settings of a training run (stored in every checkpoint).

    What a task is (ways, shots, image size, ...) belongs to the task source, not here.
    """

    steps: int = 2000
    lr: float = 1e-3
    tasks_per_step: int = 1  # tasks (episodes, sequences) per optimisation step: the meta-batch
    lr_decay: float = 0.5
    lr_decay_every: int = 1_000_000  # multiply the learning rate by lr_decay every this many steps
    weight_decay: float = 0.0
    val_every: int = 250
    val_episodes: int = 200
    save_every: int = 250
    time_limit_min: float = 0.0  # stop after this many minutes (0: no limit)
    grad_clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    compile: bool = False  # torch.compile the method's training step (method.compile_training)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "tasks_per_step", "lr_decay_every", "val_every", "save_every", "val_episodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        for name in ("lr",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("weight_decay", "time_limit_min", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")


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

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"


def task_generators(source: Any) -> dict[str, torch.Generator]:
    """The random generators behind ``source.sample``: ``source.generators()``, or ``source.generator``."""
    if hasattr(source, "generators"):
        return dict(source.generators())
    g = getattr(source, "generator", None)
    return {"generator": g} if isinstance(g, torch.Generator) else {}


def _rng_state(source: Any) -> dict[str, torch.Tensor]:
    state = {name: g.get_state() for name, g in task_generators(source).items()}
    state["torch"] = torch.get_rng_state()
    return state


def _set_rng_state(source: Any, state: dict[str, torch.Tensor]) -> None:
    for name, g in task_generators(source).items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])


class FixedTasks:
    """Validation tasks fixed once (``episodes`` drawn from a sampler, or an :class:`Episode` as given), scored
    by ``method.validation_score``."""

    def __init__(self, sampler: Any, episodes: int) -> None:
        self.batch = sampler if isinstance(sampler, Episode) else sampler.sample(episodes)

    def validate(self, method: EpisodicMethod) -> tuple[float, dict[str, float]]:
        return method.validation_score(self.batch)


def _validator(val_tasks: Any, episodes: int) -> Any:
    if val_tasks is None or hasattr(val_tasks, "validate"):
        return val_tasks
    if hasattr(val_tasks, "sample") or isinstance(val_tasks, Episode):
        return FixedTasks(val_tasks, episodes)
    raise ValueError(f"val_tasks must be a sampler with sample(n), fixed tasks (an Episode) or an object with "
                     f"validate(method); "
                     f"got {type(val_tasks).__name__}")


def _check_inputs(method: Any, tasks: Any) -> None:
    if not isinstance(method, EpisodicMethod):
        raise ValueError(f"train() needs a metalearn_lite method (ProtoNet, MAML, ...); got {type(method).__name__}. "
                         "Wrap your network in one: ml.ProtoNet(encoder=your_net)")
    if not hasattr(tasks, "sample"):
        raise ValueError(f"tasks must have sample(n) -> a meta-batch (e.g. ml.EpisodeSampler(x, y, ways=5, shots=1)); "
                         f"got {type(tasks).__name__}")
    if not any(p.requires_grad for p in method.parameters()):
        raise ValueError(f"{type(method).__name__} has no trainable parameters")


def train(
    method: EpisodicMethod,
    tasks: Any,
    val_tasks: Any = None,
    config: TrainConfig | None = None,
    *,
    out_dir: str | Path = "runs/default",
    device: str | torch.device | None = None,
    progress: bool = True,
    resume: bool = True,
    command: str = "",
    task_config: dict[str, Any] | None = None,
    recipe: str | None = None,
    distributed: bool | None = None,
    optimizer: Any = None,
    amp: str | None = None,
    callbacks: Any = None,
    **settings: Any,
) -> TrainResult:
    """Train ``method`` on tasks drawn from ``tasks`` (see the module docstring).

    Args:
        method: the method to train (updated in place; ends holding the *last* weights, while
            ``out_dir/best.pt`` holds the best validated ones).
        tasks: the training tasks: an :class:`~metalearn_lite.EpisodeSampler`, a ``DataLoader`` over an
            :class:`~metalearn_lite.EpisodeBatchSampler` (episodes loaded by its workers), or any ``sample(n)``.
        val_tasks: validation tasks (a sampler, or an object with ``validate(method)``); ``None`` keeps the
            weights with the lowest running training loss.
        config: the run's :class:`TrainConfig`; ``settings`` (``steps=``, ``lr=``, ``tasks_per_step=``,
            ``val_every=``, ``seed=``, ...: its fields) override it.
        out_dir: where ``best.pt`` and ``last.pt`` go.
        device: where to train (default: the method's current device).  The task source's tensors must
            be there too (an ``EpisodeSampler`` takes ``device=``).
        progress: show a ``tqdm`` bar (a widget in Jupyter, text in a terminal).
        resume: continue from ``out_dir/last.pt`` if it exists.
        command, task_config, recipe: recorded in the checkpoints (the CLI's command line, the task
            source's settings, the course recipe's name).
        distributed: train on every process of a ``torch.distributed`` group (DDP); ``None``: when launched
            by ``torchrun`` or inside an initialised process group.
        optimizer: a ``torch.optim.Optimizer`` class (built with ``lr`` and ``weight_decay``) or a factory
            ``params -> optimizer``; default Adam (:mod:`metalearn_lite.train_options`).
        amp: ``"bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA, with a gradient scaler) mixed precision; ``None``:
            float32.
        callbacks: a callable or a list of them, each called with a :class:`~metalearn_lite.run_log.RunEvent`
            after every step and every validation.  Every step's metrics also go to ``out_dir/history.csv``.

    Example::

        sampler = ml.EpisodeSampler(x, y, ways=5, shots=1, queries=5, seed=0)
        result = ml.train(ml.ProtoNet(my_net), sampler, val_tasks=val_sampler, steps=500, out_dir="runs/mine")
        best = ml.load_checkpoint(result.best_path, method=ml.ProtoNet(MyNet()))
    """
    known = {f.name for f in fields(TrainConfig)}
    wrong = sorted(set(settings) - known)
    if wrong:
        raise ValueError(f"unknown training setting(s) {wrong}; the run's settings are {sorted(known)} (what a task "
                         "is, ways, shots, ..., belongs to the task source)")
    cfg = TrainConfig(**{**(asdict(config) if config is not None else {}), **settings})
    params = method.parameters() if isinstance(method, torch.nn.Module) else iter(())
    to = device if device is not None else next(params, torch.empty(0)).device
    tasks, val_tasks = as_task_source(tasks, to), as_task_source(val_tasks, to)  # a DataLoader of episodes
    _check_inputs(method, tasks)
    options = {"optimizer": optimizer, "amp": amp, "callbacks": check_callbacks(callbacks)}
    out = Path(out_dir)
    group, device = join(distributed, None if device is None else torch.device(device))
    try:
        return _train(method, tasks, val_tasks, cfg, out, device, progress, resume, command, task_config, recipe,
                      group, options)
    finally:
        leave(group)


def _train(method: EpisodicMethod, tasks: Any, val_tasks: Any, cfg: TrainConfig, out: Path, device: Any,
           progress: bool, resume: bool, command: str, task_config: dict[str, Any] | None, recipe: str | None,
           group: Group, options: dict[str, Any]) -> TrainResult:
    tune_for_training()  # glibc keeps the step's big buffers for reuse (metalearn_lite._malloc)
    device = resolve_device(device, next(method.parameters()))
    method.to(device)
    torch.manual_seed(cfg.seed)
    per_rank = share(cfg.tasks_per_step, group)
    if group.active:  # every rank its own stream of tasks, derived from the run's seed
        reseed(task_generators(tasks), cfg.seed, group.rank)

    if cfg.compile:  # before any work, which for some task sources is long
        if not hasattr(method, "compile_training"):
            raise ValueError(f"{method.name} has no compiled training step (compile=True is for: mann); "
                             "train it without compile")
        method.compile_training()
    validator = _validator(val_tasks, cfg.val_episodes) if group.is_main else None
    opt = make_optimizer(options["optimizer"], [p for p in method.parameters() if p.requires_grad], cfg.lr,
                         cfg.weight_decay)
    precision = Precision(options["amp"], device, method)
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
        ranks = blob.get("rng_ranks")
        if (ranks or 1) != group.world:
            raise ValueError(f"{last} was written by a run on {ranks or 1} process(es); resume it on as many "
                             f"(this run has {group.world}), or pass resume=False to start over")
        load_weights(method, blob)
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        step, best_val, history = blob["step"], blob["best_val"], blob["history"]
        _set_rng_state(tasks, blob["rng"][group.rank] if group.active else blob["rng"])
        precision.load_state_dict(blob.get("precision"))
    log = RunLog(out, options["callbacks"], write=group.is_main, resume_step=step)
    loss_of = wrap(method, device) if group.active else method.loss

    def save(path: Path, training_state: bool, rng: dict[str, torch.Tensor] | None = None) -> None:
        """Write a checkpoint (rank 0); with ``training_state``, every rank takes part (their random states)."""
        extra: dict[str, Any] = {"train_config": asdict(cfg), "task_config": task_config or {}, "recipe": recipe,
                                 "command": command, "seed": cfg.seed, "step": step, "best_val": best_val,
                                 "history": history}
        if training_state:
            states = gather(rng or _rng_state(tasks), group)
            extra.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         rng=states if group.active else states[0], precision=precision.state_dict())
            if group.active:
                extra["rng_ranks"] = group.world
        if group.is_main:
            save_checkpoint(path, method, **extra)

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)

    start = time.monotonic()
    interrupted = False
    method.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and group.is_main), desc=method.name,
               dynamic_ncols=True)
    run_loss = run_acc = None
    rng_before, step_started = None, False
    try:
        while step < cfg.steps:
            # the random state before this step's draws: an interrupt inside the step saves this one,
            # so the resumed run draws the same tasks again
            rng_before, step_started = _rng_state(tasks), True
            batch = tasks.sample(per_rank)
            with precision.autocast():
                loss, acc = loss_of(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} at step {step + 1}; lower the learning rate "
                    f"(now {sched.get_last_lr()[0]:g}) or resume from {last} with a smaller one"
                )
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            lr = sched.get_last_lr()[0]
            precision.step(opt, clip if cfg.grad_clip > 0 else None)
            sched.step()
            step += 1
            step_started = False
            lv, av = loss.item(), float(acc)
            run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
            run_acc = av if run_acc is None else 0.95 * run_acc + 0.05 * av
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}")
            log.step(step, {"loss": lv, "acc": av, "run_loss": run_loss, "run_acc": run_acc, "lr": lr,
                            "minutes": (time.monotonic() - start) / 60}, method, opt)
            over_time = cfg.time_limit_min > 0 and agree(time.monotonic() - start > 60 * cfg.time_limit_min,
                                                             group)
            if (step % cfg.val_every == 0 or step == cfg.steps or over_time) and group.is_main:
                if validator is None:
                    score, metrics = -run_loss, {}
                else:
                    method.eval()
                    score, metrics = validator.validate(method)
                method.train()
                history.append({"step": step, "loss": run_loss, "acc": run_acc, **metrics,
                                "minutes": (time.monotonic() - start) / 60})
                bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}",
                                **{k: f"{v:.3g}" for k, v in metrics.items()})
                log.validation(step, {**metrics, "score": score}, method, opt)  # score: what best.pt is kept by
                if score > best_val:
                    best_val = score
                    save(out / "best.pt", training_state=False)
            if step % cfg.save_every == 0 or step == cfg.steps or over_time:
                log.flush()
                save(last, training_state=True)
            if over_time:
                break
    except KeyboardInterrupt:
        interrupted = True
        if group.active:  # the other ranks may be gone: no collective call can be trusted now
            print(f"\ninterrupted at step {step}: resume from the last save in {last} (every {cfg.save_every} steps)")
        else:
            # weights and optimiser change only in opt.step(), at the end of a step; an interrupt before it
            # leaves them as after `step` steps, so pair them with the random state from before the draws
            save(last, training_state=True, rng=rng_before if step_started else None)
            print(f"\ninterrupted at step {step}: state saved to {last}; run again to resume")
    finally:
        log.flush()
        bar.close()
    return TrainResult(out, step, best_val, history, interrupted)
