"""A meta-batch's tasks on worker threads (``batching="threads"``): one core per task instead of per operation.

A Conv-4 task of a few-shot meta-batch is small (a 5-way 1-shot support set is 5 images of 28x28), so on a
CPU most of its operations are too small to split well over the cores, which is what PyTorch's intra-op
threads do: at every operation the cores wait for each other.  ``batching="threads"`` splits the meta-batch
instead: ``W`` worker threads (``W = torch.get_num_threads()``, the cores PyTorch was told to use) each take a
contiguous share of the tasks, one after another, with one intra-op thread each.  PyTorch's operators release
Python's GIL, so the workers compute at the same time.

``torch.func.functional_call`` puts the weights it is given into the module while it runs, so two threads must
not call it on one module: in a worker, :func:`worker_net` gives that worker's own copy of the network
(``copy.deepcopy``, made once per call of :func:`run_chunks`), which the inner loop calls with the original's
weights, so that gradients reach the original parameters and the copy's own tensors are never read.

Results come back in task order and are combined in a fixed order, so a step gives the same result for the same
inputs and thread count; it differs from ``batching="loop"`` by float rounding only (one intra-op thread per
task instead of several).  Randomness inside the network's forward (dropout) is refused: tasks running at once
would draw from one generator in an order that changes from run to run.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import torch
from torch import nn

R = TypeVar("R")

_local = threading.local()
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (process id, workers): a forked child makes its own
_pools_lock = threading.Lock()


def in_worker() -> bool:
    """Whether the calling thread is running a share of a meta-batch's tasks."""
    return getattr(_local, "copies", None) is not None


def worker_net(net: nn.Module) -> nn.Module:
    """The calling worker's own copy of ``net`` (``net`` itself outside a worker)."""
    copies = getattr(_local, "copies", None)
    if copies is None:
        return net
    if id(net) not in copies:  # the original is kept so that its id stays its own; a copy is its own copy
        mine = copy.deepcopy(net)
        copies[id(net)], copies[id(mine)] = (net, mine), (mine, mine)
    return copies[id(net)][1]


def worker_count(count: int) -> int:
    """How many workers share ``count`` tasks: ``torch.get_num_threads()``, at most one per task."""
    return max(1, min(torch.get_num_threads(), count))


def check_threads(net: nn.Module, device: torch.device) -> None:
    """``ValueError`` where worker threads would be slower or not reproducible: a GPU (one stream runs the
    kernels one after another anyway; use ``"vmap"``), or a network that draws random numbers (dropout)."""
    if torch.device(device).type != "cpu":
        raise ValueError(f"batching='threads' runs tasks on CPU cores; on {torch.device(device).type} use "
                         "batching='vmap' or 'loop'")
    random = [name or type(net).__name__ for name, m in net.named_modules()
              if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    if random:
        raise ValueError(f"batching='threads' would draw the dropout masks of {random[0]} for tasks running at "
                         "once from one random generator, in an order that changes from run to run; use "
                         "batching='loop' (or a network without dropout)")


def _pool(workers: int) -> ThreadPoolExecutor:
    key = os.getpid(), workers
    with _pools_lock:
        if key not in _pools:  # each worker computes with one intra-op thread (set in the worker only)
            _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="metalearn-task",
                                             initializer=torch.set_num_threads, initargs=(1,))
        return _pools[key]


def _share(work: Callable[[int, int], R], start: int, stop: int, grad: bool, inference: bool) -> R:
    _local.copies = {}
    try:  # autograd's modes are per thread: the caller's hold here too
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return work(start, stop)
    finally:
        _local.copies = None


def run_chunks(count: int, work: Callable[[int, int], R]) -> list[R]:
    """``work(start, stop)`` for contiguous shares ``[start, stop)`` of ``range(count)``, one per worker, in order.

    With one worker (one thread, or one task), or when called from a worker, ``work(0, count)`` runs here.
    Every share finishes before an error of the first failing share is raised.
    """
    workers = worker_count(count)
    if workers == 1 or in_worker():
        return [work(0, count)]
    bounds = [count * k // workers for k in range(workers + 1)]
    modes = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    futures = [_pool(workers).submit(_share, work, a, b, *modes) for a, b in zip(bounds, bounds[1:])]
    wait(futures)
    return [f.result() for f in futures]


def run_tasks(count: int, one: Callable[[int], R]) -> list[R]:
    """``one(i)`` for every task ``i < count`` on the workers (:func:`run_chunks`), in task order."""
    return [r for share in run_chunks(count, lambda a, b: [one(i) for i in range(a, b)]) for r in share]
