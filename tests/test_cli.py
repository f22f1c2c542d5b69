"""The command line: help texts, train -> evaluate round trip, list, and error exits."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import metalearn_lite.cli as cli
from metalearn_lite.algorithms import METHODS
from metalearn_lite.checkpoints import load_checkpoint, load_pretrained, read_checkpoint
from metalearn_lite.cli import build_parser, main
from metalearn_lite.recipes import RECIPES
from metalearn_lite.recipes.settings import TaskSettings
from metalearn_lite.training import TrainConfig, TrainResult

REPO = Path(__file__).resolve().parent.parent


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "metalearn_lite", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def train_argv(out: Path, save_as: Path, *extra: str) -> list[str]:
    return [
        "train", "protonet", "--out", str(out), "--steps", "2", "--ways", "5", "--shots", "1", "--queries", "2",
        "--hidden", "8", "--val-every", "1", "--val-episodes", "3", "--no-progress",
        "--device", "cpu", "--save-as", str(save_as), "--set", "rotations=false", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CLI training run: (argv, x.pt, return code, stdout)."""
    tmp = tmp_path_factory.mktemp("cli")
    save_as = tmp / "saved" / "x.pt"
    argv = train_argv(tmp / "run", save_as)
    rc = main(argv)
    return argv, save_as, rc, tmp


# ---------------------------------------------------------------- help (real subprocesses)


