"""The course's recipes: for each name, the method, its defaults, its task source and its report.

A recipe is how the course (and the command line) trains a method on Omniglot, sinusoids, the copy task
or the reader's own image folder: it builds the method from the CLI's model flags (a Conv-4 of the asked
size, an MLP, a frozen pretrained encoder ...), builds the task source from the
:class:`~metalearn_lite.recipes.settings.TaskSettings`, and knows the run's default settings.  The
methods themselves know none of this.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..algorithms import (
    MAML,
    MANN,
    EpisodicMethod,
    LSTMOneShot,
    MatchingNet,
    MetaLSTM,
    NTMCopy,
    Pretrained,
    ProtoMAML,
    ProtoNet,
    RelationNet,
    Reptile,
    SiameseNet,
    TripletNet,
)
from ..checkpoints import pretrained_backbone
from ..models import MLP, Conv4
from ..training import TrainConfig
from .memory import CopySource, copy_report, presentation_report
from .omniglot import ClassBatches, OmniglotEpisodes, OmniglotSequences, config_split
from .settings import TaskSettings
from .sinusoid import SinusoidSource, sinusoid_report


@dataclass(frozen=True)
class Flag:
    """A model option of a recipe: its type, default, help text and allowed values."""

    kind: type
    default: Any
    help: str
    choices: tuple | None = None


@dataclass(frozen=True)
class Recipe:
    """How the course trains one method (see the module docstring)."""

    name: str
    summary: str
    method: type[EpisodicMethod]
    model_flags: dict[str, Flag]
    build: Callable[[dict[str, Any], TaskSettings], EpisodicMethod]
    source: Callable[[EpisodicMethod, TaskSettings, torch.device, TrainConfig], Any]
    task_flags: tuple[str, ...]
    task_keys: tuple[str, ...]  # every task setting the recipe's tasks use (the rest of them through --set)
    run_defaults: dict[str, Any] = field(default_factory=dict)
    task_defaults: dict[str, Any] = field(default_factory=dict)
    report: Callable[..., str] | None = None
    folder: bool = False  # can train on an image folder (--data DIR)
    init_body: bool = False  # can start from a pretrained Conv-4 body (--init-body NAME)
    compile: bool = False  # has a compiled training step (--compile)

    def settings(self, **given: Any) -> TaskSettings:
        """The task settings: ``given``, else this recipe's defaults, else :class:`TaskSettings`'s."""
        values = dict(self.task_defaults)
        if given.get("data") is not None:
            values["rotations"] = False  # rotated and mirrored classes are Omniglot's; a folder has its own
        return TaskSettings(**{**values, **given})

    def run_config(self, **given: Any) -> TrainConfig:
        """The run's settings: ``given``, else this recipe's defaults, else :class:`TrainConfig`'s."""
        return TrainConfig(**{**self.run_defaults, **given})

    def make(self, settings: TaskSettings, init_body: str | None = None, **model_args: Any) -> EpisodicMethod:
        """The method, from model flags (unset ones take the recipe's defaults)."""
        wrong = sorted(set(model_args) - set(self.model_flags))
        if wrong:
            raise ValueError(f"{', '.join(wrong)} does not apply to {self.name}; its model options are "
                             f"{', '.join(self.model_flags) or 'none'}")
        args = {k: f.default for k, f in self.model_flags.items()}
        args.update({k: v for k, v in model_args.items() if v is not None})
        method = self.build(args, settings)
        if init_body:
            if not self.init_body:
                users = ", ".join(r.name for r in RECIPES.values() if r.init_body)
                raise ValueError(f"--init-body does not apply to {self.name}; it starts a model of {users} from a "
                                 "pretrained Conv-4 body")
            method.init_body(pretrained_backbone(init_body))
        return method

    def tasks(self, method: EpisodicMethod, settings: TaskSettings, device: torch.device,
              run: TrainConfig) -> Any:
        """The task source (training ``sample(n)`` and validation ``validate(method)`` in one)."""
        if settings.data is not None:
            if not self.folder:
                raise ValueError(f"{self.name} trains on its own tasks; --data (an image folder) is for: "
                                 f"{', '.join(r.name for r in RECIPES.values() if r.folder)}")
            from .folder import FolderEpisodes

            # pair and triplet batches have no queries; the others draw the run's --queries
            return FolderEpisodes(settings, device, run.val_episodes, queries=0 if self.source is _pairs else None)
        return self.source(method, settings, device, run)


