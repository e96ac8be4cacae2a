"""GPU-side augmentation: whole batches transformed on the device, no per-image Python.

``Trainer(augment=fn)`` calls ``fn(batch) -> batch`` on training batches only. The augmenters here
accept a whole batch — ``(x, y, ...)`` or, for detection, ``(images, targets)`` — and, for
convenience, a bare image tensor ``(N, C, H, W)``. Each draws from its own seeded generator on the
batch's device.

- :class:`RandomCropFlip`: the standard CIFAR recipe of He et al. (2015): pad 4 pixels, take a
  random 32×32 crop, flip horizontally with probability ½.
- :class:`RandomHorizontalFlip`: flip images with probability ``p`` and move their boxes and
  masks with them (detection, instance segmentation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["RandomCropFlip", "RandomHorizontalFlip"]


class _Seeded:
    """One seeded generator per device, so the same seed gives the same draws on that device."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._gen: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._gen:
            self._gen[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen[device]


def _images(batch: Any, who: str) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"{who} wants a batch (N, C, H, W) or a tuple whose first item is one; got {shape}"
        )
    return x


def _rebuild(batch: Any, x: torch.Tensor, *rest: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return x
    return type(batch)((x, *rest, *batch[1 + len(rest) :]))


class RandomCropFlip(_Seeded):
    """Random crop after zero padding, then random horizontal flip, of ``batch[0]`` (or a bare
    image tensor); the rest of the batch (labels) passes through unchanged."""

    def __init__(self, padding: int = 4, flip: bool = True, seed: int = 0) -> None:
        super().__init__(seed)
        self.padding, self.flip = padding, flip

    def __call__(self, batch: Any) -> Any:
        x = _images(batch, "RandomCropFlip")
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
        return _rebuild(batch, x)


class RandomHorizontalFlip(_Seeded):
    """Flip each image left-right with probability ``p``, moving its targets with it.

    For ``(images, targets)`` (targets a list of dicts, one per image) a flipped image's ``boxes``
    ``x1, y1, x2, y2`` become ``W - x2, y1, W - x1, y2`` and its ``masks`` ``(k, H, W)`` are
    flipped too; new target dicts are returned (the inputs are not changed). For ``(x, y)``
    classification batches and bare tensors only the images flip.
    """

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        super().__init__(seed)
        self.p = p

    def __call__(self, batch: Any) -> Any:
        x = _images(batch, "RandomHorizontalFlip")
        flip = torch.rand(len(x), device=x.device, generator=self._generator(x.device)) < self.p
        out = torch.where(flip[:, None, None, None], x.flip(3), x)
        if isinstance(batch, torch.Tensor) or len(batch) < 2 or not _is_targets(batch[1]):
            return _rebuild(batch, out)
        targets, width = batch[1], x.shape[-1]
        if len(targets) != len(x):
            raise ValueError(f"{len(x)} images but {len(targets)} target dicts")
        flipped = [bool(f) for f in flip.tolist()]  # one small host read per batch
        new = []
        for t, f in zip(targets, flipped, strict=True):
            t = dict(t)
            if f:
                b = t["boxes"]
                t["boxes"] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1)
                if "masks" in t:
                    t["masks"] = t["masks"].flip(-1)
            new.append(t)
        return _rebuild(batch, out, new)


def _is_targets(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) and all(isinstance(t, dict) for t in obj) and len(obj) > 0
