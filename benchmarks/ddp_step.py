"""Time per distributed meta-step: one process against two (torch.distributed, DDP), same total meta-batch.

Each configuration runs in fresh processes (gloo on the CPU, nccl on CUDA) that draw their share of a meta-batch
of ``--tasks`` Omniglot 5-way 1-shot 15-query tasks, run the method's meta-loss under ``DistributedDataParallel``,
backward (gradients averaged across the processes) and an Adam step.  Rank 0 reports the median step time after
``--warmup`` untimed steps, and the time of the gradient all-reduce alone (the same gradients, summed across the
processes, timed on their own): the communication overhead.  On the CPU the cores are split between the
processes (``torch.set_num_threads(cores / processes)``), so on a 2-core machine no speed-up is expected:
the point is that it runs, and what the communication costs.

    python benchmarks/ddp_step.py                      # ProtoNet and MAML, 1 and 2 processes, CPU (~3 minutes)
    python benchmarks/ddp_step.py --device cuda        # one GPU per process (1 process on a 1-GPU machine)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import metalearn_lite as ml
from metalearn_lite.distributed import wrap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(kind: str) -> ml.EpisodicMethod:
    torch.manual_seed(0)
    if kind == "protonet":
        return ml.ProtoNet()
    return ml.MAML(ways=5, inner_lr=0.4, inner_steps=1)  # second order, tasks in a loop


def worker(rank: int, world: int, port: int, kind: str, tasks: int, steps: int, warmup: int, device: str,
           queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = device == "cuda"
    dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if not cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    try:
        method = build(kind).to(dev).train()
        model = wrap(method, dev)
        opt = torch.optim.Adam(method.parameters(), 1e-3)
        data = ml.omniglot_split("train", rotations=True).images
        sampler = ml.EpisodeSampler(data, ways=5, shots=1, queries=15, seed=rank, device=dev)
        step_ms, comm_ms = [], []
        for i in range(warmup + steps):
            batch = sampler.sample(tasks // world)
            dist.barrier()
            sync()
            t = time.perf_counter()
            loss, _ = model(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
            dist.barrier()
            elapsed = time.perf_counter() - t
            grads = [p.grad for p in method.parameters() if p.grad is not None]
            sync()
            t = time.perf_counter()
            for g in grads:  # the all-reduce DDP did inside backward, on its own
                dist.all_reduce(g.clone())
            sync()
            comm = time.perf_counter() - t
            if i >= warmup:
                step_ms.append(1e3 * elapsed)
                comm_ms.append(1e3 * comm)
        if rank == 0:
            queue.put((statistics.median(step_ms), statistics.median(comm_ms)))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=8, help="tasks per meta-step, in all (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--kinds", default="protonet,maml", help="methods to time, comma-separated")
    args = parser.parse_args()
    worlds = [1, 2] if args.device == "cpu" else sorted({1, torch.cuda.device_count()})
    ctx = mp.get_context("spawn")
    print(f"torch {torch.__version__}, device {args.device}, {os.cpu_count()} cores; meta-batch of {args.tasks} "
          f"5-way 1-shot 15-query Omniglot tasks in all; median of {args.steps} steps after {args.warmup}\n")
    print(f"{'method':9s} {'processes':>9s} {'tasks each':>10s} | {'ms / step':>9s} {'all-reduce ms':>13s} "
          f"{'comm share':>10s} | {'vs 1 process':>12s}")
    for kind in args.kinds.split(","):
        base = None
        for world in worlds:
            queue = ctx.SimpleQueue()
            mp.start_processes(worker, args=(world, free_port(), kind, args.tasks, args.steps, args.warmup,
                                             args.device, queue), nprocs=world, start_method="spawn")
            step, comm = queue.get()
            base = base or step
            print(f"{kind:9s} {world:9d} {args.tasks // world:10d} | {step:9.1f} {comm:13.2f} {comm / step:10.1%} | "
                  f"{step / base:11.2f}x", flush=True)


if __name__ == "__main__":
    main()
