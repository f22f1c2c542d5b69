"""The course's recipes: for each name, the method, its defaults, its task source and its report.

A recipe is how the course (and the command line) trains a method on Omniglot, sinusoids, the copy task
or the reader's own image folder: it builds the method from the CLI's model flags (a Conv-4 of the asked
size, an MLP, a frozen pretrained encoder ...), builds the task source from the
:class:`~metalearn_lite.recipes.settings.TaskSettings`, and knows the run's default settings.  The
methods themselves know none of this.
"""

from __future__ import annotations

import copy
import inspect
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


def own(method: Callable[..., Any], name: str, help: str, choices: tuple | None = None) -> Flag:
    """The flag for ``method``'s argument ``name`` with the method's own default (from its signature)."""
    default = inspect.signature(method).parameters[name].default
    if default is inspect.Parameter.empty or default is None:
        raise TypeError(f"{getattr(method, '__name__', method)}({name}=...) has no default to show; give the "
                        "recipe's own with Flag(...)")
    return Flag(type(default), default, help, choices)


HIDDEN = own(Conv4, "hidden", "Conv-4 filters per block")
NORM = Flag(str, "batch", "Conv-4 normalisation: batch statistics always (transductive), running stats, or none",
            ("batch", "running", "none"))
ADAPTABLE_NORM = Flag(str, "batch", "Conv-4 normalisation (running statistics cannot be adapted)", ("batch", "none"))
DISTANCE = own(ProtoNet, "distance", "embedding distance", ("euclidean", "cosine"))
CLASSIFY = own(SiameseNet, "classify", "classify by nearest class mean or nearest support example",
               ("prototype", "neighbour"))
MARGIN = own(SiameseNet, "margin", "loss margin")
BATCHING = own(MAML, "batching", "tasks of a meta-batch under vmap, in a loop, or the loop on worker threads "
               "(one core per task)", ("auto", "vmap", "loop", "threads"))
EPISODE_TASK = ("ways", "shots", "queries", "augment")
PAIR_TASK = ("ways", "shots", "augment")
OMNIGLOT_KEYS = ("ways", "shots", "queries", "rotations", "mirrors", "augment", "by", "same_alphabet", "image_size",
                 "val_ways", "val_shots")
FOLDER_KEYS = (*OMNIGLOT_KEYS, "grayscale")
BATCH_KEYS = tuple(k for k in OMNIGLOT_KEYS if k != "queries")
SEQUENCE_KEYS = ("ways", "shots", "rotations", "mirrors", "augment", "by", "same_alphabet", "image_size")
SINUSOID_KEYS = ("shots", "queries", "val_shots")
METRIC_RUN = dict(steps=2000, lr_decay_every=1000)
MEMORY_RUN = dict(tasks_per_step=64, steps=100000, lr=1e-3, lr_decay=0.5, lr_decay_every=1000000, grad_clip=10.0,
                  val_every=100, val_episodes=200, save_every=100)
MEMORY_TASK = dict(ways=5, shots=10, rotations=True, augment=False, image_size=28)
SINUSOID_RUN = dict(tasks_per_step=25, steps=70000, lr=1e-3, lr_decay_every=1_000_000, val_every=2500,
                    val_episodes=200, save_every=5000)
SINUSOID_TASK = dict(shots=10, queries=10, rotations=False, val_shots=5)
MAML_RUN = dict(tasks_per_step=8, steps=20000, lr=1e-3, lr_decay_every=100000, val_every=250, val_episodes=200)
MAML_TASK = dict(ways=5, shots=1, queries=5, rotations=True)
ZERO_HEAD = "start every task from a zero head (the zeroing trick of Kao et al. 2022)"
#: MAML's options, common to its Conv-4 and sinusoid recipes
MAML_OPTIONS = {
    "first_order": own(MAML, "first_order", "first-order approximation (drop the Hessian terms)"),
    "first_order_warmup": own(MAML, "first_order_warmup", "train this many meta-steps first-order, then second-order"),
    "meta_sgd": own(MAML, "meta_sgd", "learn one inner learning rate per parameter (Meta-SGD)"),
    "anil": own(MAML, "anil", "adapt only the head in the inner loop (ANIL)"),
}
MAML_FLAGS = {
    "hidden": HIDDEN, "norm": ADAPTABLE_NORM,
    "inner_lr": own(MAML, "inner_lr", "inner-loop learning rate (alpha)"),
    "inner_steps": own(MAML, "inner_steps", "inner gradient steps per task in training"),
    "test_steps": own(MAML, "test_steps", "inner gradient steps on the support set at test time"),
    **MAML_OPTIONS,
    # the recipe's own: the shipped maml-omniglot trained without it (MAML's default, None, decides by the head)
    "zero_head": Flag(bool, False, ZERO_HEAD),
    "batching": BATCHING,
}
REPTILE_FLAGS = {"hidden": HIDDEN, "norm": ADAPTABLE_NORM,
                 "inner_lr": own(Reptile, "inner_lr", "inner-loop learning rate"),
                 "inner_steps": own(Reptile, "inner_steps", "SGD steps per task (k)"),
                 "test_steps": own(Reptile, "test_steps", "SGD steps on the support set at test time"),
                 "batching": BATCHING}
