"""GPU-side augmentation: whole batches transformed on the device, no per-image Python.

The standard CIFAR recipe of He et al. (2015): pad 4 pixels, take a random 32×32 crop, flip
horizontally with probability ½.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RandomCropFlip", "Normalize", "Normalized"]


class RandomCropFlip:
    """``augment(x)`` for the Trainer: random crop after zero padding, then random horizontal flip."""

    def __init__(self, padding: int = 4, flip: bool = True, seed: int = 0) -> None:
        self.padding, self.flip, self.seed = padding, flip, seed
        self._gen: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._gen:
            self._gen[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen[device]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"RandomCropFlip wants a batch (N, C, H, W); got shape {tuple(x.shape)}"
            )
        n, c, h, w = x.shape
        g, p = self._generator(x.device), self.padding
        if p:
            xp = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), device=x.device, generator=g)
            dx = torch.randint(0, 2 * p + 1, (n,), device=x.device, generator=g)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(
                n, c, h, w + 2 * p
            )
            xp = xp.gather(2, rows)  # each image its own vertical offset
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(
                n, c, h, w
            )
            x = xp.gather(3, cols)  # ... and its own horizontal offset
        if self.flip:
            mirror = torch.rand(n, device=x.device, generator=g) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
        return x


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel, as the first layer of a model (so evaluation matches training)."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Normalized(nn.Module):
    """``model(normalize(x))``, keeping the model's own ``training_step``/``validation_step``
    (e.g. GoogLeNet's auxiliary losses) working through the wrapper."""

    def __init__(self, model: nn.Module, mean, std) -> None:
        super().__init__()
        self.norm = Normalize(mean, std)
        self.model = model
        if hasattr(model, "training_step"):
            self.training_step = lambda batch: model.training_step(
                (self.norm(batch[0]), *batch[1:])
            )
        if hasattr(model, "validation_step"):
            self.validation_step = lambda batch: model.validation_step(
                (self.norm(batch[0]), *batch[1:])
            )

    def forward(self, x: torch.Tensor):
        return self.model(self.norm(x))