def channels(settings: TaskSettings) -> int:
    """Image channels of the run's data: Omniglot and grey folders 1, colour folders 3."""
    return 1 if settings.data is None or settings.grayscale else 3


def _conv(args: dict[str, Any], settings: TaskSettings, **extra: Any) -> Conv4:
    return Conv4(channels(settings), args["hidden"], args["norm"], image_size=settings.image_size, **extra)


def _episodes(method: EpisodicMethod, settings: TaskSettings, device: torch.device, run: TrainConfig) -> Any:
    return OmniglotEpisodes(settings, device, run.val_episodes)


def _pairs(method: EpisodicMethod, settings: TaskSettings, device: torch.device, run: TrainConfig) -> Any:
    return OmniglotEpisodes(settings, device, run.val_episodes, queries=0)


def _class_batches(method: Pretrained, settings: TaskSettings, device: torch.device, run: TrainConfig) -> Any:
    if settings.image_size != method.config["image_size"]:
        raise ValueError(f"this model's head is sized for {method.config['image_size']}-pixel images but the run uses "
                         f"image_size {settings.image_size}; build the model with image_size={settings.image_size}")
    return ClassBatches(settings, device, classes=method.classes, val_episodes=run.val_episodes)


def _sequences(method: MANN, settings: TaskSettings, device: torch.device, run: TrainConfig) -> Any:
    if settings.ways > method.classes:
        raise ValueError(f"{settings.ways}-way episodes need a model with classes >= {settings.ways}; "
                         f"this one has {method.classes}")
    if settings.image_size != method.image_size:
        raise ValueError(f"the model was built for {method.image_size}px drawings but the run loads "
                         f"{settings.image_size}px ones: pass image_size={method.image_size}")
    return OmniglotSequences(settings, device, run.val_episodes,
                             encode=method.encode_drawings if method.frozen_encoder else None)


def _sinusoids(method: EpisodicMethod, settings: TaskSettings, device: torch.device, run: TrainConfig) -> Any:
    return SinusoidSource(settings, device, run.val_episodes)


def _copies(method: NTMCopy, settings: TaskSettings, device: torch.device, run: TrainConfig) -> Any:
    return CopySource(settings, device, method.bits, run.val_episodes)


#: what the MANN and its LSTM baseline see of a drawing (``--encoder``)
ENCODERS = ("pixels", "conv", "pretrained")
PRETRAINED_ENCODER = "pretrained-omniglot"


def sequence_encoder(kind: str, image_size: int) -> tuple[torch.nn.Module | None, bool]:
    """``(encoder, freeze)`` for ``--encoder``: raw pixels, a 32-filter Conv-4 trained with the model, or a
    frozen copy of ``pretrained-omniglot``'s Conv-4 (trained on the meta-train classes only)."""
    if kind == "pixels":
        return None, False
    if kind == "conv":
        return Conv4(1, 32, norm="running"), False
    if kind == "pretrained":
        source = pretrained_backbone(PRETRAINED_ENCODER)
        if image_size != 28:
            raise ValueError(f"encoder='pretrained' uses {PRETRAINED_ENCODER}, trained on 28px drawings; use "
                             "image_size 28")
        return copy.deepcopy(source).eval(), True
    raise ValueError(f"unknown encoder {kind!r}; choose one of {list(ENCODERS)}")


def _count_classes(settings: TaskSettings) -> int:
    return config_split(settings, "train").images.shape[0]


HIDDEN = Flag(int, 64, "Conv-4 filters per block")
NORM = Flag(str, "batch", "Conv-4 normalisation: batch statistics always (transductive), running stats, or none",
            ("batch", "running", "none"))
