"""2-D convolution from tensor ops: unfold the input into patches (im2col), then one matrix multiply.

LeCun et al. (1989/1998) made convolution the building block of vision: the same small kernel
slides over the image (weight sharing), so a feature is detected wherever it appears.

    y[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v  w[o, c, u, v] · x[n, c, s·i + d·u − p, s·j + d·v − p]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv2d", "Conv2d", "conv_output_size"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """``⌊(size + 2p − d(k − 1) − 1) / s⌋ + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Convolution (cross-correlation, as every deep-learning library computes it) via im2col.

    x: (N, C, H, W); weight: (O, C/groups, kH, kW); returns (N, O, H', W').
    """
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"conv2d wants x (N, C, H, W) and weight (O, C/groups, kH, kW); got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    n, c, h, w = x.shape
    o, c_per_group, kh, kw = weight.shape
    if c != c_per_group * groups or o % groups:
        raise ValueError(
            f"channels do not match: input has {c}, weight expects {c_per_group} x groups={groups}, out={o}"
        )
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    oh = conv_output_size(h, kh, s[0], p[0], d[0])
    ow = conv_output_size(w, kw, s[1], p[1], d[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"kernel {kh}x{kw} (dilation {d}) does not fit a {h}x{w} input with padding {p}"
        )
    cols = F.unfold(
        x, (kh, kw), dilation=d, padding=p, stride=s
    )  # (N, C·kH·kW, L): every patch a column
    cols = cols.view(n, groups, c_per_group * kh * kw, oh * ow)
    wmat = weight.view(groups, o // groups, c_per_group * kh * kw)  # each filter a row
    out = torch.einsum("gok,ngkl->ngol", wmat, cols).reshape(n, o, oh, ow)  # y = W · cols
    if bias is not None:
        out = out + bias.view(1, o, 1, 1)
    return out


class Conv2d(nn.Module):
    """Drop-in for ``nn.Conv2d`` (same parameters, same initialisation) using :func:`conv2d`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation, self.groups = (
            (kh, kw),
            stride,
            padding,
            dilation,
            groups,
        )
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # the same default initialisation as torch.nn.Conv2d (Kaiming-uniform, a = sqrt(5))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}"
        )
