"""Train, evaluate and list few-shot models.

  python -m metalearn_lite train protonet --out runs/protonet --steps 4000 --augment
  python -m metalearn_lite train protonet --data my_images/ --val-classes 0.2 --out runs/mine
  python -m metalearn_lite evaluate protonet-omniglot --ways 20 --shots 1
  python -m metalearn_lite list
  python -m metalearn_lite upgrade runs/old/best.pt         # a checkpoint of version 0.1 in the current format

Each recipe is its own subcommand (`train maml --help` lists what maml uses).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ._malloc import tune_for_training
from .algorithms.ntm import flush_denormals
from .checkpoints import (
    checkpoint_dir,
    load_pretrained,
    model_from_checkpoint,
    no_pretrained_message,
    read_checkpoint,
)
from .datasets import omniglot_split
from .devices import check_device, default_device
from .distributed import launched_by_torchrun
from .evaluation import evaluate
from .fewshot import FewShotClassifier
from .preflight import check_out_dir
from .recipes import RECIPES, Recipe, TaskSettings, recipe_of
from .training import TrainConfig, train
from .upgrade import upgrade_file

#: the run's settings shown as flags (``tasks_per_step`` is ``--tasks``); the others go through ``--set``
RUN_FLAGS = {
    "steps": "optimisation steps",
    "lr": "Adam learning rate",
    "tasks_per_step": "tasks (episodes, sequences) per optimisation step: the meta-batch",
    "lr_decay_every": "halve the learning rate every this many steps (--set lr_decay=F for another factor)",
    "val_every": "validate every this many steps (keeps the best in best.pt)",
    "val_episodes": "validation tasks",
    "save_every": "write the resumable last.pt every this many steps",
    "time_limit_min": "stop (validating and saving) after this many minutes; 0 for no limit",
    "seed": "seed of every random choice (tasks, augmentation, initialisation)",
}
TASK_HELP = {
    "ways": "classes per training episode (N)",
    "shots": "labelled examples per class (K)",
    "queries": "query examples per class (Q)",
    "augment": "random affine distortion (rotation, shift, zoom, shear) of every training image",
    "max_length": "longest training sequence; lengths are drawn from 1..max-length",
}
SET_SKIP = {"seed", "data", "val_classes"}
#: the errors that mean a user's mistake or a broken environment (a file, a disk, a device); anything else is a
#: bug of ours and keeps its traceback
USER_ERRORS = (ValueError, FloatingPointError, OSError)


def one_line(err: BaseException) -> str:
    """An error as one line (an ``OSError`` with its file name)."""
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return text or type(err).__name__


def check_target(path: Path, flag: str) -> None:
    """``ValueError`` unless a file can be written at ``path`` (its folder exists or can be made, and is writable)."""
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: give a file path such as {path / 'model.pt'}")
    try:
        check_out_dir(path.parent)
    except ValueError as err:
        raise ValueError(f"{flag} {path}: its folder cannot be written ({err.__cause__ or err}); choose a writable "
                         "place") from err


class ResumeMode(argparse.Action):
    """``--no-resume`` (start over) or ``--change-settings`` (resume with other settings): one option, as the
    two exclude each other."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        mode = "restart" if option_string == "--no-resume" else "change"
        if getattr(namespace, self.dest) not in (self.default, mode):
            parser.error("--no-resume (start over) and --change-settings (continue) exclude each other")
        setattr(namespace, self.dest, mode)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def set_keys(recipe: Recipe) -> dict[str, Any]:
    """The settings ``--set KEY=VALUE`` accepts for ``recipe``: its defaults by key."""
    run, task = recipe.run_config(), recipe.settings()
    keys = {f.name: getattr(run, f.name) for f in fields(TrainConfig)
            if f.name not in RUN_FLAGS and f.name != "compile"}
    keys.update({f.name: getattr(task, f.name) for f in fields(TaskSettings)
                 if f.name in recipe.task_keys and f.name not in recipe.task_flags and f.name not in SET_SKIP})
    return keys


def _parse_value(key: str, text: str, default: Any) -> Any:
    kind = type(default) if default is not None else str
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        return kind(text)
    except ValueError:
        raise ValueError(f"--set {key}={text}: expected a {kind.__name__}") from None