DISTANCE = Flag(str, "euclidean", "embedding distance", ("euclidean", "cosine"))
CLASSIFY = Flag(str, "prototype", "classify by nearest class mean or nearest support example", ("prototype",
                                                                                                "neighbour"))
BATCHING = Flag(str, "auto", "tasks of a meta-batch under vmap or in a loop", ("auto", "vmap", "loop"))
EPISODE_TASK = ("ways", "shots", "queries", "augment")
OMNIGLOT_KEYS = ("ways", "shots", "queries", "rotations", "mirrors", "augment", "by", "same_alphabet", "image_size",
                 "val_ways", "val_shots")
FOLDER_KEYS = (*OMNIGLOT_KEYS, "grayscale")
BATCH_KEYS = tuple(k for k in OMNIGLOT_KEYS if k != "queries")
SEQUENCE_KEYS = ("ways", "shots", "rotations", "mirrors", "augment", "by", "same_alphabet", "image_size")
SINUSOID_KEYS = ("shots", "queries", "val_shots")
MEMORY_RUN = dict(tasks_per_step=64, steps=100000, lr=1e-3, lr_decay=0.5, lr_decay_every=1000000, grad_clip=10.0,
                  val_every=100, val_episodes=200, save_every=100)
MEMORY_TASK = dict(ways=5, shots=10, rotations=True, augment=False, image_size=28)
SINUSOID_RUN = dict(tasks_per_step=25, steps=70000, lr=1e-3, lr_decay_every=1_000_000, val_every=2500,
                    val_episodes=200, save_every=5000)
SINUSOID_TASK = dict(shots=10, queries=10, rotations=False, val_shots=5)
MAML_RUN = dict(tasks_per_step=8, steps=20000, lr=1e-3, lr_decay_every=100000, val_every=250, val_episodes=200)
MAML_TASK = dict(ways=5, shots=1, queries=5, rotations=True)
MAML_FLAGS = {
    "hidden": HIDDEN, "norm": Flag(str, "batch", "Conv-4 normalisation (running statistics cannot be adapted)",
                                   ("batch", "none")),
    "inner_lr": Flag(float, 0.4, "inner-loop learning rate (alpha)"),
    "inner_steps": Flag(int, 1, "inner gradient steps per task in training"),
    "test_steps": Flag(int, 3, "inner gradient steps on the support set at test time"),
    "first_order": Flag(bool, False, "first-order approximation (drop the Hessian terms)"),
    "first_order_warmup": Flag(int, 0, "train this many meta-steps first-order, then second-order"),
    "meta_sgd": Flag(bool, False, "learn one inner learning rate per parameter (Meta-SGD)"),
    "anil": Flag(bool, False, "adapt only the head in the inner loop (ANIL)"),
    "zero_head": Flag(bool, False, "start every task from a zero head (the zeroing trick of Kao et al. 2022)"),
    "batching": BATCHING,
}
REPTILE_FLAGS = {"hidden": HIDDEN, "norm": MAML_FLAGS["norm"],
                 "inner_lr": Flag(float, 0.1, "inner-loop learning rate"),
                 "inner_steps": Flag(int, 5, "SGD steps per task (k)"),
                 "test_steps": Flag(int, 10, "SGD steps on the support set at test time"), "batching": BATCHING}
SINUSOID_FLAGS = {"hidden": Flag(int, 40, "hidden units per layer"), "layers": Flag(int, 2, "hidden layers"),
                  "inner_lr": Flag(float, 0.01, "inner-loop learning rate (alpha)"),
                  "inner_steps": Flag(int, 1, "inner gradient steps per task in training"),
                  "test_steps": Flag(int, 10, "gradient steps on the support points at test time"),
                  "first_order": MAML_FLAGS["first_order"], "first_order_warmup": MAML_FLAGS["first_order_warmup"],
                  "meta_sgd": MAML_FLAGS["meta_sgd"], "anil": MAML_FLAGS["anil"], "batching": BATCHING}
