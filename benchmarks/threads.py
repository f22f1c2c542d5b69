"""How many threads should a training step use?  Each workload's step timed at 1 and at N threads, side by side.

The package leaves PyTorch's thread count as it is (``torch.get_num_threads()``, by default one per core);
this script measures whether that is the right choice for the course's workloads on this machine, in one
process, interleaved (round ``r`` runs one step of every (workload, thread count) pair, in an order rotated
every round, so the machine's drift reaches all alike), after untimed warm-up steps:

* ``protonet``: ProtoNet's training step at the ``protonet-omniglot`` recipe's shape (60-way 1-shot 5-query);
* ``maml loop``: a MAML Conv-4 meta-step (5-way 1-shot 15-query, meta-batch 32, one inner step, second order,
  meta-learned head as the recipes train it), tasks one after another, each operation on all threads;
* ``maml threads``: the same meta-step with ``batching="threads"``: at N threads, N workers with one thread each
  (at 1 thread it is the loop).

It prints each median and the ratio 1 thread / N threads (above 1: more threads are faster), and for MAML the
loop at N threads against ``threads`` at N.

    python benchmarks/threads.py                  # N = os.cpu_count(); ~5 minutes on 2 cores
    python benchmarks/threads.py --threads 4 --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import metalearn_lite as ml
from metalearn_lite.algorithms import MAML, ProtoNet


def protonet_step() -> Callable[[], None]:
    data = ml.omniglot_split("train", rotations=True).images
    episode = ml.EpisodeSampler(data, ways=60, shots=1, queries=5, seed=0).sample(1)
    torch.manual_seed(0)
    method = ProtoNet().train()
    opt = torch.optim.Adam(method.parameters(), 1e-3)
    return lambda: step(method, opt, episode)


def maml_step(batching: str, first_order: bool = False) -> Callable[[], None]:
    data = ml.omniglot_split("train", rotations=True).images
    episode = ml.EpisodeSampler(data, ways=5, shots=1, queries=15, seed=0).sample(32)
    torch.manual_seed(0)
    method = MAML(ways=5, inner_lr=0.4, zero_head=False, first_order=first_order, batching=batching).train()
    opt = torch.optim.Adam(method.parameters(), 1e-3)
    return lambda: step(method, opt, episode)


def step(method: torch.nn.Module, opt: torch.optim.Optimizer, episode) -> None:
    loss, _ = method.loss(episode)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="N, compared with 1")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per pair (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    before = torch.get_num_threads()
    ml.tune_for_training()
    workloads = {"protonet": protonet_step(), "maml loop": maml_step("loop"), "maml threads": maml_step("threads")}
    pairs = [(w, n) for w in workloads for n in (1, args.threads)]
    times: dict[tuple[str, int], list[float]] = {p: [] for p in pairs}
    for r in range(args.warmup + args.repeats):
        for w, n in pairs[r % len(pairs):] + pairs[: r % len(pairs)]:
            torch.set_num_threads(n)
            t = time.perf_counter()
            workloads[w]()
            if r >= args.warmup:
                times[(w, n)].append(1e3 * (time.perf_counter() - t))
    torch.set_num_threads(before)
    med = {p: statistics.median(v) for p, v in times.items()}
    n = args.threads
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, median of {args.repeats} interleaved steps")
    print(f"{'workload':14s} {'1 thread ms':>12s} {f'{n} threads ms':>14s} {f'1 / {n}':>8s}")
    for w in workloads:
        print(f"{w:14s} {med[(w, 1)]:12.1f} {med[(w, n)]:14.1f} {med[(w, 1)] / med[(w, n)]:7.2f}x")
    print(f"maml at {n} threads: loop / threads = {med[('maml loop', n)] / med[('maml threads', n)]:.2f}x")


if __name__ == "__main__":
    main()