#: the sinusoid recipes' own learning rate and test steps: the MAML paper's regression settings
SINUSOID_FLAGS = {"hidden": Flag(int, 40, "hidden units per layer"), "layers": Flag(int, 2, "hidden layers"),
                  "inner_lr": Flag(float, 0.01, "inner-loop learning rate (alpha)"),
                  "inner_steps": own(MAML, "inner_steps", "inner gradient steps per task in training"),
                  "test_steps": Flag(int, 10, "gradient steps on the support points at test time"),
                  **MAML_OPTIONS, "batching": BATCHING}
SEQUENCE_FLAGS = {
    "encoder": Flag(str, "pixels", "the controller sees raw pixels, a Conv-4 trained with it, or the frozen backbone "
                    "of pretrained-omniglot", ENCODERS),
    "hidden": own(LSTMOneShot, "hidden", "LSTM units"),
    "normalize_features": own(LSTMOneShot, "normalize_features",
                              "give the controller each drawing's features at one length"),
}
MANN_FLAGS = {**SEQUENCE_FLAGS,
              "memory_size": own(MANN, "memory_size", "memory slots (N)"),
              "memory_width": own(MANN, "memory_width", "slot width (M)"),
              "read_heads": own(MANN, "read_heads", "read heads (each also writes its key)"),
              "write_first": own(MANN, "write_first", "write, then read within a step, as in the paper"),
              "keys_see_input": own(MANN, "keys_see_input", "the heads' keys and gates also see the step's input")}
META_LSTM_FLAGS = {
    "hidden": HIDDEN, "norm": ADAPTABLE_NORM,
    "lstm_hidden": own(MetaLSTM, "lstm_hidden",
                       "units of the meta-learner's first LSTM layer (reads the gradient and loss)"),
    "inner_steps": own(MetaLSTM, "inner_steps", "learned updates on the support set in training"),
    # the recipe's own (MetaLSTM's default, None, follows inner_steps)
    "test_steps": Flag(int, 5, "learned updates on the support set at test time"),
    "zero_head": own(MetaLSTM, "zero_head", ZERO_HEAD),
}
NTM_FLAGS = {"hidden": own(NTMCopy, "hidden", "controller units"),
             "memory_size": own(NTMCopy, "memory_size", "memory slots (N)"),
             "memory_width": own(NTMCopy, "memory_width", "slot width (M)"),
             "shift_range": own(NTMCopy, "shift_range", "largest location shift"),
             "controller": own(NTMCopy, "controller", "controller network", ("lstm", "feedforward"))}


def _without(args: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in names}


def on_conv4(cls: type[EpisodicMethod], head: bool) -> Callable[[dict[str, Any], TaskSettings], EpisodicMethod]:
    """The builder of ``cls`` on a Conv-4 (flags ``hidden`` and ``norm``; the others go to ``cls`` by name):
    with ``head``, a classifier with one output per class of the tasks (``ways``), else an embedding."""

    def build(args: dict[str, Any], s: TaskSettings) -> EpisodicMethod:
        rest = _without(args, "hidden", "norm")
        if head:
            return cls(_conv(args, s, out_features=s.ways), ways=s.ways, **rest)
        return cls(_conv(args, s), **rest)

    return build


def on_sinusoid_mlp(cls: type[EpisodicMethod]) -> Callable[[dict[str, Any], TaskSettings], EpisodicMethod]:
    """The builder of ``cls`` on the sinusoid MLP (flags ``hidden`` and ``layers``) with the squared error."""

    def build(args: dict[str, Any], s: TaskSettings) -> EpisodicMethod:
        net = MLP(1, (args["hidden"],) * args["layers"], 1)
        return cls(net, loss="mse", **_without(args, "hidden", "layers"))

    return build


