"""LeNet-5 — LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11). Test error on MNIST: 0.95 % (0.8 % with distortions).

The paper's layers, on 32×32 inputs (MNIST's 28×28 padded by 2):
C1 6@28×28 (5×5 conv) → S2 6@14×14 (subsampling) → C3 16@10×10 (5×5, *partial* connection table)
→ S4 16@5×5 → C5 120 (5×5 conv) → F6 84 → 10 outputs. Squashing: f(a) = 1.7159·tanh(2a/3).
The paper's output layer is 10 Euclidean RBF units; we use a linear layer with softmax
cross-entropy, as every modern reimplementation does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelInfo, register

__all__ = ["LeNet5", "C3_TABLE"]

# Table I of the paper: which of S2's 6 maps feed each of C3's 16 maps (rows: C3 maps).
C3_TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [0, 4, 5], [0, 1, 5],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [0, 3, 4, 5], [0, 1, 4, 5], [0, 1, 2, 5],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]  # fmt: skip


def scaled_tanh(a: torch.Tensor) -> torch.Tensor:
    return 1.7159 * torch.tanh(2.0 * a / 3.0)  # f(a) = A tanh(S a), A = 1.7159, S = 2/3


class Subsampling(nn.Module):
    """S2/S4: the sum of each 2×2 window times a trainable coefficient, plus a trainable bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.full((channels,), 0.25))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(x, 2) * 4  # Σ over the 2×2 window
        return s * self.coef.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


@register
class LeNet5(nn.Module):
    """LeNet-5 with the paper's sizes, subsampling layers, scaled tanh and C3 connection table."""

    MODEL_INFO = ModelInfo(
        name="LeNet-5",
        paper="Gradient-based learning applied to document recognition",
        authors="Yann LeCun, Léon Bottou, Yoshua Bengio and Patrick Haffner",
        year=1998,
        module="02-CNN-Revolution",
        category="cnn",
        key_innovations=(
            "convolution: local receptive fields with shared weights detect a feature anywhere",
            "subsampling for tolerance to small shifts and distortions",
            "end-to-end gradient-based training from pixels to classes",
        ),
        limitations=(
            "small capacity: built for 32x32 grey digits, not natural images",
            "saturating tanh units train slowly compared with ReLU",
        ),
        paper_result="MNIST test error 0.95% (0.8% with distortions)",
        url="https://doi.org/10.1109/5.726791",
    )

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        partial_c3: bool = True,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.c1 = conv(in_channels, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = conv(6, 16, 5)
        mask = torch.zeros(16, 6, 1, 1)
        for o, inputs in enumerate(C3_TABLE):
            mask[o, inputs] = 1.0
        self.register_buffer("c3_mask", mask if partial_c3 else torch.ones(16, 6, 1, 1))
        self.s4 = Subsampling(16)
        self.c5 = conv(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, num_classes)

    @classmethod
    def for_data(cls, bundle, **kwargs) -> LeNet5:
        return cls(num_classes=bundle.num_classes, in_channels=bundle.x_train.shape[1], **kwargs)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output, named as in the paper's Figure 2 (C1, S2, C3, S4, C5, F6, output),
        each squashed by the model's own f(a) = 1.7159 tanh(2a/3) — ``forward`` is this, too."""
        if x.shape[-1] == 28:
            x = F.pad(x, (2, 2, 2, 2))  # the paper's 32×32 input: MNIST digits with a margin
        maps = {"C1": scaled_tanh(self.c1(x))}
        maps["S2"] = scaled_tanh(self.s2(maps["C1"]))
        w3 = self.c3.weight * self.c3_mask  # C3 sees only the S2 maps its row of Table I lists
        c3 = (
            F.conv2d(maps["S2"], w3, self.c3.bias)
            if isinstance(self.c3, nn.Conv2d)
            else _masked(self.c3, maps["S2"], w3)
        )
        maps["C3"] = scaled_tanh(c3)
        maps["S4"] = scaled_tanh(self.s4(maps["C3"]))
        maps["C5"] = scaled_tanh(self.c5(maps["S4"]))
        maps["F6"] = scaled_tanh(self.f6(maps["C5"].flatten(1)))
        maps["output"] = self.out(maps["F6"])
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)["output"]

    def effective_parameters(self) -> int:
        """Trainable weights actually used (C3's masked-out connections excluded): ~60,000 in the paper."""
        total = sum(p.numel() for p in self.parameters())
        return total - int((self.c3_mask == 0).sum().item()) * 25


def _masked(conv_module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    from scratchlib.nn import conv2d

    return conv2d(x, weight, conv_module.bias)