def add_recipe_parser(sub: Any, recipe: Recipe) -> argparse.ArgumentParser:
    """The ``train NAME`` subcommand: common options, the run's, the task's and the model's."""
    p = sub.add_parser(recipe.name, help=recipe.summary, description=recipe.summary)
    p.add_argument("--out", required=True, help="run folder for best.pt and the resumable last.pt")
    p.add_argument("--save-as",
                   help="when done, copy best.pt to this path (e.g. metalearn_lite/data/checkpoints/NAME.pt)")
    p.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    p.add_argument("--no-resume", "--change-settings", action=ResumeMode, dest="resume_mode", default="exact",
                   help="what to do with an existing OUT/last.pt (default: resume it exactly, refusing other "
                        "settings): --no-resume starts over; --change-settings resumes it with this command's "
                        "task and run settings, recorded in the checkpoint's history")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if recipe.folder:
        p.add_argument("--data", metavar="DIR", help="train on an image folder (one subfolder per class) instead of "
                                                     "Omniglot")
        p.add_argument("--val-classes", type=float, metavar="F", help="share of the folder's classes held out for "
                                                                      "validation (default 0.2), a seeded split")
    if recipe.init_body:
        p.add_argument("--init-body", metavar="NAME", help="start from the Conv-4 body of this pretrained model "
                                                           "(e.g. pretrained-omniglot)")
    run = recipe.run_config()
    for key, text in RUN_FLAGS.items():
        flag = "--tasks" if key == "tasks_per_step" else _flag(key)
        p.add_argument(flag, dest=key, type=type(getattr(run, key)), default=None,
                       help=f"{text} (default: {getattr(run, key)})")
    if recipe.compile:
        p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the training step (compiling takes about half a minute)")
    task = recipe.settings()
    for key in recipe.task_flags:
        value = getattr(task, key)
        if isinstance(value, bool):
            p.add_argument(_flag(key), action=argparse.BooleanOptionalAction, default=None,
                           help=f"{TASK_HELP[key]} (default: {value})")
        else:
            p.add_argument(_flag(key), type=type(value), default=None, help=f"{TASK_HELP[key]} (default: {value})")
    for key, f in recipe.model_flags.items():
        if f.kind is bool:
            p.add_argument(_flag(key), action=argparse.BooleanOptionalAction, default=None,
                           help=f"{f.help} (default: {f.default})")
        else:
            p.add_argument(_flag(key), type=f.kind, choices=f.choices, default=None,
                           help=f"{f.help} (default: {f.default})")
    keys = set_keys(recipe)
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[],
                   help="less common settings: " + ", ".join(f"{k} ({v})" for k, v in keys.items()))
    p.set_defaults(recipe=recipe.name)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metalearn_lite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser("train", help="train a recipe (train RECIPE --help lists its options)")
    recipes = t.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    for recipe in RECIPES.values():
        add_recipe_parser(recipes, recipe)
    e = sub.add_parser("evaluate", help="accuracy over test episodes, mean ± 95%% CI")
    e.add_argument("model", help="a checkpoint path or a pretrained name (see `list`)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"], help="Omniglot split (default test)")
    e.add_argument("--data", metavar="DIR", help="evaluate on this image folder's classes instead of Omniglot")
    e.add_argument("--ways", type=int, default=5, help="classes per episode (default 5)")
    e.add_argument("--shots", type=int, default=1, help="support examples per class (default 1)")
    e.add_argument("--queries", type=int, default=15, help="queries per class (default 15)")
    e.add_argument("--episodes", type=int, default=600, help="test episodes (default 600)")
    e.add_argument("--seed", type=int, default=0, help="episode seed (default 0: the same tasks for every method)")
    e.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    sub.add_parser("list", help="the pretrained models and how each was trained")
    u = sub.add_parser("upgrade", help="convert a checkpoint written by version 0.1 to the current format")
    u.add_argument("file", metavar="FILE", help="the version 0.1 checkpoint (format metalearn-lite-checkpoint/1)")
    u.add_argument("--out", metavar="NEW", help="write the converted copy to NEW and leave FILE as it is (default: "
                   "convert FILE in place and keep the original next to it as NAME.format1.pt)")
    return parser


