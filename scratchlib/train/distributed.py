"""Several processes, one result: the Trainer under ``torchrun`` (PyTorch's own DDP, nothing home-made).

``torchrun --nproc_per_node N script.py`` starts N copies of the script and sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``. :func:`setup` reads them, joins the process group (NCCL on CUDA,
gloo on the CPU) and picks this process's device; the Trainer then wraps the model in
``DistributedDataParallel``, gives every rank its slice of each global batch, and lets rank 0 alone
write facts, checkpoints, wandb and progress bars. See docs/distributed.md.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "setup", "all_reduce_sum", "barrier"]


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on this node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes facts, checkpoints and progress."""
        return self.rank == 0


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else a world of one.

    On CUDA each process takes the GPU ``cuda:LOCAL_RANK``. Idempotent: a second call (a second
    ``fit``) reuses the group.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return world, device


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of ``t`` over every process (``t`` itself in a world of one)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
