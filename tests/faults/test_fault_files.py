"""Damaged and unusual files: checkpoints (digest checked at load, incomplete or unsafe files, durable atomic
saves, temporary files of dead processes) and the Omniglot zips and their decoded cache. ``test_error_*``: a
clear error naming the file and how to restore it; ``test_correct_*``: the correct result."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faultkit import clear_error, protonet

import metalearn_lite as ml
from metalearn_lite import integrity
from metalearn_lite.checkpoints import FORMAT, checkpoint_dir, read_checkpoint, save_checkpoint
from metalearn_lite.datasets import omniglot

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, protonet(), command="probe")
    return path


def flip(path: Path, at: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])


def weight_offset(path: Path) -> int:
    weight = read_checkpoint(path)["state_dict"]["encoder.0.weight"]
    at = path.read_bytes().find(weight.numpy().tobytes()[:16])
    assert at > 0
    return at


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("offset", [0, 5, 100], ids=["first-byte", "sixth-byte", "hundred-bytes-in"])
def test_error_one_flipped_bit_in_a_weight(saved, offset):
    flip(saved, weight_offset(saved) + offset)
    with clear_error(ValueError, "damaged", "SHA-256", "git checkout"):
        ml.load_checkpoint(saved)


def test_error_flipped_byte_anywhere_never_loads_silently(saved):
    """Every tenth byte flipped in turn: each load is refused with a clear message or gives the saved weights."""
    good = read_checkpoint(saved)["state_dict"]
    data = saved.read_bytes()
    for at in range(0, len(data), max(1, len(data) // 40)):
        saved.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])
        try:
            blob = read_checkpoint(saved)
        except ValueError as err:
            assert str(saved) in str(err) and "weights_only=False" not in str(err)
            continue
        assert all(torch.equal(blob["state_dict"][k], v) for k, v in good.items()), at


def test_error_truncated_checkpoint(saved):
    saved.write_bytes(saved.read_bytes()[:300])
    with clear_error(ValueError, "truncated or corrupt", "re-create|restore"):
        ml.load_checkpoint(saved)


@pytest.mark.parametrize("drop", ["state_dict", "config", "method"])
def test_error_crafted_checkpoint_missing_a_key(tmp_path, drop):
    blob = {"format": FORMAT, "method": "protonet", "config": {}, "state_dict": {}}
    del blob[drop]
    torch.save(blob, tmp_path / "x.pt")
    with clear_error(ValueError, "incomplete", drop):
        ml.load_checkpoint(tmp_path / "x.pt")


def test_error_crafted_checkpoint_with_non_tensor_weights(tmp_path):
    torch.save({"format": FORMAT, "method": "protonet", "config": {}, "state_dict": {"w": [1, 2]}}, tmp_path / "x.pt")
    with clear_error(ValueError, "incomplete"):
        ml.load_checkpoint(tmp_path / "x.pt")


class Payload:
    def __reduce__(self):
        return (print, ("this code ran",))


def test_error_unsafe_pickle_refused_without_suggesting_weights_only_false(tmp_path):
    torch.save({"format": FORMAT, "method": "protonet", "x": Payload()}, tmp_path / "evil.pt")
    with clear_error(ValueError, "never loads", "tensors and plain values"):
        ml.load_checkpoint(tmp_path / "evil.pt")


def test_correct_checkpoint_without_digest_loads_unverified(saved):
    blob = torch.load(saved, weights_only=True)
    del blob["sha256"]
    torch.save(blob, saved)
    assert isinstance(ml.load_checkpoint(saved, method=protonet()), ml.ProtoNet)


def test_correct_shipped_checkpoints_carry_their_digest_and_load(tmp_path):
    """Every shipped file carries the SHA-256 of its contents (added without changing a tensor: the digest of
    the rest is the one the file had before), is verified when loaded, and a copy with one weight changed is
    refused."""
    names = ml.available_pretrained()
    assert "protonet-omniglot" in names
    for name in names:
        blob = torch.load(checkpoint_dir() / f"{name}.pt", map_location="cpu", weights_only=True)
        digest = blob.pop("sha256")
        assert digest == integrity.content_digest(blob), name
    blob = torch.load(checkpoint_dir() / "protonet-omniglot.pt", map_location="cpu", weights_only=True)
    first = next(iter(blob["state_dict"]))
    blob["state_dict"][first].view(-1)[0] += 1e-3
    torch.save(blob, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="damaged"):
        ml.load_checkpoint(tmp_path / "tampered.pt")
    assert ml.load_pretrained("protonet-omniglot").name == "protonet"


def test_correct_a_checkpoint_round_trip_carries_and_checks_its_digest(saved):
    raw = torch.load(saved, weights_only=True)
    digest = raw.pop("sha256")
    assert digest == integrity.content_digest(raw) and len(digest) == 64
    assert read_checkpoint(saved)["command"] == "probe"


def test_correct_stale_temp_file_of_a_dead_process_is_removed(saved):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = saved.with_name(f".{saved.name}.tmp{dead}")
    stale.write_bytes(b"half a checkpoint")
    live = saved.with_name(f".{saved.name}.tmp{os.getppid()}")  # a running process's save in progress
    live.write_bytes(b"being written")
    save_checkpoint(saved, protonet())
    assert not stale.exists() and live.exists()


def test_correct_save_flushes_to_disk_before_the_rename(saved, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(integrity.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(integrity.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    save_checkpoint(saved, protonet())
    assert events[:2] == ["fsync", "replace"]


def test_error_full_disk_keeps_the_old_file(saved, monkeypatch):
    before = saved.read_bytes()

    class FullDisk(io.FileIO):  # a file on a disk that fills up after 100 bytes
        def write(self, data):
            super().write(bytes(data)[:100])
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(integrity, "open", lambda path, mode: FullDisk(path, "w"), raising=False)
    with clear_error(OSError, "No space left", "model.pt", "free some disk space"):
        save_checkpoint(saved, protonet(seed=1))
    monkeypatch.undo()
    assert saved.read_bytes() == before and sorted(p.name for p in saved.parent.iterdir()) == ["model.pt"]


# ---------------------------------------------------------------- Omniglot zips and the decoded cache


@pytest.fixture
def zips(tmp_path, monkeypatch):
    """A copy of the shipped zips in a fresh data root, with a fresh cache folder."""
    src = omniglot._zip_paths(None)
    root = tmp_path / "data" / "omniglot"
    root.mkdir(parents=True)
    for p in src:
        shutil.copyfile(p, root / p.name)
    monkeypatch.setenv("METALEARN_LITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(omniglot, "_MEMORY", {})
    return root


def test_error_truncated_zip_names_the_file_and_the_restore(zips):
    path = zips / omniglot.ZIP_NAMES[0]
    path.write_bytes(path.read_bytes()[: 50_000])
    with clear_error(ValueError, path.name, "damaged", "reinstall"):
        ml.load_omniglot(root=zips)


def test_error_byte_flipped_zip_names_the_file(zips):
    path = zips / omniglot.ZIP_NAMES[1]
    flip(path, len(path.read_bytes()) // 3)
    with clear_error(ValueError, path.name, "damaged"):
        ml.load_omniglot(root=zips)


def test_error_empty_zip_file(zips):
    (zips / omniglot.ZIP_NAMES[0]).write_bytes(b"")
    with clear_error(ValueError, omniglot.ZIP_NAMES[0], "damaged"):
        ml.load_omniglot(root=zips)


def test_error_shipped_zip_restore_hint_is_a_git_checkout():
    hint = omniglot.restore_hint(omniglot._zip_paths(None)[0])
    command = hint.split("`")[1]
    assert command.startswith("git -C ") and " checkout -- " in command and command.endswith(omniglot.ZIP_NAMES[0])
    root, rel = command[len("git -C "):].split(" checkout -- ")
    assert (Path(root) / rel).resolve() == omniglot._zip_paths(None)[0].resolve()


def test_correct_tampered_cache_is_decoded_again(zips):
    real = ml.load_omniglot(size=20, root=zips)
    (cache,) = Path(os.environ["METALEARN_LITE_CACHE"]).glob("omniglot-20px-*.pt")
    blob = torch.load(cache, weights_only=True)
    blob["images"] = torch.zeros_like(blob["images"])  # a plausible file, with its old digest
    torch.save(blob, cache)
    omniglot._MEMORY.clear()
    again = ml.load_omniglot(size=20, root=zips)
    assert torch.equal(again.images, real.images) and again.images.sum() > 0


def test_correct_cache_without_digest_is_not_trusted(zips):
    ml.load_omniglot(size=20, root=zips)
    (cache,) = Path(os.environ["METALEARN_LITE_CACHE"]).glob("omniglot-20px-*.pt")
    torch.save({"images": torch.zeros(242, 20, 1, 20, 20), "alphabets": ["x"] * 242, "characters": ["y"] * 242},
               cache)
    omniglot._MEMORY.clear()
    assert ml.load_omniglot(size=20, root=zips).images.sum() > 0


def test_correct_cache_key_follows_the_zips_bytes_not_their_times(zips):
    paths = [zips / n for n in omniglot.ZIP_NAMES]
    key = omniglot._cache_key(paths, 28)
    stat = paths[0].stat()
    data = bytearray(paths[0].read_bytes())
    data[-30] ^= 0x01  # same size, same modification time, other bytes
    paths[0].write_bytes(bytes(data))
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert omniglot._cache_key(paths, 28) != key
    assert hashlib.sha256(bytes(data)).hexdigest() == integrity.file_sha256(paths[0])