def configs(args: argparse.Namespace) -> tuple[Recipe, TrainConfig, TaskSettings, dict[str, Any]]:
    """The recipe, run settings, task settings and model flags a ``train`` command line asks for."""
    recipe = RECIPES[args.recipe]
    keys = set_keys(recipe)
    extra: dict[str, Any] = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in keys:
            raise ValueError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(keys)}")
        extra[key] = _parse_value(key, text, keys[key])
    run_names = {f.name for f in fields(TrainConfig)}
    run = {k: getattr(args, k) for k in (*RUN_FLAGS, "compile") if getattr(args, k, None) is not None}
    run.update({k: v for k, v in extra.items() if k in run_names})
    task = {k: getattr(args, k) for k in recipe.task_flags if getattr(args, k) is not None}
    task.update({k: v for k, v in extra.items() if k not in run_names})
    if getattr(args, "data", None) is not None:
        task["data"] = args.data
    if getattr(args, "val_classes", None) is not None:
        if task.get("data") is None:
            raise ValueError("--val-classes splits an image folder's classes; give the folder with --data DIR")
        task["val_classes"] = args.val_classes
    run_cfg = recipe.run_config(**run)
    settings = recipe.settings(**task, seed=run_cfg.seed)
    model = {k: getattr(args, k) for k in recipe.model_flags if getattr(args, k) is not None}
    return recipe, run_cfg, settings, model


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    recipe, run, settings, model_args = configs(args)
    device = check_device(args.device) if args.device else default_device()
    check_out_dir(Path(args.out))  # found before the data are loaded
    if args.save_as:  # found now, not after the whole run
        check_target(Path(args.save_as), "--save-as")
    if launched_by_torchrun() and device.type == "cuda":  # one GPU per process: build the tasks on this rank's
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    main_rank = int(os.environ.get("RANK", "0")) == 0
    torch.manual_seed(run.seed)  # the initial weights follow --seed too
    method = recipe.make(settings, getattr(args, "init_body", None), **model_args)
    tasks = recipe.tasks(method.to(device), settings, device, run)
    command = "python -m metalearn_lite " + shlex.join(argv)
    result = train(method, tasks, tasks, run, out_dir=args.out, device=device, command=command,
                   progress=not args.no_progress, resume=args.resume_mode != "restart",
                   task_config=vars(settings), recipe=recipe.name, change_settings=args.resume_mode == "change")
    if not main_rank:  # under torchrun only rank 0 speaks
        return 130 if result.interrupted else 0
    metrics = [k for k in (result.history[-1] if result.history else {}) if k.startswith("val_")]
    best = (f"accuracy {100 * result.best_val:.2f} %" if metrics in ([], ["val_acc"])
            else f"score {result.best_val:.4g} ({', '.join(metrics)}; higher is better)")
    print(f"{'stopped' if result.interrupted else 'finished'} at step {result.step}; "
          f"best validation {best} -> {result.best_path}")
    if args.save_as and not result.interrupted and main_rank:  # under torchrun, rank 0 wrote best.pt
        Path(args.save_as).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.best_path, args.save_as)
        print(f"saved {args.save_as}")
    return 130 if result.interrupted else 0


def _evaluate(args: argparse.Namespace) -> int:
    device = check_device(args.device) if args.device else default_device()
    if Path(args.model).suffix == ".pt" or Path(args.model).exists():
        blob = read_checkpoint(args.model)  # read once: the weights and the run's settings (for the reports)
        model = model_from_checkpoint(blob, device=device)
        model.train_config, model.task_config = blob.get("train_config", {}), blob.get("task_config", {})
    else:
        model = load_pretrained(args.model, device=device)
    # regression and sequence models (sinusoid MAML, NTM copy, MANN) report their own task measure;
    # a model that is also a few-shot classifier (MANN) then gets the N-way K-shot accuracy below too
    recipe = recipe_of(model)
    report = recipe.report if recipe is not None else None
    if report is not None:
        print(f"{args.model}: {report(model, episodes=args.episodes, seed=args.seed)}")
    if not isinstance(model, FewShotClassifier) or not getattr(model, "classifier", True):
        if report is None:
            raise ValueError(f"{args.model} is a {model.name} model, which has no evaluation to run")
        return 0
    if args.data:
        from .datasets.image_folder import image_folder

        channels = getattr(getattr(model, "encoder", None) or getattr(model, "net", None), "in_channels", 1)
        size = getattr(model, "task_config", {}).get("image_size", 28)
        x, y, _ = image_folder(args.data, size=size, grayscale=channels == 1)
        data: Any = (x.to(device), y.to(device))
        where = args.data
    else:
        data = omniglot_split(args.split).images.to(device)
        where = args.split
    result = evaluate(model, data, ways=args.ways, shots=args.shots, queries=args.queries,
                      episodes=args.episodes, seed=args.seed)
    print(f"{args.model} on {where}: {result}")
    return 0


def _list() -> int:
    names = sorted(p.stem for p in checkpoint_dir().glob("*.pt"))
    if not names:
        print(no_pretrained_message())
    for name in names:
        blob = read_checkpoint(checkpoint_dir() / f"{name}.pt")
        print(f"{name}: {blob['method']} {blob['config']}\n    {blob.get('command', '')}")
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    converted, original = upgrade_file(args.file, args.out)
    print(f"converted {args.file} to the current format: {converted}; the original is kept as {original}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate"):
        flush_denormals()  # this process is ours: denormal floats would slow the memory models' CPU steps
        tune_for_training()  # and glibc may keep a step's big buffers for reuse
    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "list":
            return _list()
        if args.command == "upgrade":
            return _upgrade(args)
    except USER_ERRORS as err:  # a user's mistake or a broken environment: one line, no traceback
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (which saves and returns): loading data, evaluating
        print("interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 0
