"""Distributed meta-training with torch.distributed (gloo on the CPU, two processes): the averaged gradient of
one step equals one process's gradient on the union of the ranks' tasks; a two-process run saves and resumes
to the same weights as an uninterrupted one; the CLI trains under torchrun unchanged."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import metalearn_lite as ml
from metalearn_lite.checkpoints import read_checkpoint
from metalearn_lite.distributed import Group, leave, rank_seed, share, wrap

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="this PyTorch build has no torch.distributed with gloo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def make_method(kind: str) -> ml.EpisodicMethod:
    torch.manual_seed(0)
    if kind == "protonet":  # no normalisation: a task's embedding does not depend on the other tasks
        return ml.ProtoNet(ml.Conv4(hidden=8, norm="none")).double()
    return ml.MAML(ml.Conv4(1, 4, "batch", out_features=3, image_size=16), ways=3, inner_lr=0.3, inner_steps=2,
                   batching="loop").double()  # second order


def union_batch(kind: str) -> ml.Episode:
    g = torch.Generator().manual_seed(7)
    side = 28 if kind == "protonet" else 16
    x = torch.rand(8, 5, 1, side, side, generator=g, dtype=torch.float64)
    return ml.EpisodeSampler(x, ways=3, shots=2, queries=2, seed=3).sample(4)


def part(ep: ml.Episode, rank: int, world: int) -> ml.Episode:
    n = ep.num_tasks // world
    sl = slice(rank * n, (rank + 1) * n)
    return ml.Episode(ep.support_x[sl], ep.support_y[sl], ep.query_x[sl], ep.query_y[sl])


def grad_worker(rank: int, world: int, port: int, kind: str, out: str) -> None:
    join_env(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    finished = False
    try:
        method = make_method(kind).train()
        model = wrap(method, torch.device("cpu"))  # held until backward: DDP's gradient hooks live on it
        loss, _ = model(part(union_batch(kind), rank, world))
        loss.backward()
        if rank == 0:
            torch.save([p.grad for p in method.parameters() if p.requires_grad], out)
        del model, loss
        finished = True
    finally:  # the package's own way out: free the DDP wrapper and the group while the interpreter is alive
        leave(Group(rank, world, started_here=True), finished=finished)


@pytest.mark.parametrize("kind", ["protonet", "maml"])
def test_one_distributed_step_averages_to_the_union_gradient(kind, tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(grad_worker, args=(2, free_port(), kind, out), nprocs=2, join=True)
    distributed = torch.load(out)
    method = make_method(kind).train()
    loss, _ = method.loss(union_batch(kind))
    loss.backward()
    single = [p.grad for p in method.parameters() if p.requires_grad]
    assert len(single) == len(distributed)
    for a, b in zip(distributed, single):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the gradient of one rank alone is not the union's: the averaging did the work
    alone = make_method(kind).train()
    alone.loss(part(union_batch(kind), 0, 2))[0].backward()
    assert any(not torch.allclose(p.grad, q, atol=1e-6) for p, q in
               zip((p for p in alone.parameters() if p.requires_grad), single))


def train_worker(rank: int, world: int, port: int, out_dir: str, steps: int) -> None:
    join_env(rank, world, port)
    g = torch.Generator().manual_seed(11)
    x = torch.rand(10, 4, 1, 28, 28, generator=g)
    torch.manual_seed(0)  # the same initial weights in both runs (DDP then copies rank 0's to every rank)
    method = ml.ProtoNet(ml.Conv4(hidden=8, norm="none"))
    tasks = ml.EpisodeSampler(x[:7], ways=3, shots=1, queries=2, seed=0)
    val = ml.EpisodeSampler(x[7:], ways=3, shots=1, queries=2, seed=1)
    result = ml.train(method, tasks, val, steps=steps, tasks_per_step=4, val_every=2, save_every=2, val_episodes=3,
                      out_dir=out_dir, progress=False, distributed=True)
    torch.save({"best_val": result.best_val, "history": len(result.history)}, f"{out_dir}/result{rank}.pt")


def test_two_process_run_saves_and_resumes_to_the_uninterrupted_weights(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    mp.spawn(train_worker, args=(2, free_port(), str(straight), 6), nprocs=2, join=True)
    mp.spawn(train_worker, args=(2, free_port(), str(resumed), 3), nprocs=2, join=True)  # stops at step 3
    assert read_checkpoint(resumed / "last.pt")["step"] == 3
    mp.spawn(train_worker, args=(2, free_port(), str(resumed), 6), nprocs=2, join=True)  # resumes at step 3
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(resumed / "last.pt")
    assert a["step"] == b["step"] == 6 and a["rng_ranks"] == 2 and len(a["rng"]) == 2
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    # each rank drew its own tasks: their random streams differ
    assert not torch.equal(a["rng"][0]["generator"], a["rng"][1]["generator"])
    assert [h["step"] for h in a["history"]] == [2, 4, 6] and (straight / "best.pt").is_file()
    # every rank returns rank 0's validation (rank 1 never validates; it once reported -inf)
    r0, r1 = (torch.load(straight / f"result{r}.pt") for r in (0, 1))
    assert r0 == r1 and r0["history"] == 3 and r0["best_val"] == a["best_val"] > 0
    # a two-process last.pt cannot be resumed by one process
    with pytest.raises(ValueError, match="2 process"):
        ml.train(ml.ProtoNet(ml.Conv4(hidden=8, norm="none")), ml.EpisodeSampler(torch.rand(4, 3, 1, 28, 28),
                 ways=3, shots=1, queries=1), steps=7, out_dir=straight, progress=False)


def test_the_meta_batch_must_split_evenly_and_seeds_differ_by_rank():
    assert share(8, Group(0, 2)) == 4 and share(5, Group()) == 5
    with pytest.raises(ValueError, match="does not split evenly over 2 processes"):
        share(5, Group(1, 2))
    assert rank_seed(0, 0, "sampler") != rank_seed(0, 1, "sampler") == rank_seed(0, 1, "sampler")


def test_distributed_without_a_process_group_says_how_to_launch(monkeypatch, tmp_path):
    for var in ("MASTER_ADDR", "TORCHELASTIC_RUN_ID", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="launch with torchrun"):
        ml.train(ml.ProtoNet(ml.Conv4(hidden=8)), ml.EpisodeSampler(torch.rand(4, 3, 1, 28, 28), ways=3, shots=1,
                 queries=1), steps=1, out_dir=tmp_path, progress=False, distributed=True)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_cli_trains_under_torchrun_unchanged(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "metalearn_lite", "train",
           "protonet", "--out", str(tmp_path / "run"), "--steps", "2", "--tasks", "2", "--ways", "5", "--shots", "1",
           "--queries", "2", "--hidden", "8", "--val-every", "2", "--val-episodes", "3", "--no-progress",
           "--device", "cpu", "--set", "rotations=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("finished at step 2") == 1  # only rank 0 speaks (and wrote the files)
    assert "-inf" not in proc.stdout
    blob = read_checkpoint(tmp_path / "run" / "last.pt")
    assert blob["rng_ranks"] == 2 and blob["step"] == 2