def on_sequences(cls: type[EpisodicMethod]) -> Callable[[dict[str, Any], TaskSettings], EpisodicMethod]:
    """The builder of a sequence classifier ``cls`` (MANN, its LSTM baseline) on the ``--encoder`` it asks for."""

    def build(args: dict[str, Any], s: TaskSettings) -> EpisodicMethod:
        encoder, freeze = sequence_encoder(args["encoder"], s.image_size)
        return cls(encoder, classes=s.ways, image_size=s.image_size, freeze_encoder=freeze,
                   **_without(args, "encoder"))

    return build


def _pretrained(args: dict[str, Any], s: TaskSettings) -> Pretrained:
    return Pretrained(Conv4(1, args["hidden"], args["norm"]), classes=_count_classes(s), head=args["head"],
                      image_size=s.image_size)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(name="protonet", summary="Prototypical Networks on Conv-4", method=ProtoNet,
           model_flags={"hidden": HIDDEN, "norm": NORM, "distance": DISTANCE},
           build=on_conv4(ProtoNet, head=False), source=_episodes, task_flags=EPISODE_TASK, task_keys=FOLDER_KEYS,
           run_defaults=METRIC_RUN, task_defaults=dict(ways=20, shots=5, queries=5), folder=True, compile=True),
    Recipe(name="siamese", summary="Siamese network (contrastive loss over every pair) on Conv-4", method=SiameseNet,
           model_flags={"hidden": HIDDEN, "norm": NORM, "distance": DISTANCE, "margin": MARGIN, "classify": CLASSIFY},
           build=on_conv4(SiameseNet, head=False), source=_pairs, task_flags=PAIR_TASK,
           task_keys=(*BATCH_KEYS, "grayscale"), run_defaults=METRIC_RUN,
           task_defaults=dict(ways=20, shots=5, queries=0), folder=True, compile=True),
    Recipe(name="triplet", summary="Triplet network with in-batch mining on Conv-4", method=TripletNet,
           model_flags={"hidden": HIDDEN, "norm": NORM, "distance": DISTANCE, "margin": MARGIN,
                        "mining": own(TripletNet, "mining", "how triplets are mined in a batch",
                                      ("batch_hard", "semi_hard", "all")),
                        "classify": CLASSIFY},
           build=on_conv4(TripletNet, head=False), source=_pairs, task_flags=PAIR_TASK,
           task_keys=(*BATCH_KEYS, "grayscale"), run_defaults=METRIC_RUN,
           task_defaults=dict(ways=20, shots=5, queries=0), folder=True, compile=True),
    Recipe(name="pretrained", summary="transfer baseline: Conv-4 pretrained on all meta-train classes at once",
           method=Pretrained,
           model_flags={"hidden": HIDDEN, "norm": Flag(str, "running", NORM.help, NORM.choices),
                        "head": own(Pretrained, "head", "linear (Baseline) or cosine (Baseline++) pretraining head",
                                    ("linear", "cosine"))},
           build=_pretrained, source=_class_batches, task_flags=PAIR_TASK, task_keys=BATCH_KEYS,
           run_defaults=dict(steps=3000, lr=1e-3, lr_decay_every=1000, val_every=250, val_episodes=200,
                             save_every=250),
           task_defaults=dict(ways=64, shots=2, rotations=True, augment=True, val_ways=5, val_shots=1),
           compile=True),
    Recipe(name="matching", summary="Matching Networks (cosine attention over the support set) on Conv-4",
           method=MatchingNet,
           model_flags={"hidden": HIDDEN, "norm": NORM,
                        "temperature": own(MatchingNet, "temperature",
                                           "softmax temperature of the attention (its start when learned)"),
                        "learn_temperature": own(MatchingNet, "learn_temperature",
                                                 "learn the temperature with the encoder")},
           build=on_conv4(MatchingNet, head=False), source=_episodes, task_flags=EPISODE_TASK, task_keys=FOLDER_KEYS,
           run_defaults=METRIC_RUN, task_defaults=dict(ways=20, shots=5, queries=5), folder=True, compile=True),
    Recipe(name="relation", summary="Relation Networks (a learned relation module on paired Conv-4 feature maps)",
           method=RelationNet,
           model_flags={"hidden": HIDDEN, "norm": NORM,
                        "loss": own(RelationNet, "loss", "regress the relation scores onto one-hot targets (the "
                                    "paper's) or cross-entropy over the classes", ("mse", "cross_entropy"))},
           build=lambda a, s: RelationNet(_conv(a, s, pools=2, flatten=False), loss=a["loss"]), source=_episodes,
           task_flags=EPISODE_TASK, task_keys=FOLDER_KEYS, run_defaults=METRIC_RUN,
           task_defaults=dict(ways=5, shots=1, queries=15), folder=True, compile=True),
    Recipe(name="proto_maml", summary="Proto-MAML: MAML whose head starts from the support prototypes, on Conv-4",
           method=ProtoMAML, model_flags={k: f for k, f in MAML_FLAGS.items() if k != "zero_head"},
           build=on_conv4(ProtoMAML, head=True), source=_episodes, task_flags=EPISODE_TASK, task_keys=FOLDER_KEYS,
           run_defaults=MAML_RUN, task_defaults=MAML_TASK, folder=True, init_body=True),
    Recipe(name="maml", summary="MAML (and first-order, Meta-SGD, ANIL) on a Conv-4 classifier", method=MAML,
           model_flags=MAML_FLAGS, build=on_conv4(MAML, head=True), source=_episodes, task_flags=EPISODE_TASK,
           task_keys=FOLDER_KEYS, run_defaults=MAML_RUN, task_defaults=MAML_TASK, folder=True, init_body=True),
    Recipe(name="reptile", summary="Reptile on a Conv-4 classifier", method=Reptile, model_flags=REPTILE_FLAGS,
           build=on_conv4(Reptile, head=True), source=_episodes, task_flags=EPISODE_TASK, task_keys=FOLDER_KEYS,
           run_defaults=dict(MAML_RUN, tasks_per_step=5), task_defaults=MAML_TASK, folder=True, init_body=True),
    Recipe(name="meta_lstm",
           summary="Meta-LSTM (Ravi & Larochelle 2017): a learned LSTM optimiser trains a Conv-4 classifier",
           method=MetaLSTM, model_flags=META_LSTM_FLAGS, build=on_conv4(MetaLSTM, head=True), source=_episodes,
           task_flags=EPISODE_TASK, task_keys=FOLDER_KEYS, run_defaults=dict(MAML_RUN, tasks_per_step=4),
           task_defaults=MAML_TASK, folder=True, init_body=True),
    Recipe(name="maml_regressor", summary="MAML on sinusoid regression (the paper's 40-40 MLP)", method=MAML,
           model_flags=SINUSOID_FLAGS, build=on_sinusoid_mlp(MAML), source=_sinusoids,
           task_flags=("shots", "queries"), task_keys=SINUSOID_KEYS, run_defaults=SINUSOID_RUN,
           task_defaults=SINUSOID_TASK, report=sinusoid_report),
    Recipe(name="reptile_regressor", summary="Reptile on sinusoid regression", method=Reptile,
           model_flags={**{k: SINUSOID_FLAGS[k] for k in ("hidden", "layers", "inner_lr", "test_steps", "batching")},
                        "inner_steps": REPTILE_FLAGS["inner_steps"]},
           build=on_sinusoid_mlp(Reptile), source=_sinusoids, task_flags=("shots", "queries"),
           task_keys=SINUSOID_KEYS, run_defaults=SINUSOID_RUN, task_defaults=SINUSOID_TASK, report=sinusoid_report),
    Recipe(name="ntm_copy", summary="Neural Turing Machine on the copy task", method=NTMCopy, model_flags=NTM_FLAGS,
           build=lambda a, s: NTMCopy(**a), source=_copies, task_flags=("max_length",), task_keys=("max_length",),
           run_defaults=dict(tasks_per_step=32, steps=20000, lr_decay_every=100000, grad_clip=10.0, val_every=250,
                             val_episodes=64, save_every=250),
           task_defaults=dict(rotations=False), report=copy_report),
    Recipe(name="mann", summary="memory-augmented network (Santoro et al. 2016) on one-shot Omniglot sequences",
           method=MANN, model_flags=MANN_FLAGS, build=on_sequences(MANN), source=_sequences,
           task_flags=PAIR_TASK, task_keys=SEQUENCE_KEYS, run_defaults=MEMORY_RUN, task_defaults=MEMORY_TASK,
           report=presentation_report, compile=True),
    Recipe(name="lstm_oneshot", summary="the MANN's LSTM-only baseline on the same sequences", method=LSTMOneShot,
           model_flags=SEQUENCE_FLAGS, build=on_sequences(LSTMOneShot), source=_sequences, task_flags=PAIR_TASK,
           task_keys=SEQUENCE_KEYS, run_defaults=MEMORY_RUN, task_defaults=MEMORY_TASK, report=presentation_report),
)}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` listing them otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def recipe_of(method: EpisodicMethod) -> Recipe | None:
    """The recipe a loaded method was trained by (its checkpoint's ``recipe``), if the course has one."""
    name = getattr(method, "recipe", None) or method.name  # a method's own recipe bears its name
    return RECIPES.get(name)


__all__ = ["RECIPES", "Flag", "Recipe", "TaskSettings", "get_recipe", "recipe_of"]
