"""Meta-training on several processes with PyTorch's own ``torch.distributed`` (DDP under ``torchrun``).

Each process (rank) draws its own share of the meta-batch, computes the meta-loss of its tasks, and
``DistributedDataParallel`` averages the gradients across the ranks before every optimiser step, so
that every rank takes the same step.  With ``W`` ranks and ``T`` tasks per step in all, each rank
draws ``T / W`` tasks, and the averaged gradient is the gradient of the mean loss over all ``T`` tasks,
as one process would compute it on the union of the ranks' tasks, provided the method's loss is a mean
over tasks that do not share statistics (a batch-statistics norm over the whole meta-batch, as in
ProtoNet's one-pass embedding, sees ``T / W`` tasks per rank instead of ``T``).

Launch::

    torchrun --nproc_per_node 2 -m metalearn_lite train protonet --out runs/ddp ...       # one machine
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m metalearn_lite train maml --out runs/ddp ...                                   # on each machine

Backend: ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), ``gloo`` on the CPU.
"""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Group:
    """This process's place: ``rank`` of ``world`` processes (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    started_here: bool = False  # this run initialised the process group (and destroys it when done)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    """True when the environment says this process is one of several (``WORLD_SIZE`` > 1, set by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(distributed: bool | None, device: torch.device | None) -> tuple[Group, torch.device | None]:
    """Join (or start) the process group when asked, or automatically under torchrun.

    Returns the group and the device this rank trains on (``cuda:LOCAL_RANK`` on CUDA).
    """
    if distributed is None:  # automatic: under torchrun, or inside a process group the caller started
        distributed = launched_by_torchrun() or (dist.is_available() and dist.is_initialized())
    if not distributed:
        return Group(), device
    if not dist.is_available():
        raise ValueError("distributed=True needs torch.distributed, which this PyTorch build lacks; train in one "
                         "process (distributed=False)")
    cuda = (device.type == "cuda") if device is not None else torch.cuda.is_available()
    started = False
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ and "TORCHELASTIC_RUN_ID" not in os.environ:
            raise ValueError("distributed=True: no process group to join; launch with torchrun "
                             "(torchrun --nproc_per_node N -m metalearn_lite train ...) or call "
                             "torch.distributed.init_process_group first")
        dist.init_process_group("nccl" if cuda else "gloo")
        started = True
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % max(torch.cuda.device_count(), 1)))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return Group(dist.get_rank(), dist.get_world_size(), started), device


def leave(group: Group, finished: bool = True) -> None:
    """Destroy the process group if this run started it.

    After a run that ``finished`` (no exception), the ranks first meet at a barrier, so that no rank tears down
    its connections while a peer still sends on them; after a failure, no collective call can be trusted, so
    the group is destroyed at once.  Objects that still hold the group (a DDP wrapper kept alive by a reference
    cycle) are collected first: left to the interpreter's exit, gloo's threads are destroyed while still
    running and the process aborts ("terminate called without an active exception") after a successful run.
    """
    if group.started_here and dist.is_initialized():
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def rank_seed(seed: int, rank: int, name: str) -> int:
    """A seed for the generator ``name`` of rank ``rank``, derived from the run's ``seed`` (stable across
    machines and Python versions)."""
    digest = hashlib.sha256(f"{seed}/{rank}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def reseed(generators: dict[str, torch.Generator], seed: int, rank: int) -> None:
    """Give each rank its own task stream: every generator re-seeded from ``(seed, rank, name)``."""
    for name, g in generators.items():
        g.manual_seed(rank_seed(seed, rank, name))


def share(tasks_per_step: int, group: Group) -> int:
    """This rank's share of a meta-batch of ``tasks_per_step`` tasks; ``ValueError`` unless it divides evenly."""
    if tasks_per_step % group.world:
        raise ValueError(f"tasks_per_step={tasks_per_step} does not split evenly over {group.world} processes; use "
                         f"a multiple of {group.world} (each process draws tasks_per_step / {group.world} tasks)")
    return tasks_per_step // group.world


class MetaLoss(nn.Module):
    """The method's meta-loss as a module's ``forward``, for ``DistributedDataParallel`` to wrap."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.method.loss(batch)


def wrap(method: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``method.loss`` under DDP: calling the result on a batch gives ``(loss, metric)``, and ``loss.backward()``
    leaves every rank with the gradient averaged over the ranks.  Keep the result alive until the backward:
    its gradient hooks go with it (``wrap(m, d)(batch)[0].backward()`` would average nothing)."""
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(MetaLoss(method), device_ids=ids)


def gather(obj: Any, group: Group) -> list[Any]:
    """Every rank's ``obj``, in rank order (one process: ``[obj]``)."""
    if not group.active:
        return [obj]
    out: list[Any] = [None] * group.world
    dist.all_gather_object(out, obj)
    return out


def agree(flag: bool, group: Group) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. "the time limit has passed")."""
    if not group.active:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def from_main(obj: Any, group: Group) -> Any:
    """Rank 0's ``obj`` on every rank (one process: ``obj``)."""
    if not group.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
