"""Train, evaluate and list few-shot models.

  python -m metalearn_lite train protonet --out runs/protonet --steps 4000 --augment
  python -m metalearn_lite evaluate protonet-omniglot --ways 20 --shots 1
  python -m metalearn_lite list
"""

from __future__ import annotations

import argparse
import inspect
import shlex
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import torch

from .algorithms import METHODS, build_method
from .algorithms.ntm import flush_denormals
from .checkpoints import (
    available_pretrained,
    checkpoint_dir,
    load_checkpoint,
    load_pretrained,
    pretrained_backbone,
    read_checkpoint,
)
from .datasets import omniglot_split
from .devices import default_device
from .evaluation import evaluate
from .fewshot import FewShotClassifier
from .training import TrainConfig, train

HELP = {
    "ways": "classes per training episode (N)",
    "shots": "labelled support examples per class (K)",
    "queries": "query examples per class (Q); ignored by siamese/triplet, which train on pairs",
    "tasks": "episodes per optimisation step (meta-batch size)",
    "steps": "optimisation steps",
    "lr": "Adam learning rate",
    "lr_decay": "multiply the learning rate by this ...",
    "lr_decay_every": "... every this many steps (step decay)",
    "weight_decay": "Adam weight decay",
    "rotations": "add 90/180/270-degree rotations of the training characters as new classes",
    "mirrors": "add the mirror image of every training class (after rotations) as a new class",
    "augment": "random affine distortion (rotation, shift, zoom, shear) of every training image",
    "by": "split Omniglot by 'alphabet' (test alphabets unseen) or by 'character'",
    "same_alphabet": "fraction of training episodes (0..1) whose classes all come from one alphabet (a rotated "
                     "or mirrored alphabet counts as its own): as alike as a test episode's, from one new alphabet",
    "image_size": "image side in pixels",
    "val_every": "validate on the meta-val alphabet every this many steps (keeps the best)",
    "val_episodes": "validation episodes",
    "val_ways": "ways of validation episodes",
    "val_shots": "shots of validation episodes",
    "save_every": "write the resumable last.pt every this many steps",
    "time_limit_min": "stop (validating and saving) after this many minutes; 0 for no limit",
    "max_length": "sequence tasks (NTM copy): longest training sequence; lengths are drawn from 1..max-length",
    "grad_clip": "clip the gradient norm to this before each step; 0 for no clipping",
    "seed": "seed of every random choice (episodes, augmentation, initialisation)",
    "compile": "torch.compile the training step (mann only; compiling takes about half a minute of the run's time)",
}