def test_top_level_help():
    proc = run_module("--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("train", "evaluate", "list"):
        assert word in proc.stdout


def option_count(recipe: str) -> int:
    """The options `train RECIPE --help` lists (an --x/--no-x pair is one option; -h counts)."""
    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    sub = next(a for a in train._actions if a.dest == "recipe").choices[recipe]
    return sum(1 for a in sub._actions if a.option_strings)


def test_train_help_lists_the_recipes():
    proc = run_module("train", "--help")
    assert proc.returncode == 0, proc.stderr
    for name in RECIPES:
        assert name in proc.stdout, name


def test_protonet_help_lists_only_what_protonet_uses_in_at_most_25_options():
    proc = run_module("train", "protonet", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--ways", "--time-limit-min", "--augment", "--no-augment", "--save-as", "--hidden", "--data",
                 "--val-classes", "--set", "--compile"):
        assert flag in proc.stdout, flag
    for flag in ("--margin", "--inner-lr", "--memory-width", "--init-body", "--max-length"):
        assert flag not in proc.stdout, flag
    assert option_count("protonet") <= 26  # 25 before --compile (the compiled channels_last training step)
    # every run and task setting that is not a flag can still be set, and is listed under --set
    text = " ".join(proc.stdout.split())
    for f in (*fields(TrainConfig), *fields(TaskSettings)):
        if f.name in ("compile", "seed", "data", "val_classes", "max_length"):
            continue
        flag = "--tasks" if f.name == "tasks_per_step" else "--" + f.name.replace("_", "-")
        assert flag in text or f"{f.name} (" in text, f.name
    assert "max_length" not in text  # the copy task's setting does not apply to protonet


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_has_a_short_help(recipe):
    assert option_count(recipe) <= 35


def test_evaluate_help():
    proc = run_module("evaluate", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--episodes", "--ways", "--shots", "--queries", "--split", "--seed"):
        assert flag in proc.stdout


def test_parser_defaults_are_the_recipe_defaults():
    args = build_parser().parse_args(["train", "protonet", "--out", "x"])
    recipe, run, settings, model = cli.configs(args)
    assert run == RECIPES["protonet"].run_config() and settings == RECIPES["protonet"].settings()
    assert model == {}
    args = build_parser().parse_args(["train", "maml", "--out", "x"])
    _, run, settings, _ = cli.configs(args)
    assert (run.tasks_per_step, settings.ways, settings.shots) == (8, 5, 1)


def test_flags_and_set_override_recipe_defaults():
    args = build_parser().parse_args(["train", "protonet", "--out", "x", "--shots", "3", "--tasks", "4",
                                      "--set", "rotations=false", "lr_decay=0.1", "image_size=32"])
    _, run, settings, _ = cli.configs(args)
    assert (settings.ways, settings.shots, settings.rotations, settings.image_size) == (20, 3, False, 32)
    assert (run.tasks_per_step, run.lr_decay) == (4, 0.1)


@pytest.mark.parametrize("item, match", [("rotations", "KEY=VALUE"), ("colour=3", "KEY=VALUE with KEY one of"),
                                         ("lr_decay=fast", "expected a float"), ("mirrors=maybe", "expected a bool")])
def test_bad_set_values_are_errors(item, match):
    args = build_parser().parse_args(["train", "protonet", "--out", "x", "--set", item])
    with pytest.raises(ValueError, match=match):
        cli.configs(args)


def test_model_flag_that_does_not_apply_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(["train", "protonet", "--out", "x", "--margin", "2"])
    assert err.value.code == 2 and "--margin" in capsys.readouterr().err
    args = build_parser().parse_args(["train", "triplet", "--out", "x", "--margin", "2", "--hidden", "8"])
    assert cli.configs(args)[3] == {"margin": 2.0, "hidden": 8}


def test_maml_ways_reach_the_model(tmp_path, monkeypatch):
    """`train maml --ways 20` builds a 20-output head (before the redesign the ways never reached the model)."""
    seen = {}

    def fake_train(method, tasks, val_tasks, cfg, **kwargs):
        seen["model"], seen["tasks"] = method, tasks
        return TrainResult(Path(kwargs["out_dir"]), step=0, best_val=0.0, interrupted=True)

    monkeypatch.setattr(cli, "train", fake_train)
    main(["train", "maml", "--out", str(tmp_path / "run"), "--ways", "20", "--no-progress"])
    assert seen["model"].net.head.out_features == 20 and seen["tasks"].sample(1).support_y.max() == 19


def test_unknown_method_is_a_usage_error():
    with pytest.raises(SystemExit) as err:
        main(["train", "maml-9000", "--out", "x"])
    assert err.value.code == 2


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


# ---------------------------------------------------------------- train -> evaluate


def test_train_writes_save_as_with_command(trained):
    argv, save_as, rc, tmp = trained
    assert rc == 0
    assert save_as.is_file() and (tmp / "run" / "best.pt").is_file() and (tmp / "run" / "last.pt").is_file()
    blob = read_checkpoint(save_as)
    assert blob["command"].startswith("python -m metalearn_lite train protonet")
    assert blob["command"] == "python -m metalearn_lite " + shlex.join(argv)
    assert blob["config"]["encoder"]["hidden"] == 8 and blob["method"] == "protonet" and blob["recipe"] == "protonet"
    task = blob["task_config"]
    assert blob["train_config"]["steps"] == 2
    assert (task["ways"], task["shots"], task["queries"], task["rotations"]) == (5, 1, 2, False)
    assert blob["seed"] == 0
    # the recorded command parses back to the same run
    again = build_parser().parse_args(shlex.split(blob["command"])[3:])
    assert again.steps == 2 and again.hidden == 8 and again.set == ["rotations=false"]
    assert isinstance(load_checkpoint(save_as), METHODS["protonet"])


def test_same_cli_command_gives_same_model(trained):
    # --seed is documented as the "seed of every random choice (episodes, augmentation, initialisation)"
    argv, save_as, _, tmp = trained
    second = tmp / "second.pt"
    assert main(train_argv(tmp / "run2", second)) == 0
    first, other = read_checkpoint(save_as)["state_dict"], read_checkpoint(second)["state_dict"]
    for k in first:
        assert torch.equal(first[k], other[k]), f"{k} differs between two runs of the same command"


def test_evaluate_checkpoint_path(trained, capsys):
    _, save_as, _, _ = trained
    capsys.readouterr()
    assert main(["evaluate", str(save_as), "--episodes", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "±" in line)
    assert str(save_as) in line and "5-way 1-shot, 5 episodes" in line


def test_evaluate_pretrained_name(capsys):
    assert main(["evaluate", "protonet-omniglot", "--episodes", "3", "--queries", "2", "--device", "cpu"]) == 0
    assert "±" in capsys.readouterr().out


def test_evaluate_unknown_model(capsys):
    assert main(["evaluate", "no-such-model"]) == 2
    captured = capsys.readouterr()
    assert "no-such-model" in captured.err
    assert "protonet-omniglot" in captured.err and "siamese-omniglot" in captured.err


def test_evaluate_not_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    assert main(["evaluate", str(path)]) == 2
    assert "not a metalearn-lite checkpoint" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "protonet-omniglot" in out and "siamese-omniglot" in out
    assert "python -m metalearn_lite train protonet" in out


def test_interrupted_training_returns_130_and_saves_nothing(tmp_path, monkeypatch, capsys):
    def fake_train(method, tasks, val_tasks, cfg, **kwargs):
        return TrainResult(Path(kwargs["out_dir"]), step=1, best_val=0.5, interrupted=True)

    monkeypatch.setattr(cli, "train", fake_train)
    save_as = tmp_path / "never.pt"
    assert main(train_argv(tmp_path / "run", save_as)) == 130
    assert not save_as.exists()
    assert "stopped at step 1" in capsys.readouterr().out


def test_resume_with_other_model_is_an_error_exit(trained, capsys):
    _, _, _, tmp = trained
    argv = train_argv(tmp / "run", tmp / "y.pt")
    argv[argv.index("--hidden") + 1] = "16"
    assert main(argv) == 2
    assert "different run" in capsys.readouterr().err


def test_image_size_builds_the_model_for_that_size(tmp_path, monkeypatch):
    seen = {}

    def fake_train(method, tasks, val_tasks, cfg, **kwargs):
        seen["model"], seen["task"] = method, kwargs["task_config"]
        return TrainResult(Path(kwargs["out_dir"]), step=0, best_val=0.0, interrupted=True)

    monkeypatch.setattr(cli, "train", fake_train)
    main(["train", "mann", "--out", str(tmp_path / "run"), "--set", "image_size=20", "--encoder", "conv",
          "--no-progress"])
    assert seen["task"]["image_size"] == 20 and seen["model"].image_size == 20
    assert seen["model"].config["encoder"]["hidden"] == 32 and seen["model"].config["image_size"] == 20
    main(["train", "maml", "--out", str(tmp_path / "run2"), "--set", "image_size=20", "--no-progress"])
    assert seen["model"].net.image_size == 20 and seen["model"].net.head.in_features == 64


def test_init_body_starts_maml_from_the_pretrained_backbone(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_train(method, tasks, val_tasks, cfg, **kwargs):
        seen["model"], seen["command"] = method, kwargs["command"]
        return TrainResult(Path(kwargs["out_dir"]), step=0, best_val=0.0, interrupted=True)

    monkeypatch.setattr(cli, "train", fake_train)
    argv = ["train", "maml", "--out", str(tmp_path / "run"), "--init-body", "pretrained-omniglot", "--zero-head",
            "--no-progress"]
    main(argv)
    source = load_pretrained("pretrained-omniglot").backbone.features.state_dict()
    body = seen["model"].net.features
    for name, p in body.named_parameters():
        assert torch.equal(p, source[name]), name
    assert "--init-body pretrained-omniglot" in seen["command"]  # recorded with the checkpoint
    # a method without a Conv-4 body to start has no such option; a source without a backbone: a clear error exit
    with pytest.raises(SystemExit):
        main(["train", "protonet", "--out", str(tmp_path / "r2"), "--init-body", "pretrained-omniglot"])
    assert "--init-body" in capsys.readouterr().err
    assert main(["train", "maml", "--out", str(tmp_path / "r3"), "--init-body", "ntm-copy"]) == 2
    assert "no Conv-4 backbone" in capsys.readouterr().err
    assert main(["train", "maml", "--out", str(tmp_path / "r4"), "--init-body", "pretrained-omniglot",
                 "--hidden", "32"]) == 2
    assert "--hidden 64" in capsys.readouterr().err


SHIPPED_DIR = REPO / "metalearn_lite" / "data" / "checkpoints"


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED_DIR.glob("*.pt")))
def test_the_command_recorded_with_each_shipped_model_still_asks_for_the_same_run(name):
    """Every shipped checkpoint's command (recorded before the redesign) parses with today's CLI into the same run
    and task settings and builds a method with the same config: the files stay reproducible."""
    from dataclasses import asdict

    blob = read_checkpoint(SHIPPED_DIR / f"{name}.pt")
    if not blob["command"].startswith("python -m metalearn_lite train"):
        pytest.skip(f"{name} was made by {blob['command'].split()[1]}, not by a training recipe")
    args = build_parser().parse_args(shlex.split(blob["command"])[3:])
    recipe, run, settings, model = cli.configs(args)
    now = {**asdict(run), **asdict(settings)}
    now["tasks"] = now.pop("tasks_per_step")
    recorded = blob["train_config"]
    ignored = {"queries"} if recipe.name in ("siamese", "triplet") else set()  # pair batches never had queries
    assert {k: v for k, v in recorded.items() if k in now and k not in ignored} == \
        {k: now[k] for k in recorded if k in now and k not in ignored}
    method = recipe.make(settings, getattr(args, "init_body", None), **model)
    config = dict(blob["config"])
    if config.get("zero_head") and config["ways"] != settings.ways:
        # before the redesign `--ways 20` never reached the model: the file's (zeroed, per-task) head was built
        # for 5 classes; today the head has the run's 20 rows. With the zeroing trick it is never used.
        config["ways"], config["model"] = settings.ways, {**config["model"], "out_features": settings.ways}
    assert method.name == blob["method"] and method.config == config