SEQUENCE_FLAGS = {
    "encoder": Flag(str, "pixels", "the controller sees raw pixels, a Conv-4 trained with it, or the frozen backbone "
                    "of pretrained-omniglot", ENCODERS),
    "hidden": Flag(int, 200, "LSTM units"),
    "normalize_features": Flag(bool, False, "give the controller each drawing's features at one length"),
}
MANN_FLAGS = {**SEQUENCE_FLAGS,
              "memory_size": Flag(int, 128, "memory slots (N)"), "memory_width": Flag(int, 40, "slot width (M)"),
              "read_heads": Flag(int, 4, "read heads (each also writes its key)"),
              "write_first": Flag(bool, True, "write, then read within a step, as in the paper"),
              "keys_see_input": Flag(bool, False, "the heads' keys and gates also see the step's input")}


META_LSTM_FLAGS = {
    "hidden": HIDDEN, "norm": MAML_FLAGS["norm"],
    "lstm_hidden": Flag(int, 20, "units of the meta-learner's first LSTM layer (reads the gradient and loss)"),
    "inner_steps": Flag(int, 5, "learned updates on the support set in training"),
    "test_steps": Flag(int, 5, "learned updates on the support set at test time"),
    "zero_head": Flag(bool, False, "start every task from a zero head (the zeroing trick of Kao et al. 2022)"),
}


def _maml(args: dict[str, Any], s: TaskSettings) -> MAML:
    net = _conv(args, s, out_features=s.ways)
    rest = {k: v for k, v in args.items() if k not in ("hidden", "norm")}
    return MAML(net, ways=s.ways, **rest)


def _reptile(args: dict[str, Any], s: TaskSettings) -> Reptile:
    net = _conv(args, s, out_features=s.ways)
    rest = {k: v for k, v in args.items() if k not in ("hidden", "norm")}
    return Reptile(net, ways=s.ways, **rest)


def _meta_lstm(args: dict[str, Any], s: TaskSettings) -> MetaLSTM:
    net = _conv(args, s, out_features=s.ways)
    rest = {k: v for k, v in args.items() if k not in ("hidden", "norm")}
    return MetaLSTM(net, ways=s.ways, **rest)


def _classifier(cls: type[MAML]) -> Callable[[dict[str, Any], TaskSettings], EpisodicMethod]:
    """A builder of ``cls`` on a Conv-4 classifier with a ``ways``-output head; the other flags are ``cls``'s."""

    def build(args: dict[str, Any], s: TaskSettings) -> EpisodicMethod:
        rest = {k: v for k, v in args.items() if k not in ("hidden", "norm")}
        return cls(_conv(args, s, out_features=s.ways), ways=s.ways, **rest)

    return build


def _sinusoid_net(args: dict[str, Any]) -> MLP:
    return MLP(1, (args["hidden"],) * args["layers"], 1)


