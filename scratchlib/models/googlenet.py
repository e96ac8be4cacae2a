"""GoogLeNet (Inception v1) — Szegedy et al. (2014), "Going deeper with convolutions", CVPR 2015.
ILSVRC-2014 winner: top-5 error 6.67 % with about 6.8M parameters — 12x fewer than AlexNet.

An Inception module runs 1×1, 3×3 and 5×5 convolutions and a 3×3 max-pool side by side and
concatenates them; **1×1 "reduction" convolutions** shrink the channels before the expensive 3×3 and
5×5 ones, which is what keeps the network cheap. Two auxiliary classifiers (after 4a and 4d) add
gradient signal to the middle of the 22-layer network during training (weight 0.3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn import LocalResponseNorm

from . import ModelInfo, register

__all__ = ["GoogLeNet", "Inception", "INCEPTION_CONFIGS"]

# (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) — Table 1 of the paper
INCEPTION_CONFIGS = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class ConvUnit(nn.Module):
    """conv → (batch norm) → ReLU. The paper has no batch norm (it came a year later)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool = False,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        self.conv = conv(c_in, c_out, k, stride=stride, padding=padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(self.bn(x) if self.bn is not None else x, inplace=True)


class Inception(nn.Module):
    """Four parallel branches, concatenated along channels."""

    def __init__(
        self,
        c_in: int,
        n1: int,
        r3: int,
        n3: int,
        r5: int,
        n5: int,
        pool_proj: int,
        reduce: bool = True,
        batch_norm: bool = False,
        branch5_kernel: int = 5,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        u = lambda a, b, k, p=0: ConvUnit(a, b, k, padding=p, batch_norm=batch_norm, conv=conv)  # noqa: E731
        self.b1 = u(c_in, n1, 1)
        if reduce:  # 1x1 reductions before the expensive convolutions
            self.b3 = nn.Sequential(u(c_in, r3, 1), u(r3, n3, 3, 1))
            self.b5 = nn.Sequential(u(c_in, r5, 1), u(r5, n5, branch5_kernel, branch5_kernel // 2))
            self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), u(c_in, pool_proj, 1))
        else:  # the "naive" module of Figure 2(a): no reductions, the pool branch keeps all channels
            self.b3 = u(c_in, n3, 3, 1)
            self.b5 = u(c_in, n5, branch5_kernel, branch5_kernel // 2)
            self.bp = nn.MaxPool2d(3, 1, 1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class AuxClassifier(nn.Module):
    """5×5/3 average pool → 1×1 conv 128 → FC 1024 → dropout 0.7 → FC classes."""

    def __init__(
        self,
        c_in: int,
        num_classes: int,
        batch_norm: bool,
        conv: Callable[..., nn.Module],
        width: float = 1.0,
    ) -> None:
        super().__init__()
        c, f = max(4, round(128 * width)), max(8, round(1024 * width))
        self.conv = ConvUnit(c_in, c, 1, batch_norm=batch_norm, conv=conv)
        self.fc1 = nn.Linear(c * 4 * 4, f)
        self.fc2 = nn.Linear(f, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, 4))
        x = F.dropout(F.relu(self.fc1(x.flatten(1)), inplace=True), 0.7, self.training)
        return self.fc2(x)


@register
class GoogLeNet(nn.Module):
    """GoogLeNet. ``small_input=True`` swaps the 224-px stem for one 3×3 conv (CIFAR-size images);
    ``stem_stride=2`` adds a 3×3/2 max-pool after it, so the Inception stages see 16/8/4-pixel maps
    instead of 32/16/8 (a quarter of the cost, like the paper's stem that shrinks 224 to 28).

    ``batch_norm=True, branch5_kernel=3`` reproduces torchvision's layout (it uses batch norm and,
    for weight compatibility, 3×3 kernels in the "5×5" branch), so parameter counts match exactly.
    In training mode with ``aux=True`` the forward pass returns ``(logits, aux1, aux2)``.
    """

    MODEL_INFO = ModelInfo(
        name="GoogLeNet (Inception v1)",
        paper="Going deeper with convolutions",
        authors="Christian Szegedy, Wei Liu, Yangqing Jia, Pierre Sermanet, Scott Reed, Dragomir Anguelov, Dumitru Erhan, Vincent Vanhoucke and Andrew Rabinovich",
        year=2014,
        module="02-CNN-Revolution",
        category="cnn",
        key_innovations=(
            "Inception modules: parallel 1x1, 3x3, 5x5 and pooling branches",
            "1x1 convolutions as cheap dimension reductions",
            "auxiliary classifiers for gradient signal deep inside the network",
            "global average pooling instead of large fully connected layers",
        ),
        limitations=(
            "a hand-tuned, irregular architecture that is hard to modify",
            "branches are slow on hardware that likes big regular matmuls",
        ),
        paper_result="ILSVRC-2014 top-5 error 6.67% with ~6.8M parameters",
        url="https://arxiv.org/abs/1409.4842",
    )

    def __init__(
        self,
        num_classes: int = 1000,
        aux: bool = True,
        batch_norm: bool = False,
        branch5_kernel: int = 5,
        small_input: bool = False,
        stem_stride: int = 1,
        reduce: bool = True,
        dropout: float = 0.4,
        width: float = 1.0,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        cw = lambda n: max(4, round(n * width))  # noqa: E731 - width < 1: a CPU-sized copy, same layout
        u = lambda a, b, k, s=1, p=0: ConvUnit(a, b, k, s, p, batch_norm=batch_norm, conv=conv)  # noqa: E731
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2 (small_input only), got {stem_stride}")
        if small_input:
            pool = [nn.MaxPool2d(3, 2, ceil_mode=True)] if stem_stride == 2 else []
            self.stem = nn.Sequential(u(3, cw(192), 3, 1, 1), *pool)
        else:
            lrn = [] if batch_norm else [LocalResponseNorm(5, 1e-4, 0.75, 1.0)]
            self.stem = nn.Sequential(
                u(3, cw(64), 7, 2, 3),
                nn.MaxPool2d(3, 2, ceil_mode=True),
                *lrn,
                u(cw(64), cw(64), 1),
                u(cw(64), cw(192), 3, 1, 1),
                *lrn,
                nn.MaxPool2d(3, 2, ceil_mode=True),
            )
        mk, c_in, taps = {}, cw(192), {}
        for k, (_, n1, r3, n3, r5, n5, pp) in INCEPTION_CONFIGS.items():
            mk[k] = Inception(
                c_in,
                cw(n1),
                cw(r3),
                cw(n3),
                cw(r5),
                cw(n5),
                cw(pp),
                reduce=reduce,
                batch_norm=batch_norm,
                branch5_kernel=branch5_kernel,
                conv=conv,
            )
            c_in = cw(n1) + cw(n3) + cw(n5) + (cw(pp) if reduce else c_in)  # concatenated branches
            taps[k] = c_in
        self.inc3 = nn.Sequential(mk["3a"], mk["3b"], nn.MaxPool2d(3, 2, ceil_mode=True))
        self.inc4a = mk["4a"]
        self.inc4bcd = nn.Sequential(mk["4b"], mk["4c"], mk["4d"])
        self.inc4e = nn.Sequential(mk["4e"], nn.MaxPool2d(2, 2, ceil_mode=True))
        self.inc5 = nn.Sequential(mk["5a"], mk["5b"])
        self.aux1 = AuxClassifier(taps["4a"], num_classes, batch_norm, conv, width) if aux else None
        self.aux2 = AuxClassifier(taps["4d"], num_classes, batch_norm, conv, width) if aux else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    @classmethod
    def for_data(cls, bundle, **kwargs) -> GoogLeNet:
        return cls(
            num_classes=bundle.num_classes,
            small_input=bundle.x_train.shape[-1] < 64,
            batch_norm=True,
            **kwargs,
        )

    def forward(self, x: torch.Tensor):
        x = self.inc4a(self.inc3(self.stem(x)))
        a1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inc4bcd(x)
        a2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inc5(self.inc4e(x))
        logits = self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        return (logits, a1, a2) if a1 is not None else logits

    def training_step(self, batch, batch_idx: int = 0):
        """Main loss + 0.3 x each auxiliary loss (the paper's weighting); plugs into the Trainer."""
        x, y = batch
        out = self(x)
        if isinstance(out, tuple):
            logits, a1, a2 = out
            loss = F.cross_entropy(logits, y) + 0.3 * (
                F.cross_entropy(a1, y) + F.cross_entropy(a2, y)
            )
        else:
            logits = out
            loss = F.cross_entropy(logits, y)
        return {"loss": loss, "correct": (logits.argmax(1) == y).sum(), "count": y.numel()}
