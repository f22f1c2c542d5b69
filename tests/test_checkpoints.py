"""Checkpoints: round trips, atomic writes, clear errors for bad files, and the shipped pretrained models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from metalearn_lite import EpisodeSampler, evaluate, integrity, load_checkpoint, load_pretrained
from metalearn_lite.algorithms import ProtoNet, SiameseNet
from metalearn_lite.checkpoints import FORMAT, available_pretrained, read_checkpoint, save_checkpoint
from metalearn_lite.models import Conv4

SHIPPED = ("protonet-omniglot", "siamese-omniglot", "matching-omniglot", "relation-omniglot", "proto-maml-omniglot")


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with every parameter moved off its initial value (so a round trip cannot pass by accident)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def task(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 1, 28, 28, generator=g)
    return EpisodeSampler(x, ways=4, shots=1, queries=2, seed=seed).sample(1).unbatched()


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = perturbed(ProtoNet(Conv4(hidden=8)))
    path = save_checkpoint(tmp_path / "model.pt", model, command="python -m metalearn_lite train protonet", seed=3)
    return model, path


# ---------------------------------------------------------------- round trip and format


@pytest.mark.parametrize(
    "make",
    [
        lambda: ProtoNet(Conv4(hidden=8)),
        lambda: ProtoNet(Conv4(hidden=8, norm="running"), distance="cosine"),
        lambda: SiameseNet(Conv4(hidden=8), distance="cosine", margin=0.3, classify="neighbour"),
    ],
    ids=["protonet", "protonet-cosine-running", "siamese-neighbour"],
)
@torch.no_grad()
def test_round_trip_gives_identical_outputs(tmp_path, make):
    torch.manual_seed(1)
    model = perturbed(make())
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model)
    assert path == tmp_path / "sub" / "m.pt" and path.is_file()
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert not loaded.training
    own, other = model.state_dict(), loaded.state_dict()
    assert own.keys() == other.keys()
    for k in own:
        assert torch.equal(own[k], other[k]), k
    sx, sy, qx, _ = task()
    assert torch.equal(loaded.logits(sx, sy, qx), model.logits(sx, sy, qx))


def test_file_is_plain_weights_only_torch_file(saved):
    model, path = saved
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["format"] == FORMAT
    assert blob["method"] == "protonet"
    assert blob["config"] == model.config
    assert blob["command"] == "python -m metalearn_lite train protonet" and blob["seed"] == 3
    assert all(v.device.type == "cpu" for v in blob["state_dict"].values())
    assert read_checkpoint(path)["config"] == model.config


def test_save_leaves_no_temporary_files(saved, tmp_path):
    model, path = saved
    save_checkpoint(path, model)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_failing_save_keeps_the_existing_file(saved, tmp_path, monkeypatch):
    model, path = saved
    before = path.read_bytes()
    written = []

    def full_disk(fd):  # the data went to a temporary file; making it durable fails like a full disk
        written.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else "?")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(integrity.os, "fsync", full_disk)
    other = perturbed(ProtoNet(Conv4(hidden=8)), seed=9)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, other)
    monkeypatch.undo()
    assert len(written) == 1 and written[0] != str(path), "the bytes must go to a temporary path first"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    loaded = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


# ---------------------------------------------------------------- errors


def _random_bytes(seed: int, n: int = 1024) -> bytes:
    return bytes(torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed)).tolist())


@pytest.mark.parametrize(
    "content",
    [_random_bytes(s) for s in range(6)] + [b"", b"hello world\n", b"PK\x03\x04 not really a zip"],
    ids=[f"random-seed{s}" for s in range(6)] + ["empty", "text", "zip-magic"],
)
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.99])
def test_truncated_checkpoint(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data))])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "obj",
    [
        {"method": "protonet", "config": {"hidden": 8}, "state_dict": {}},
        {"format": "something-else/1", "method": "protonet"},
        torch.zeros(3),
    ],
    ids=["no-marker", "other-marker", "tensor"],
)
def test_not_a_checkpoint(tmp_path, obj):
    path = tmp_path / "plain.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError, match="not a metalearn-lite checkpoint"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(ProtoNet(Conv4(hidden=8)).state_dict(), path)
    with pytest.raises(ValueError, match=FORMAT):
        load_checkpoint(path)


def test_wrong_method(saved):
    _, path = saved
    with pytest.raises(ValueError, match="'protonet' model, not 'siamese'"):
        load_checkpoint(path, method="siamese")
    assert isinstance(load_checkpoint(path, method="protonet"), ProtoNet)


def test_mismatched_shapes(saved):
    _, path = saved
    blob = torch.load(path, weights_only=True)
    del blob["sha256"]  # a hand-edited file without a digest loads unverified, as files written before it did
    blob["config"]["encoder"]["hidden"] = 16
    torch.save(blob, path)
    with pytest.raises(ValueError, match="mismatched shapes") as err:
        load_checkpoint(path)
    assert "encoder" in str(err.value) and "(8" in str(err.value) and "(16" in str(err.value)


def test_missing_or_extra_weights(saved):
    _, path = saved
    blob = torch.load(path, weights_only=True)
    del blob["sha256"]  # a hand-edited file without a digest loads unverified, as files written before it did
    blob["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(blob, path)
    with pytest.raises(ValueError, match="unexpected \\['extra.weight'\\]"):
        load_checkpoint(path)


def test_unknown_method_in_checkpoint(saved):
    _, path = saved
    blob = torch.load(path, weights_only=True)
    del blob["sha256"]  # a hand-edited file without a digest loads unverified, as files written before it did
    blob["method"] = "reptile-9000"
    torch.save(blob, path)
    with pytest.raises(ValueError, match="unknown to this version"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint either


# ---------------------------------------------------------------- pretrained


def test_available_pretrained_lists_shipped():
    names = available_pretrained()
    for name in SHIPPED:
        assert name in names


def test_load_pretrained_unknown_name_lists_available():
    with pytest.raises(ValueError, match="no pretrained model 'no-such-model'") as err:
        load_pretrained("no-such-model")
    for name in SHIPPED:
        assert name in str(err.value)


def test_pretrained_follow_data_root(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = perturbed(ProtoNet(Conv4(hidden=8)))
    save_checkpoint(tmp_path / "checkpoints" / "tiny.pt", model, command="python -m metalearn_lite train x", seed=5)
    monkeypatch.setenv("METALEARN_LITE_DATA", str(tmp_path))
    assert available_pretrained() == ["tiny"]
    loaded = load_pretrained("tiny")
    assert loaded.command == "python -m metalearn_lite train x" and loaded.seed == 5 and loaded.history == []
    with pytest.raises(ValueError, match="available: \\['tiny'\\]"):
        load_pretrained("protonet-omniglot")


@pytest.mark.parametrize("name, min_acc", [("protonet-omniglot", 0.5), ("siamese-omniglot", 0.3)])
def test_load_pretrained_classifies(test_split, name, min_acc):
    model = load_pretrained(name)
    assert not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model.command.startswith("python -m metalearn_lite train")
    assert isinstance(model.seed, int)
    assert isinstance(model.history, list)
    sx, sy, qx, qy = EpisodeSampler(test_split.images, ways=5, shots=1, queries=3, seed=0).sample(1).unbatched()
    with torch.no_grad():
        pred = model.predict(sx, sy, qx)
    assert pred.shape == qy.shape and set(pred.tolist()) <= set(sy.tolist())
    # well above 5-way chance (0.2) on seeded test episodes
    result = evaluate(model, test_split.images, ways=5, shots=1, queries=5, episodes=20, seed=0)
    assert result.mean > min_acc


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", SHIPPED)
def test_load_pretrained_on_cuda_matches_cpu(test_split, name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare float32 with float32
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = load_pretrained(name)
    gpu = load_pretrained(name, device="cuda")
    assert not gpu.training
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    sx, sy, qx, _ = EpisodeSampler(test_split.images, ways=5, shots=1, queries=5, seed=1).sample(1).unbatched()
    with torch.no_grad():
        want = cpu.logits(sx, sy, qx)
        got = gpu.logits(sx.cuda(), sy.cuda(), qx.cuda()).cpu()
        assert torch.equal(gpu.predict(sx.cuda(), sy.cuda(), qx.cuda()).cpu(), cpu.predict(sx, sy, qx))
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def test_no_pretrained_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METALEARN_LITE_DATA", str(tmp_path))
    with pytest.warns(UserWarning, match=r"no pretrained models.*" + str(tmp_path / "checkpoints")) as seen:
        assert available_pretrained() == []
    assert "METALEARN_LITE_DATA" in str(seen[0].message)
    with pytest.raises(ValueError, match=r"no pretrained models.*METALEARN_LITE_DATA"):
        load_pretrained("protonet-omniglot")
    from metalearn_lite.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "checkpoints") in out and "METALEARN_LITE_DATA" in out


def test_shipped_data_is_read_from_the_package(monkeypatch):
    """Without the variable, the data is the package's own folder, found by importlib.resources."""
    import metalearn_lite
    from metalearn_lite.paths import data_root

    monkeypatch.delenv("METALEARN_LITE_DATA", raising=False)
    assert data_root() == Path(metalearn_lite.__file__).parent / "data"
    assert (data_root() / "omniglot" / "LICENSE").is_file()


def test_every_listed_pretrained_name_loads():
    from metalearn_lite import LearnedOptimizer

    for name in available_pretrained():
        model = load_pretrained(name)
        assert not model.training and model.command, name
    assert isinstance(load_pretrained("learned-optimizer-quadratic"), LearnedOptimizer)


def test_every_shipped_checkpoint_has_its_section_and_command_in_the_readme():
    from metalearn_lite.checkpoints import checkpoint_dir

    readme = (checkpoint_dir() / "README.md").read_text()
    for name in available_pretrained():
        assert f"\n## {name}\n" in readme, f"{name} has no section in the checkpoints README"
        recorded = read_checkpoint(checkpoint_dir() / f"{name}.pt").get("command", "")
        # the README shows the command that made the file (files saved before the data moved into the
        # package name data/checkpoints/, the README the new folder); line breaks and OMP_NUM_THREADS aside
        flat = " ".join(readme.replace("\\\n", " ").split())
        wanted = " ".join(recorded.replace("--save-as data/", "--save-as metalearn_lite/data/").split())
        assert wanted.split(" --save-as")[0] in flat, f"{name}: its recorded command is not in the README"
