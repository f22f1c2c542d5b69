"""Peak extra memory of one first-order MAML meta-step: per-task backward, one backward, clone-per-task.

Conv-4 (64 filters, batch-statistics norm), meta-batch 32, 5-way 1-shot 15-query tasks of 28x28
images (random pixels: memory does not depend on them), 1 inner step, first order (``--second`` for
second order).  Three ways to run the same meta-step:

* ``per-task``: the package (``MAML(batching="loop")``, Conv-4's default on a CPU): each task's query
  loss is backpropagated (``torch.autograd.grad``) as soon as it is computed, so one task's graph is
  alive at a time; the summed gradient reaches ``loss.backward()`` through ``with_gradient``;
* ``one-backward``: every task's query loss kept, their mean backpropagated once at the end (every
  task's graph alive until then);
* ``clone``: the learn2learn/higher way, a patched copy of the module per task and ``backward`` per
  task (``clone_step`` of ``benchmarks/maml_step.py``).

Each (variant, round) runs alone in a fresh process, which reports its high-water mark of resident
memory (``ru_maxrss``) above what it held just before its first meta-step (two meta-steps are run), and
then, the high-water mark reset (``/proc/self/clear_refs``), that of a third meta-step alone (warm: the
one-time costs of a first call, lazily built objects and the like, already paid);
the variants' processes alternate, the order rotated every round, and the table gives medians.

The high-water mark depends on the allocator as well as on which tensors are alive.  With glibc's
defaults the mmap threshold moves up each time a large block is freed, after which blocks of that size
come from the heap, where freed memory stays resident and fragments; how much depends on the order of
allocations, not only on their sizes.  So every variant is measured twice: with glibc's defaults (what a
user's process does) and with the threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_=131072``: every
large tensor is mapped when allocated and unmapped when freed, so the high-water mark is the peak of the
live tensors).

    PYTHONPATH=. python benchmarks/maml_memory.py              # 3 rounds, ~8 minutes on 2 CPU cores
    PYTHONPATH=. python benchmarks/maml_memory.py --second --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

from metalearn_lite.algorithms import MAML
from metalearn_lite.algorithms.inner_loop import task_outputs
from metalearn_lite.episodes import Episode

VARIANTS = ("per-task", "one-backward", "clone")
#: the allocator settings every variant runs under: glibc's defaults, and a fixed mmap threshold (live tensors)
ALLOCATORS = {"glibc defaults": {}, "fixed mmap threshold (live tensors)": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def episode(tasks: int = 32, ways: int = 5, shots: int = 1, queries: int = 15, side: int = 28) -> Episode:
    g = torch.Generator().manual_seed(0)
    sx = torch.rand(tasks, ways * shots, 1, side, side, generator=g)
    qx = torch.rand(tasks, ways * queries, 1, side, side, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()
    return Episode(sx, sy, qx, qy)


def per_task_step(method: MAML, ep: Episode, opt: torch.optim.Optimizer) -> None:
    loss, _ = method.loss(ep)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def one_backward_step(method: MAML, ep: Episode, opt: torch.optim.Optimizer) -> None:
    ways = method.task_classes(ep.support_y)
    q, _, _ = task_outputs(method.net, method.start_params(ways=ways), ep.support_x, ep.support_y,
                           ep.query_x, ep.query_y, method.task_loss_for(ways), method.inner_steps, method.inner_lr,
                           method.first_order, method.trainable_names(), batching="loop")
    opt.zero_grad(set_to_none=True)
    q.mean().backward()
    opt.step()


def child(variant: str, first_order: bool) -> None:
    import os
    import resource

    from maml_step import clone_step  # same folder: the learn2learn-style baseline

    torch.manual_seed(0)
    method = MAML(ways=5, inner_lr=0.4, first_order=first_order, batching="loop", zero_head=False).train()
    ep = episode()
    opt = torch.optim.Adam(method.parameters(), 1e-3)
    step = {"per-task": per_task_step, "one-backward": one_backward_step, "clone": clone_step}[variant]
    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = resident()
    for _ in range(2):
        step(method, ep, opt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # warm: one more meta-step after resetting the high-water mark (Linux: VmHWM), one-time costs paid
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before_warm = resident()
    step(method, ep, opt)
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"extra_mb": (peak - before) / 2**20, "warm_mb": (hwm - before_warm) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--second", action="store_true", help="second-order MAML instead of first-order")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, not args.second)
        return
    order = "second" if args.second else "first"
    print(f"Conv-4 MAML, {order} order, meta-batch 32, 5-way 1-shot 15-query 28x28, 1 inner step, CPU; "
          f"peak extra resident memory per process (2 meta-steps), median of {args.rounds} rounds:")
    for allocator, env in ALLOCATORS.items():
        got: dict[str, dict[str, list[float]]] = {k: {v: [] for v in VARIANTS} for k in ("extra_mb", "warm_mb")}
        for r in range(args.rounds):
            for v in VARIANTS[r % 3:] + VARIANTS[: r % 3]:
                cmd = [sys.executable, __file__, "--child", v] + (["--second"] if args.second else [])
                out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                     env={**os.environ, **env}).stdout
                result = json.loads(out.strip().splitlines()[-1])
                for k in got:
                    got[k][v].append(result[k])
        for k, what in (("extra_mb", "first two meta-steps"), ("warm_mb", "third meta-step alone (warm)")):
            med = {v: statistics.median(x) for v, x in got[k].items()}
            print(f" {allocator}, {what}:")
            for v in VARIANTS:
                print(f"  {v:13s} {med[v]:8.1f} MB   {med[v] / med['clone']:6.3f}x clone   "
                      f"{med[v] / med['one-backward']:5.2f}x one-backward   "
                      f"(runs: {', '.join(f'{x:.1f}' for x in got[k][v])})")


if __name__ == "__main__":
    main()