def _sequence(cls: type, args: dict[str, Any], s: TaskSettings) -> EpisodicMethod:
    encoder, freeze = sequence_encoder(args["encoder"], s.image_size)
    rest = {k: v for k, v in args.items() if k != "encoder"}
    return cls(encoder, classes=s.ways, image_size=s.image_size, freeze_encoder=freeze, **rest)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("protonet", "Prototypical Networks on Conv-4", ProtoNet,
           {"hidden": HIDDEN, "norm": NORM, "distance": DISTANCE},
           lambda a, s: ProtoNet(_conv(a, s), a["distance"]), _episodes, EPISODE_TASK, FOLDER_KEYS,
           dict(steps=2000, lr_decay_every=1000), dict(ways=20, shots=5, queries=5), folder=True),
    Recipe("siamese", "Siamese network (contrastive loss over every pair) on Conv-4", SiameseNet,
           {"hidden": HIDDEN, "norm": NORM, "distance": DISTANCE, "margin": Flag(float, 1.0, "loss margin"),
            "classify": CLASSIFY},
           lambda a, s: SiameseNet(_conv(a, s), a["distance"], a["margin"], classify=a["classify"]), _pairs,
           ("ways", "shots", "augment"), BATCH_KEYS + ("grayscale",), dict(steps=2000, lr_decay_every=1000),
           dict(ways=20, shots=5, queries=0), folder=True),
    Recipe("triplet", "Triplet network with in-batch mining on Conv-4", TripletNet,
           {"hidden": HIDDEN, "norm": NORM, "distance": DISTANCE, "margin": Flag(float, 1.0, "loss margin"),
            "mining": Flag(str, "batch_hard", "how triplets are mined in a batch", ("batch_hard", "semi_hard", "all")),
            "classify": CLASSIFY},
           lambda a, s: TripletNet(_conv(a, s), a["distance"], a["margin"], a["mining"], a["classify"]), _pairs,
           ("ways", "shots", "augment"), BATCH_KEYS + ("grayscale",), dict(steps=2000, lr_decay_every=1000),
           dict(ways=20, shots=5, queries=0), folder=True),
    Recipe("pretrained", "transfer baseline: Conv-4 pretrained on all meta-train classes at once", Pretrained,
           {"hidden": HIDDEN, "norm": Flag(str, "running", NORM.help, NORM.choices),
            "head": Flag(str, "linear", "linear (Baseline) or cosine (Baseline++) pretraining head",
                         ("linear", "cosine"))},
           lambda a, s: Pretrained(Conv4(1, a["hidden"], a["norm"]), _count_classes(s), a["head"],
                                   image_size=s.image_size),
           _class_batches, ("ways", "shots", "augment"), BATCH_KEYS,
           dict(steps=3000, lr=1e-3, lr_decay_every=1000, val_every=250, val_episodes=200, save_every=250),
           dict(ways=64, shots=2, rotations=True, augment=True, val_ways=5, val_shots=1)),
    Recipe("matching", "Matching Networks (cosine attention over the support set) on Conv-4", MatchingNet,
           {"hidden": HIDDEN, "norm": NORM,
            "temperature": Flag(float, 0.1, "softmax temperature of the attention (its start when learned)"),
            "learn_temperature": Flag(bool, True, "learn the temperature with the encoder")},
           lambda a, s: MatchingNet(_conv(a, s), a["temperature"], a["learn_temperature"]), _episodes,
           EPISODE_TASK, FOLDER_KEYS, dict(steps=2000, lr_decay_every=1000), dict(ways=20, shots=5, queries=5),
           folder=True),
    Recipe("relation", "Relation Networks (a learned relation module on paired Conv-4 feature maps)", RelationNet,
           {"hidden": HIDDEN, "norm": NORM,
            "loss": Flag(str, "mse", "regress the relation scores onto one-hot targets (the paper's) or "
                         "cross-entropy over the classes", ("mse", "cross_entropy"))},
           lambda a, s: RelationNet(_conv(a, s, pools=2, flatten=False), loss=a["loss"]), _episodes, EPISODE_TASK,
           FOLDER_KEYS, dict(steps=2000, lr_decay_every=1000), dict(ways=5, shots=1, queries=15), folder=True),
    Recipe("proto_maml", "Proto-MAML: MAML whose head starts from the support prototypes, on Conv-4", ProtoMAML,
           {k: f for k, f in MAML_FLAGS.items() if k != "zero_head"}, _classifier(ProtoMAML), _episodes,
           EPISODE_TASK, FOLDER_KEYS, MAML_RUN, MAML_TASK, folder=True, init_body=True),
    Recipe("maml", "MAML (and first-order, Meta-SGD, ANIL) on a Conv-4 classifier", MAML, MAML_FLAGS, _maml,
           _episodes, EPISODE_TASK, FOLDER_KEYS, MAML_RUN, MAML_TASK, folder=True, init_body=True),
    Recipe("reptile", "Reptile on a Conv-4 classifier", Reptile, REPTILE_FLAGS, _reptile, _episodes, EPISODE_TASK,
           FOLDER_KEYS,
           dict(MAML_RUN, tasks_per_step=5), dict(MAML_TASK, queries=5), folder=True, init_body=True),
    Recipe("meta_lstm", "Meta-LSTM (Ravi & Larochelle 2017): a learned LSTM optimiser trains a Conv-4 classifier",
           MetaLSTM, META_LSTM_FLAGS, _meta_lstm, _episodes, EPISODE_TASK, FOLDER_KEYS,
           dict(MAML_RUN, tasks_per_step=4), MAML_TASK, folder=True, init_body=True),
    Recipe("maml_regressor", "MAML on sinusoid regression (the paper's 40-40 MLP)", MAML, SINUSOID_FLAGS,
           lambda a, s: MAML(_sinusoid_net(a), loss="mse", **{k: v for k, v in a.items()
                                                               if k not in ("hidden", "layers")}),
           _sinusoids, ("shots", "queries"), SINUSOID_KEYS, SINUSOID_RUN, SINUSOID_TASK, report=sinusoid_report),
    Recipe("reptile_regressor", "Reptile on sinusoid regression", Reptile,
           {**{k: SINUSOID_FLAGS[k] for k in ("hidden", "layers", "inner_lr", "test_steps", "batching")},
            "inner_steps": Flag(int, 5, "SGD steps per task (k)")},
           lambda a, s: Reptile(_sinusoid_net(a), loss="mse", **{k: v for k, v in a.items()
                                                                  if k not in ("hidden", "layers")}),
           _sinusoids, ("shots", "queries"), SINUSOID_KEYS, SINUSOID_RUN, SINUSOID_TASK, report=sinusoid_report),
    Recipe("ntm_copy", "Neural Turing Machine on the copy task", NTMCopy,
           {"hidden": Flag(int, 100, "controller units"), "memory_size": Flag(int, 128, "memory slots (N)"),
            "memory_width": Flag(int, 20, "slot width (M)"), "shift_range": Flag(int, 1, "largest location shift"),
            "controller": Flag(str, "lstm", "controller network", ("lstm", "feedforward"))},
           lambda a, s: NTMCopy(**a), _copies, ("max_length",), ("max_length",),
           dict(tasks_per_step=32, steps=20000, lr_decay_every=100000, grad_clip=10.0, val_every=250,
                val_episodes=64, save_every=250), dict(rotations=False), report=copy_report),
    Recipe("mann", "memory-augmented network (Santoro et al. 2016) on one-shot Omniglot sequences", MANN, MANN_FLAGS,
           lambda a, s: _sequence(MANN, a, s), _sequences, ("ways", "shots", "augment"), SEQUENCE_KEYS, MEMORY_RUN,
           MEMORY_TASK, report=presentation_report, compile=True),
    Recipe("lstm_oneshot", "the MANN's LSTM-only baseline on the same sequences", LSTMOneShot, SEQUENCE_FLAGS,
           lambda a, s: _sequence(LSTMOneShot, a, s), _sequences, ("ways", "shots", "augment"), SEQUENCE_KEYS,
           MEMORY_RUN, MEMORY_TASK, report=presentation_report),
)}

#: the recipe that trained a checkpoint of a method when the file names none
DEFAULT_RECIPE = {"protonet": "protonet", "siamese": "siamese", "triplet": "triplet", "pretrained": "pretrained",
                  "maml": "maml", "reptile": "reptile", "ntm_copy": "ntm_copy", "mann": "mann",
                  "lstm_oneshot": "lstm_oneshot", "meta_lstm": "meta_lstm", "matching": "matching",
                  "relation": "relation", "proto_maml": "proto_maml"}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` listing them otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def recipe_of(method: EpisodicMethod) -> Recipe | None:
    """The recipe a loaded method was trained by (its checkpoint's ``recipe``), if the course has one."""
    name = getattr(method, "recipe", None) or DEFAULT_RECIPE.get(method.name)
    if name == "maml" and not getattr(method, "classifier", True):
        name = "maml_regressor"
    return RECIPES.get(name)


__all__ = ["RECIPES", "Flag", "Recipe", "TaskSettings", "get_recipe", "recipe_of"]
