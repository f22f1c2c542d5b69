"""What a resumed run may and may not change, and how an accepted change is applied and recorded.

A run resumed from ``last.pt`` must train on the same tasks with the same settings, or the checkpoint would
misstate how its weights were made.  :func:`settings_changes` lists what differs between the saved run and
the new call: the task source (its type) and its settings (``task_config``), and the run settings that
decide what a step does.  ``steps``, ``time_limit_min``, ``save_every`` and ``compile`` may change freely
(training longer, or on another schedule of saves, trains the same steps).  A listed change is refused
unless the caller asks for it (``change_settings=True``, CLI ``--change-settings``); it is then applied and
appended to the checkpoint's ``changes``: ``{"step", "changed": {key: [old, new]}, "command"}``.
"""

from __future__ import annotations

from typing import Any

import torch

#: run settings a resumed run may change without asking
FREE_RUN_SETTINGS = ("steps", "time_limit_min", "save_every", "compile")
#: attributes of a task source that say what its tasks are (recorded when the caller gives no task_config)
TASK_ATTRIBUTES = ("ways", "shots", "queries", "same_group", "num_classes", "batch_size", "min_length",
                   "max_length", "length", "width")


def describe_tasks(tasks: Any) -> dict[str, Any]:
    """A task source's settings, read from its plain attributes (an ``EpisodeSampler``'s ways, shots, ...)."""
    out: dict[str, Any] = {}
    for name in TASK_ATTRIBUTES:
        value = getattr(tasks, name, None)
        if isinstance(value, (bool, int, float, str)):
            out[name] = value
    data = getattr(tasks, "data", None)
    if isinstance(data, torch.Tensor):
        out["data_shape"] = list(data.shape)
        out["data_dtype"] = str(data.dtype)
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def settings_changes(blob: dict[str, Any], source: str, task_config: dict[str, Any],
                     run_config: dict[str, Any]) -> dict[str, list[Any]]:
    """``{setting: [saved, now]}`` for every setting the resumed run would change (see the module docstring).

    A saved value that is missing (a checkpoint from before it was recorded) is not compared.
    """
    changes: dict[str, list[Any]] = {}
    saved_source = blob.get("task_source")
    if saved_source and saved_source != source:
        changes["task source"] = [saved_source, source]
    saved_task = blob.get("task_config") or {}
    for key in sorted(set(saved_task) | set(task_config)):
        if key in saved_task and _plain(saved_task[key]) != _plain(task_config.get(key)):
            changes[key] = [saved_task[key], task_config.get(key)]
    saved_run = blob.get("train_config") or {}
    for key in sorted(run_config):
        if key not in FREE_RUN_SETTINGS and key in saved_run and saved_run[key] != run_config[key]:
            changes[key] = [saved_run[key], run_config[key]]
    return changes


def refusal(last: Any, changes: dict[str, list[Any]]) -> str:
    """The error message for a resume that would change ``changes``."""
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    return (f"{last} was trained with other settings than this call asks for ({listed}); resuming would mix two "
            "runs in one checkpoint. Start a new run in another out_dir (or pass resume=False / --no-resume to "
            "overwrite this one), or continue with the new settings on purpose with change_settings=True "
            "(CLI: --change-settings), which records the change in the checkpoint's 'changes'")


def apply_run_settings(optimizer: torch.optim.Optimizer, scheduler: Any, run_config: dict[str, Any],
                       step: int) -> None:
    """Give a resumed optimiser and step-decay schedule the run's (changed) learning rate, decay and weight
    decay: the rate after ``step`` steps is ``lr * lr_decay ** (step // lr_decay_every)``."""
    lr = run_config["lr"] * run_config["lr_decay"] ** (step // run_config["lr_decay_every"])
    for group in optimizer.param_groups:
        group["lr"], group["initial_lr"], group["weight_decay"] = lr, run_config["lr"], run_config["weight_decay"]
    scheduler.base_lrs = [run_config["lr"]] * len(optimizer.param_groups)
    scheduler.step_size, scheduler.gamma = run_config["lr_decay_every"], run_config["lr_decay"]
    scheduler._last_lr = [lr] * len(optimizer.param_groups)
