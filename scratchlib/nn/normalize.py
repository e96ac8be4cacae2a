"""Input normalisation as the first layer of a model, so evaluation always matches training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Normalize", "Normalized"]


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel of an image batch ``(N, C, H, W)``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"one mean and one std per channel: got {len(mean)} and {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Normalized(nn.Module):
    """``model(normalize(x))``, keeping the model's own ``training_step(batch, batch_idx)`` /
    ``validation_step(batch, batch_idx)`` (e.g. GoogLeNet's auxiliary losses) working through the
    wrapper: they receive the batch with ``batch[0]`` normalised."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.norm = Normalize(mean, std)
        self.model = model
        # Instance attributes, so a wrapper of a model without its own step has none either.
        for hook in ("training_step", "validation_step"):
            if hasattr(model, hook):
                setattr(self, hook, self._pass_through(getattr(model, hook)))

    def _pass_through(self, step: Any) -> Any:
        def normalised_step(batch: Any, batch_idx: int) -> Any:
            if not isinstance(batch, (tuple, list)):
                raise TypeError("Normalized expects batches (x, y, ...) with images first")
            return step((self.norm(batch[0]), *batch[1:]), batch_idx)

        return normalised_step

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(self.norm(x))
