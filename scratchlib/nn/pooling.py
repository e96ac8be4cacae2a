"""Max and average pooling from tensor ops (unfold the windows, reduce each)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv import _pair, conv_output_size

__all__ = ["max_pool2d", "avg_pool2d", "MaxPool2d", "AvgPool2d"]


def _windows(
    x: torch.Tensor, kernel, stride, padding, pad_value: float
) -> tuple[torch.Tensor, int, int]:
    n, c, h, w = x.shape
    k, s, p = _pair(kernel), _pair(stride if stride is not None else kernel), _pair(padding)
    oh, ow = conv_output_size(h, k[0], s[0], p[0]), conv_output_size(w, k[1], s[1], p[1])
    if p != (0, 0):
        x = F.pad(x, (p[1], p[1], p[0], p[0]), value=pad_value)
    cols = F.unfold(x, k, stride=s)  # (N, C·kH·kW, L)
    return cols.view(n, c, k[0] * k[1], oh * ow), oh, ow


def max_pool2d(x: torch.Tensor, kernel_size, stride=None, padding=0) -> torch.Tensor:
    """The largest value in each window: y = max_{u,v} x[s·i + u, s·j + v]."""
    cols, oh, ow = _windows(x, kernel_size, stride, padding, float("-inf"))
    return cols.max(dim=2).values.view(x.shape[0], x.shape[1], oh, ow)


def avg_pool2d(x: torch.Tensor, kernel_size, stride=None, padding=0) -> torch.Tensor:
    """The mean of each window (zero padding counted, as torch's default ``count_include_pad``)."""
    cols, oh, ow = _windows(x, kernel_size, stride, padding, 0.0)
    return cols.mean(dim=2).view(x.shape[0], x.shape[1], oh, ow)


class MaxPool2d(nn.Module):
    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding)
