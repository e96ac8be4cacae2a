"""Dropout (Srivastava, Hinton et al. 2014): zero each unit with probability p while training and
scale the survivors by 1/(1 − p), so the expected activation is unchanged and evaluation needs no change."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["dropout", "Dropout"]


def dropout(
    x: torch.Tensor, p: float = 0.5, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = torch.rand(x.shape, device=x.device, generator=generator) >= p  # mask ~ Bernoulli(1 − p)
    return x * keep / (1.0 - p)


class Dropout(nn.Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
