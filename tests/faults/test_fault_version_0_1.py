"""Checkpoints written by version 0.1 (format 1): refused wherever a checkpoint is read, with the command that
converts them (``test_error_*``); ``python -m metalearn_lite upgrade FILE [--out NEW]`` turns one into a file that
loads and gives identical outputs, keeping the original (``test_correct_*``), and answers bad input with one line
and exit status 2, writing nothing (``test_error_upgrade_*``)."""

from __future__ import annotations

import re

import pytest
import torch
from faultkit import checkpoint_0_1, clear_error, protonet, refused

import metalearn_lite as ml
from metalearn_lite.checkpoints import FORMAT, FORMAT_1, read_checkpoint, save_checkpoint
from metalearn_lite.cli import main
from metalearn_lite.integrity import content_digest
from metalearn_lite.recipes import recipe_of
from metalearn_lite.upgrade import upgrade_file


@pytest.fixture
def old(tmp_path):
    path = tmp_path / "best.pt"
    return path, checkpoint_0_1(path)


def logits(method: ml.ProtoNet) -> torch.Tensor:
    """Scores of a fixed 5-way 2-shot episode of random 28 x 28 images."""
    g = torch.Generator().manual_seed(0)
    support, query = torch.rand(10, 1, 28, 28, generator=g), torch.rand(15, 1, 28, 28, generator=g)
    with torch.no_grad():
        return method.logits(support, torch.arange(5).repeat(2), query)


def test_error_loading_a_file_of_version_0_1(old):
    path, _ = old
    for load in (read_checkpoint, ml.load_checkpoint, lambda p: ml.load_checkpoint(p, ml.ProtoNet(ml.Conv4(hidden=8)))):
        with clear_error(ValueError, "metalearn-lite 0.1", FORMAT_1, "no longer reads",
                         re.escape(f"python -m metalearn_lite upgrade {path}")):
            load(path)


def test_error_evaluating_a_file_of_version_0_1(old, capsys):
    path, _ = old
    refused(capsys, ["evaluate", str(path)], "0.1", f"python -m metalearn_lite upgrade {path}")


def test_correct_upgrade_in_place_keeps_the_original(old, capsys):
    path, method = old
    original = path.read_bytes()
    assert main(["upgrade", str(path)]) == 0
    kept = path.with_name("best.format1.pt")
    assert kept.read_bytes() == original  # nothing the user saved is lost
    assert str(kept) in capsys.readouterr().out
    blob = read_checkpoint(path)
    assert blob["format"] == FORMAT and blob["recipe"] == "protonet"
    assert blob["config"] == ml.ProtoNet(ml.Conv4(hidden=8)).config
    for key in ("command", "seed", "history", "step", "best_val", "torch_version"):  # the run's record, as it was
        assert blob[key] == torch.load(kept, weights_only=True)[key], key
    assert blob["state_dict"].keys() == method.state_dict().keys()
    assert all(torch.equal(v, method.state_dict()[k]) for k, v in blob["state_dict"].items())
    assert torch.equal(logits(ml.load_checkpoint(path)), logits(method))


def test_correct_upgrade_to_another_file_leaves_the_original(old, tmp_path):
    path, method = old
    original = path.read_bytes()
    assert main(["upgrade", str(path), "--out", str(tmp_path / "new.pt")]) == 0
    assert path.read_bytes() == original and not path.with_name("best.format1.pt").exists()
    assert torch.equal(logits(ml.load_checkpoint(tmp_path / "new.pt")), logits(method))


def test_correct_upgrade_of_a_sinusoid_regressor(tmp_path):
    """0.1's ``maml_regressor`` becomes ``maml`` with ``loss="mse"`` on an MLP, and keeps its recipe."""
    torch.manual_seed(0)
    method = ml.MAML(ml.MLP(1, (8, 8), 1), ways=5, inner_lr=0.01, inner_steps=1, test_steps=2, loss="mse",
                     zero_head=False).eval()
    config = {"hidden": 8, "layers": 2, "inner_lr": 0.01, "inner_steps": 1, "test_steps": 2, "first_order": False,
              "first_order_warmup": 0, "meta_sgd": False, "anil": False, "batching": "auto"}
    blob = {"format": FORMAT_1, "method": "maml_regressor", "config": config, "state_dict": method.state_dict()}
    torch.save({**blob, "sha256": content_digest(blob)}, tmp_path / "sine.pt")
    converted, kept = upgrade_file(tmp_path / "sine.pt", tmp_path / "sine2.pt")
    assert (converted, kept) == (tmp_path / "sine2.pt", tmp_path / "sine.pt")
    loaded = ml.load_checkpoint(converted)
    assert loaded.name == "maml" and loaded.config == method.config and recipe_of(loaded).name == "maml_regressor"
    tasks = ml.SinusoidTasks(seed=0).sample(4, 5, 10)
    assert torch.equal(loaded.query_losses(tasks), method.query_losses(tasks))


def damage(path) -> None:
    """One weight changed, the digest of the old contents kept."""
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["encoder.features.0.weight"].view(-1)[0] += 1
    torch.save(blob, path)


@pytest.mark.parametrize("case, words", [
    ("missing", ["no checkpoint at"]),
    ("not a checkpoint", ["not a readable checkpoint"]),
    ("damaged", ["damaged", "SHA-256"]),
    ("current format", ["already in the current format", "nothing to upgrade"]),
    ("unknown method", ["could not be converted", "'gone'", "nothing was written"]),
    ("out is the file", ["is the file itself", "leave --out out"]),
    ("out exists", ["already exists", "never overwritten"]),
    ("kept copy exists", ["best.format1.pt already exists", "--out NEW"]),
])
def test_error_upgrade_bad_input(old, tmp_path, capsys, case, words):
    path, _ = old
    args = ["upgrade", str(path)]
    if case == "missing":
        args = ["upgrade", str(tmp_path / "nope.pt")]
    elif case == "not a checkpoint":
        path.write_bytes(b"not a checkpoint")
    elif case == "damaged":
        damage(path)
    elif case == "current format":
        save_checkpoint(path, protonet())
    elif case == "unknown method":
        blob = {**torch.load(path, weights_only=True), "method": "gone"}
        blob.pop("sha256")
        torch.save(blob, path)
    elif case == "out is the file":
        args += ["--out", str(path)]
    elif case == "out exists":
        (tmp_path / "new.pt").write_bytes(b"keep")
        args += ["--out", str(tmp_path / "new.pt")]
    elif case == "kept copy exists":
        path.with_name("best.format1.pt").write_bytes(b"keep")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    refused(capsys, args, *words)
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing changed


def test_error_upgrade_without_a_file(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["upgrade"])
    assert exited.value.code == 2 and "required: FILE" in capsys.readouterr().err
