"""The one trainer every method uses, on any source of tasks.

``train(method, tasks, val_tasks)`` draws ``tasks_per_step`` tasks per step from ``tasks`` (an
:class:`~metalearn_lite.EpisodeSampler`, or any object with ``sample(n)``), minimises ``method.loss`` with
Adam and step decay, validates every ``val_every`` steps, and keeps two checkpoints in ``out_dir``:

* ``best.pt``: the weights with the best validation score so far (accuracy on ``val_tasks``; without
  ``val_tasks``, the lowest running training loss);
* ``last.pt``: the complete training state (weights, optimiser, schedule, the task source's and torch's
  random states, history), written every ``save_every`` steps and when training is interrupted.

Calling ``train`` again with the same ``out_dir`` resumes from ``last.pt`` and continues exactly as an
uninterrupted run would have: ``last.pt`` holds everything that decides what happens next (weights, optimiser,
schedule, step, history, the running loss behind ``best.pt``, the task source's and torch's random states).
SIGINT (Ctrl-C) and SIGTERM are taken at a step boundary (:mod:`metalearn_lite.interrupts`): the step in
progress finishes, ``last.pt`` is saved and ``train`` returns; a second signal stops at once and the step in
progress is undone whole before saving.  A resume that would change the task source, its settings or a run
setting that decides what a step does is refused unless ``change_settings=True``
(:mod:`metalearn_lite.resumption`).  Before step 1, ``out_dir`` is checked to be a writable folder and the
method runs once on the first tasks (:mod:`metalearn_lite.preflight`); a non-finite loss or gradient stops
the run with an error naming the inputs or the learning rate to blame.

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
from .algorithms import METHODS, EpisodicMethod
from .checkpoints import load_weights, read_checkpoint, save_checkpoint
from .devices import resolve_device
from .distributed import Group, agree, from_main, gather, join, leave, reseed, share, wrap
from .episode_loader import as_task_source
from .episodes import Episode
from .finite import check_weights, non_finite_inputs
from .interrupts import DeferredSignals, StepSnapshot
from .preflight import check_first_task, check_out_dir
from .resumption import apply_run_settings, describe_tasks, refusal, settings_changes
from .run_log import RunLog, check_callbacks
from .train_options import Precision, make_optimizer
from .validation import positive_int

#: what a last.pt must hold to be resumed from
RESUME_KEYS = ("optimizer", "scheduler", "rng", "step", "best_val", "history")


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
    #: seeds torch's global random generator at the start of a fresh run: random choices made inside the
    #: method's loss (dropout, random augmentation on the global generator) follow it.  It does not reseed the
    #: task source (give the sampler its own ``seed=``) nor the initial weights (built before ``train``: call
    #: ``torch.manual_seed`` before building the model); under torchrun each rank's task stream is derived from it
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "tasks_per_step", "lr_decay_every", "val_every", "save_every", "val_episodes"):
            positive_int(name, getattr(self, name))
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
    change_settings: bool = False,
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
        change_settings: resume ``last.pt`` even though the task source, its settings or the run's settings
            differ from the saved run's (the change is applied and recorded in the checkpoint's ``changes``).
        optimizer: a ``torch.optim.Optimizer`` class (built with ``lr`` and ``weight_decay``) or a factory
            ``params -> optimizer``; default Adam (:mod:`metalearn_lite.train_options`).
        amp: ``"bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA, with a gradient scaler) mixed precision; ``None``:
            float32.
        callbacks: a callable or a list of them, each called with a :class:`~metalearn_lite.run_log.RunEvent`
            after every step and every validation.  Every step's metrics also go to ``out_dir/history.csv``.

    ``seed`` (a setting) seeds torch's global generator at the start of a fresh run (dropout and other random
    choices inside the method's loss); the tasks follow the task source's own seed and the initial weights the
    generator's state when the model was built.

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
        result = _train(method, tasks, val_tasks, cfg, out, device, progress, resume, command, task_config, recipe,
                        group, options, change_settings)
    except BaseException:
        leave(group, finished=False)
        raise
    leave(group, finished=not result.interrupted)
    return result


def _train(method: EpisodicMethod, tasks: Any, val_tasks: Any, cfg: TrainConfig, out: Path, device: Any,
           progress: bool, resume: bool, command: str, task_config: dict[str, Any] | None, recipe: str | None,
           group: Group, options: dict[str, Any], change_settings: bool = False) -> TrainResult:
    tune_for_training()  # glibc keeps the step's big buffers for reuse (metalearn_lite._malloc)
    device = resolve_device(device, next(method.parameters()))
    method.to(device)
    check_out_dir(out)  # before any work: a run folder that is a file is found now, not at the first save
    torch.manual_seed(cfg.seed)
    per_rank = share(cfg.tasks_per_step, group)
    if group.active:  # every rank its own stream of tasks, derived from the run's seed
        reseed(task_generators(tasks), cfg.seed, group.rank)

    if cfg.compile:  # before any work, which for some task sources is long
        if not hasattr(method, "compile_training"):
            able = sorted(name for name, cls in METHODS.items() if hasattr(cls, "compile_training"))
            raise ValueError(f"{method.name} has no compiled training step (compile=True is for: "
                             f"{', '.join(able)}); train it without compile")
        method.compile_training()
    validator = _validator(val_tasks, cfg.val_episodes) if group.is_main else None
    opt = make_optimizer(options["optimizer"], [p for p in method.parameters() if p.requires_grad], cfg.lr,
                         cfg.weight_decay)
    precision = Precision(options["amp"], device, method)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    step, best_val, history = 0, -math.inf, []
    run_loss = run_acc = None
    source = type(tasks).__name__
    task_config = dict(task_config) if task_config is not None else describe_tasks(tasks)
    changes: list[dict[str, Any]] = []

    last = out / "last.pt"
    if resume and last.exists():
        blob = read_checkpoint(last)
        if blob.get("method") != method.name or blob.get("config") != method.config:
            raise ValueError(
                f"{last} belongs to a different run ({blob.get('method')} {blob.get('config')}); "
                "choose another out_dir, or pass resume=False to start over (it will be overwritten)"
            )
        missing = [k for k in RESUME_KEYS if k not in blob]
        if missing:
            raise ValueError(f"{last} lacks the training state {missing} needed to resume: pass resume=False "
                             "(CLI: --no-resume) to start over, or choose another out_dir")
        ranks = blob.get("rng_ranks")
        if (ranks or 1) != group.world:
            raise ValueError(f"{last} was written by a run on {ranks or 1} process(es); resume it on as many "
                             f"(this run has {group.world}), or pass resume=False to start over")
        changed = settings_changes(blob, source, task_config, asdict(cfg))
        if changed and not change_settings:
            raise ValueError(refusal(last, changed))
        load_weights(method, blob)
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        step, best_val, history = blob["step"], blob["best_val"], blob["history"]
        run_loss, run_acc = blob.get("running_loss"), blob.get("running_acc")
        changes = list(blob.get("changes", []))
        if changed:
            apply_run_settings(opt, sched, asdict(cfg), step)
            changes.append({"step": step, "changed": changed, "command": command})
        _set_rng_state(tasks, blob["rng"][group.rank] if group.active else blob["rng"])
        precision.load_state_dict(blob.get("precision"))
    check_weights(method, f"the {method.name} to train")
    log = RunLog(out, options["callbacks"], write=group.is_main, resume_step=step)
    loss_of = wrap(method, device) if group.active else method.loss

    def state() -> dict[str, Any]:
        return {"step": step, "best_val": best_val, "history": history, "running_loss": run_loss,
                "running_acc": run_acc}

    def save(path: Path, training_state: bool) -> None:
        """Write a checkpoint (rank 0); with ``training_state``, every rank takes part (their random states)."""
        extra: dict[str, Any] = {"train_config": asdict(cfg), "task_config": task_config, "task_source": source,
                                 "recipe": recipe, "command": command, "seed": cfg.seed, "changes": changes,
                                 **state()}
        if training_state:
            states = gather(_rng_state(tasks), group)
            extra.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         rng=states if group.active else states[0], precision=precision.state_dict())
            if group.active:
                extra["rng_ranks"] = group.world
        if group.is_main:
            save_checkpoint(path, method, **extra)

    def snapshot() -> StepSnapshot:
        return StepSnapshot(method, opt, sched, task_generators(tasks), state())

    compile_start: float | None = time.monotonic()  # compiling happens in the first forward and backward
    # one forward pass on the first tasks, undone afterwards: inputs the model cannot take fail now
    before = snapshot()
    with precision.autocast():  # the dtype the run will use
        check_first_task(method, tasks.sample(per_rank), method.loss)
    before.restore(method, opt, sched, task_generators(tasks))
    method.zero_grad(set_to_none=True)

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)

    start = time.monotonic()
    interrupted = False
    method.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and group.is_main), desc=method.name,
               dynamic_ncols=True)
    with DeferredSignals() as signals:
        try:
            while step < cfg.steps:
                if agree(signals.requested, group):  # a signal arrived during the last step: stop here
                    interrupted = True
                    save(last, training_state=True)
                    break
                before = snapshot() if not group.active else None
                batch = tasks.sample(per_rank)
                try:
                    with precision.autocast():
                        loss, acc = loss_of(batch)
                except FloatingPointError as err:
                    raise _diagnose(err, batch, method, step, sched, last) from err
                if not torch.isfinite(loss):
                    raise _diagnose(None, batch, method, step, sched, last, loss.item())
                opt.zero_grad(set_to_none=True)
                precision.backward(loss)
                grads = [p.grad for p in method.parameters() if p.grad is not None]
                if (grads and precision.scaler is None
                        and not torch.isfinite(torch.stack([g.norm() for g in grads]).sum())):
                    raise _diagnose(None, batch, method, step, sched, last, loss.item(), "gradient")
                lr = sched.get_last_lr()[0]
                precision.step(opt, clip if cfg.grad_clip > 0 else None)
                sched.step()
                step += 1
                lv, av = loss.item(), float(acc)
                run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
                run_acc = av if run_acc is None else 0.95 * run_acc + 0.05 * av
                if cfg.compile and compile_start is not None and group.is_main:
                    if getattr(method, "layout_only", False):
                        tqdm.write("channels_last only: compiling this network's step was measured slower on this "
                                   f"device; the first step took {time.monotonic() - compile_start:.1f} s")
                    else:
                        tqdm.write(f"compiled the training step in {time.monotonic() - compile_start:.1f} s "
                                   "(the first step, compiling included)")
                compile_start = None
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
                if group.is_main:
                    print(f"\ninterrupted at step {step}: resume from the last save in {last} (every "
                          f"{cfg.save_every} steps)")
            else:
                # the step in progress is discarded whole: weights, optimiser, random states and the loop's
                # values go back to where they were before it, so the resumed run does it again from its start
                if before is not None:
                    values = before.restore(method, opt, sched, task_generators(tasks))
                    step, best_val, history = values["step"], values["best_val"], values["history"]
                    run_loss, run_acc = values["running_loss"], values["running_acc"]
                save(last, training_state=True)
        finally:
            log.flush()
            bar.close()
    if interrupted and group.is_main and not group.active:
        print(f"\ninterrupted at step {step}: state saved to {last}; run again with the same out_dir to resume")
    elif interrupted and group.is_main and signals.requested:
        print(f"\nstopped at step {step}: state saved to {last}; run again with the same out_dir to resume")
    if not interrupted:  # every rank reports rank 0's validation (the other ranks never validate)
        best_val, history = from_main((best_val, history), group)
    return TrainResult(out, step, best_val, history, interrupted)


def _diagnose(err: Exception | None, batch: Any, method: EpisodicMethod, step: int, sched: Any, last: Path,
              value: float | None = None, what: str = "loss") -> Exception:
    """The error for a non-finite training loss or gradient at step ``step + 1``: the inputs if they are to
    blame, else the learning rates (``inner_lr`` too for a method with an inner loop), with how to resume
    when a ``last.pt`` exists."""
    bad = non_finite_inputs(batch)
    if bad:
        return ValueError(f"the training tasks of step {step + 1} hold non-finite values (NaN or inf) in {bad}: "
                          "clean the data (e.g. torch.nan_to_num, or drop those examples)")
    inner = getattr(method, "inner_lr", None)
    rates = f"the learning rate (now {sched.get_last_lr()[0]:g})"
    if isinstance(inner, (int, float)):
        rates += f" or the inner learning rate inner_lr (now {inner:g})"
    hint = (f"; to continue from the last save, run again with the same out_dir, the smaller rate and "
            f"change_settings=True (CLI: --change-settings); {last} holds it") if last.exists() else ""
    if err is not None:
        return FloatingPointError(f"step {step + 1}: {err}{hint}")
    where = "training loss" if what == "loss" else f"gradient of the training loss ({value:g})"
    shown = value if what == "loss" else "non-finite"
    return FloatingPointError(f"the {where} became {shown} at step {step + 1}; lower {rates}{hint}")