#: Model flags: ``key -> (type, choices, help)``.  A method accepts the keys its ``__init__`` takes;
#: a flag that is not given leaves the method's own default.
MODEL_FLAGS: dict[str, tuple[type, tuple | None, str]] = {
    "hidden": (int, None, "Conv-4 filters per block (or hidden units, for MLP/LSTM models)"),
    "norm": (str, ("batch", "running", "none"),
             "Conv-4 normalisation: batch statistics always (transductive), running stats, or none"),
    "distance": (str, ("euclidean", "cosine"), "embedding distance"),
    "margin": (float, None, "siamese/triplet: loss margin"),
    "mining": (str, ("batch_hard", "semi_hard", "all"), "triplet: how triplets are mined in a batch"),
    "classify": (str, ("prototype", "neighbour"),
                 "siamese/triplet: classify by nearest class mean or nearest support example"),
    "classes": (int, None, "pretrained: outputs of the pretraining head (624 meta-train classes with "
                "--rotations, 156 without)"),
    "head": (str, ("linear", "cosine"), "pretrained: linear (Baseline) or cosine (Baseline++) pretraining head"),
    "inner_lr": (float, None, "MAML/Reptile: inner-loop learning rate (alpha)"),
    "inner_steps": (int, None, "MAML/Reptile: inner gradient steps per task in training"),
    "test_steps": (int, None, "MAML/Reptile: inner gradient steps on the support set at test time"),
    "first_order": (bool, None, "MAML: first-order approximation (drop the Hessian terms)"),
    "first_order_warmup": (int, None, "MAML: train this many meta-steps first-order, then second-order"),
    "meta_sgd": (bool, None, "MAML: learn one inner learning rate per parameter (Meta-SGD)"),
    "anil": (bool, None, "MAML: adapt only the head in the inner loop (ANIL)"),
    "zero_head": (bool, None, "MAML: start every task from a zero head (the zeroing trick of Kao et al. 2022)"),
    "batching": (str, ("auto", "vmap", "loop"), "MAML/Reptile: tasks of a meta-batch under vmap or in a loop"),
    "layers": (int, None, "sinusoid MLP: hidden layers"),
    "memory_size": (int, None, "NTM/MANN: memory slots (N)"),
    "memory_width": (int, None, "NTM/MANN: width of each memory slot (M)"),
    "read_heads": (int, None, "MANN: read heads (each also writes its key)"),
    "write_first": (bool, None,
                    "MANN: write, then read within a step, as in the paper (default; --no-write-first reads first)"),
    "encoder": (str, ("pixels", "conv", "pretrained"),
                "MANN/LSTM one-shot: the controller sees raw pixels, a Conv-4 trained with it, or the frozen "
                "backbone of pretrained-omniglot"),
    "normalize_features": (bool, None, "MANN/LSTM one-shot: give the controller each drawing's features at one "
                           "length (their direction only)"),
    "keys_see_input": (bool, None, "MANN: the heads' keys and gates are computed from the step's input as well as "
                       "from the controller's state"),
    "controller": (str, ("lstm", "feedforward"), "NTM: controller network"),
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def method_options(method: str) -> list[str]:
    """The model flags (``MODEL_FLAGS`` keys) that ``method``'s constructor accepts."""
    params = inspect.signature(METHODS[method].__init__).parameters
    return [k for k in MODEL_FLAGS if k in params]


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("method", choices=sorted(METHODS), help="the method to train")
    p.add_argument("--out", required=True, help="run folder for best.pt and the resumable last.pt")
    p.add_argument("--save-as", help="when done, copy best.pt to this path (e.g. data/checkpoints/NAME.pt)")
    p.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--init-body", metavar="NAME",
                   help="maml, reptile: start from the Conv-4 body of this pretrained model (e.g. "
                        "pretrained-omniglot); its own training time counts towards this model's")
    g = p.add_argument_group("model (a flag applies to the methods whose constructor takes it; unset: its default)")
    for key, (kind, choices, text) in MODEL_FLAGS.items():
        users = ", ".join(m for m in sorted(METHODS) if key in method_options(m))
        if kind is bool:
            g.add_argument(_flag(key), action=argparse.BooleanOptionalAction, default=None, help=f"{text} [{users}]")
        else:
            g.add_argument(_flag(key), type=kind, choices=choices, default=None, help=f"{text} [{users}]")
    t = p.add_argument_group("training (unset: the method's own default, else the value shown)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            t.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None,
                           help=f"{HELP[f.name]} (default: {value})")
        else:
            t.add_argument(_flag(f.name), type=type(value), default=None, help=f"{HELP[f.name]} (default: {value})")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config: flags given, else the method's ``train_defaults``, else ``TrainConfig``'s."""
    values = dict(METHODS[args.method].train_defaults)
    values.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None})
    return TrainConfig(**values)


def model_config(args: argparse.Namespace) -> dict:
    """The method's constructor arguments from the model flags; ``ValueError`` for a flag it does not take."""
    accepted = method_options(args.method)
    given = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k, None) is not None}
    wrong = [_flag(k) for k in given if k not in accepted]
    if wrong:
        raise ValueError(
            f"{', '.join(wrong)} does not apply to {args.method}; its model flags are "
            f"{', '.join(_flag(k) for k in accepted) or 'none'}"
        )
    return given


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metalearn_lite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_args(sub.add_parser("train", help="train a method on the meta-train alphabets"))
    e = sub.add_parser("evaluate", help="accuracy over test episodes, mean ± 95%% CI")
    e.add_argument("model", help="a checkpoint path or a pretrained name (see `list`)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"], help="Omniglot split (default test)")
    e.add_argument("--ways", type=int, default=5, help="classes per episode (default 5)")
    e.add_argument("--shots", type=int, default=1, help="support examples per class (default 1)")
    e.add_argument("--queries", type=int, default=15, help="queries per class (default 15)")
    e.add_argument("--episodes", type=int, default=600, help="test episodes (default 600)")
    e.add_argument("--seed", type=int, default=0, help="episode seed (default 0: the same tasks for every method)")
    e.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    sub.add_parser("list", help="the pretrained models and how each was trained")
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    cfg = train_config(args)
    model_keys = model_config(args)
    if "image_size" in inspect.signature(METHODS[args.method].__init__).parameters:
        model_keys["image_size"] = cfg.image_size  # the model is built for the drawings the run loads (--image-size)
    torch.manual_seed(cfg.seed)  # the initial weights follow --seed too
    method = build_method(args.method, **model_keys)
    if args.init_body:
        if not hasattr(method, "init_body"):
            raise ValueError(f"--init-body does not apply to {args.method}; it starts a maml or reptile model from a "
                             "pretrained Conv-4 body")
        method.init_body(pretrained_backbone(args.init_body))
    device = args.device or default_device()
    command = "python -m metalearn_lite " + shlex.join(argv)
    result = train(method, cfg, args.out, device=device, command=command, progress=not args.no_progress,
                   resume=not args.no_resume)
    metrics = [k for k in (result.history[-1] if result.history else {}) if k.startswith("val_")]
    best = (f"accuracy {100 * result.best_val:.2f} %" if metrics in ([], ["val_acc"])
            else f"score {result.best_val:.4g} ({', '.join(metrics)}; higher is better)")
    print(f"{'stopped' if result.interrupted else 'finished'} at step {result.step}; "
          f"best validation {best} -> {result.best_path}")
    if args.save_as and not result.interrupted:
        Path(args.save_as).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.best_path, args.save_as)
        print(f"saved {args.save_as}")
    return 130 if result.interrupted else 0


