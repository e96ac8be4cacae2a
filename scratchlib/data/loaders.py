"""Loaders the Trainer can be exact and fast with (docs/seams.md, section 2).

Every built-in loader follows three rules:

1. ``len(loader)`` is the number of batches per epoch;
2. ``state_dict()`` / ``load_state_dict()`` hold the RNG state at the start of the current epoch and
   how many batches it has yielded, so a resumed run continues the interrupted epoch exactly;
3. ``loader.device`` is set when its batches already live on that device (no ``.to()`` per batch).

Under DDP (``world_size > 1``) every rank draws the same seeded permutation and takes the slice
``rank::world_size`` of each global batch: N processes see exactly the batches one process would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["TensorLoader", "StatefulLoader"]


class StatefulLoader:
    """Base for seeded loaders: epoch-start RNG state + position, for exact (mid-epoch) resume.

    Subclasses implement ``_batches(order_generator) -> Iterator`` over one epoch, drawing all their
    randomness from ``self.generator``; this class tracks the position and the state.
    """

    def __init__(self, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not (0 <= rank < world_size):
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rank, self.world_size = int(rank), int(world_size)
        self.device: torch.device | None = None
        self._epoch_start: torch.Tensor | None = None  # generator state when this epoch began
        self._position = 0  # batches yielded in the current epoch
        self._skip = 0  # batches to skip on the next epoch (after load_state_dict)

    def _epoch(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        self._epoch_start = self.generator.get_state()
        self._position = 0
        for i, batch in enumerate(self._epoch()):
            if i < skip:
                continue
            self._position = i + 1
            yield batch
        self._epoch_start, self._position = None, 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: enough to replay the rest of the current epoch exactly."""
        start = self._epoch_start if self._epoch_start is not None else self.generator.get_state()
        return {"generator": start.clone(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._skip = int(state.get("position", 0))


class TensorLoader(StatefulLoader):
    """Batches of ``(x, y)`` from tensors that already live on the device: no per-item Python.

    ``batch_size`` is the *global* batch: under DDP each rank takes its slice of it, so the learning
    rate and the results do not depend on the number of processes.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size < world_size:
            raise ValueError(
                f"batch_size {batch_size} is smaller than world_size {world_size}: "
                "every process needs at least one example of each global batch"
            )
        super().__init__(seed, rank, world_size)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.device = x.device

    def __len__(self) -> int:
        n = len(self.x) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def _epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            if self.world_size > 1:
                idx = idx[self.rank :: self.world_size]
            yield self.x[idx], self.y[idx]

    @property
    def dataset_size(self) -> int:
        return len(self.x)
