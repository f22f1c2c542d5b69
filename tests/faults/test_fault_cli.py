"""The command line never answers a user's mistake or a broken environment with a traceback: one line on stderr
naming the problem and the fix, exit status 2 (``test_error_*``); an unexpected internal error keeps its
traceback, and under torchrun only rank 0 speaks (``test_correct_*``). Most probes call ``main`` in this process;
a few run ``python -m metalearn_lite`` to see what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faultkit import refused

import metalearn_lite.cli as cli
from metalearn_lite.checkpoints import checkpoint_dir, save_checkpoint
from metalearn_lite.cli import main
from metalearn_lite.training import TrainResult

REPO = Path(__file__).resolve().parents[2]
UNWRITABLE = "/proc/metalearn-lite-probe"


def argv(out, *extra: str) -> list[str]:
    return ["train", "protonet", "--out", str(out), "--steps", "2", "--ways", "5", "--shots", "1", "--queries", "2",
            "--hidden", "8", "--val-every", "1", "--val-episodes", "3", "--no-progress", "--device", "cpu",
            "--set", "rotations=false", *extra]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(argv(out)) == 0
    return out


def test_error_unknown_model(capsys):
    refused(capsys, ["evaluate", "no-such-model"], "no pretrained model", "available")


def test_error_unknown_device(tmp_path, capsys):
    refused(capsys, argv(tmp_path / "r", "--device", "tpu"), "unknown device 'tpu'", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_error_cuda_without_cuda(tmp_path, capsys):
    refused(capsys, ["evaluate", "protonet-omniglot", "--device", "cuda"], "no CUDA GPU", "use cpu")


def test_error_out_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    refused(capsys, argv(tmp_path / "f"), "is a file")


def test_error_out_cannot_be_written(capsys):
    refused(capsys, argv(f"{UNWRITABLE}/run"), "cannot write", "--out")


def test_error_save_as_unwritable_is_found_before_training(tmp_path, capsys):
    refused(capsys, argv(tmp_path / "r", "--save-as", f"{UNWRITABLE}/m.pt"), "--save-as", "writable")
    assert not (tmp_path / "r" / "last.pt").exists(), "nothing trained"


def test_error_save_as_is_a_folder(tmp_path, capsys):
    refused(capsys, argv(tmp_path / "r", "--save-as", str(tmp_path)), "is a folder", "model.pt")


def test_error_resume_with_other_ways(run_folder, capsys):
    args = argv(run_folder)
    args[args.index("--ways") + 1] = "6"
    refused(capsys, args, "ways: 5 -> 6", "--change-settings", "--no-resume")


def test_correct_resume_with_other_ways_on_purpose_is_recorded(run_folder, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run_folder, out)
    args = argv(out, "--change-settings")
    args[args.index("--ways") + 1] = "6"
    args[args.index("--steps") + 1] = "3"
    assert main(args) == 0
    from metalearn_lite.checkpoints import read_checkpoint
    last = read_checkpoint(out / "last.pt")
    assert last["task_config"]["ways"] == 6 and last["changes"][0]["changed"]["ways"] == [5, 6]
    assert "--change-settings" in last["changes"][0]["command"]


@pytest.mark.parametrize("episodes", ["-1", "0"])
def test_error_evaluate_bad_episodes(tmp_path, capsys, episodes):
    path = tmp_path / "m.pt"
    save_checkpoint(path, cli.load_pretrained("protonet-omniglot"))
    refused(capsys, ["evaluate", str(path), "--episodes", episodes, "--device", "cpu"], "episodes must be a positive")


def test_error_evaluate_damaged_checkpoint(tmp_path, capsys):
    path = tmp_path / "m.pt"
    save_checkpoint(path, cli.load_pretrained("protonet-omniglot"))
    data = bytearray(path.read_bytes())
    weight = cli.load_pretrained("protonet-omniglot").state_dict()["encoder.features.0.weight"]
    at = bytes(data).find(weight.numpy().tobytes()[:16])
    data[at] ^= 0x20
    path.write_bytes(bytes(data))
    refused(capsys, ["evaluate", str(path), "--device", "cpu"], "damaged", "restore")


def test_error_evaluate_unsafe_checkpoint(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))
    torch.save({"format": "metalearn-lite-checkpoint/2", "x": Payload()}, tmp_path / "evil.pt")
    refused(capsys, ["evaluate", str(tmp_path / "evil.pt"), "--device", "cpu"], "never loads")


def test_error_full_disk_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "r" / "best.pt"))
    monkeypatch.setattr("metalearn_lite.training.save_checkpoint", full)
    refused(capsys, argv(tmp_path / "r"), "No space left")


def test_correct_internal_error_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")
    monkeypatch.setattr(cli, "train", broken)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        main(argv(tmp_path / "r"))


def test_correct_only_rank_zero_speaks(tmp_path, monkeypatch, capsys):
    def fake_train(method, tasks, val_tasks, cfg, **kwargs):
        return TrainResult(Path(kwargs["out_dir"]), step=2, best_val=-float("inf"))
    monkeypatch.setattr(cli, "train", fake_train)
    monkeypatch.setenv("RANK", "1")
    assert main(argv(tmp_path / "r")) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert main(argv(tmp_path / "r")) == 0
    assert "finished at step 2" in capsys.readouterr().out


# ---------------------------------------------------------------- what a user sees (real processes)


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "metalearn_lite", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,words", [
    (["train", "protonet", "--out", "README.md", "--steps", "1"], "is a file"),
    (["evaluate", "protonet-omniglot", "--device", "tpu"], "unknown device"),
], ids=["out-is-a-file", "device-tpu"])
def test_error_cli_process_prints_one_line_and_exits_2(args, words):
    done = run_module(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_correct_ctrl_c_outside_training_exits_130_without_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "evaluate", interrupted)
    path = checkpoint_dir() / "protonet-omniglot.pt"
    assert main(["evaluate", str(path), "--device", "cpu", "--episodes", "2"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