def _evaluate(args: argparse.Namespace) -> int:
    device = args.device or default_device()
    if Path(args.model).suffix == ".pt" or Path(args.model).exists():
        model = load_checkpoint(args.model, device=device)
    else:
        model = load_pretrained(args.model, device=device)
    # regression and sequence models (sinusoid MAML, NTM copy, MANN) report their own task metric;
    # a model that is also a few-shot classifier (MANN) then gets the N-way K-shot accuracy below too
    report = getattr(model, "evaluate_report", None)
    if report is not None:
        print(f"{args.model}: {report(episodes=args.episodes, seed=args.seed)}")
    if not isinstance(model, FewShotClassifier):
        if report is None:
            raise ValueError(f"{args.model} is a {model.name} model, which has no evaluation to run")
        return 0
    data = omniglot_split(args.split).images.to(device)
    result = evaluate(model, data, ways=args.ways, shots=args.shots, queries=args.queries,
                      episodes=args.episodes, seed=args.seed)
    print(f"{args.model} on {args.split}: {result}")
    return 0


def _list() -> int:
    names = available_pretrained()
    if not names:
        print(f"no pretrained models in {checkpoint_dir()}")
    for name in names:
        blob = read_checkpoint(checkpoint_dir() / f"{name}.pt")
        print(f"{name}: {blob['method']} {blob['config']}\n    {blob.get('command', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate"):
        flush_denormals()  # this process is ours: denormal floats would slow the memory models' CPU steps
    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "list":
            return _list()
    except (ValueError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0

