"""ResNet — He, Zhang, Ren & Sun (2015), "Deep residual learning for image recognition", CVPR 2016.

Each block learns a residual F(x) and outputs y = relu(F(x) + x): an identity path lets gradients
and signals pass through any depth, so deeper networks train *better*, not worse (the degradation
problem of plain nets, the paper's Figure 6). CIFAR-10 (Table 6): ResNet-20 8.75 % error
(0.27M parameters), ResNet-56 6.97 %, ResNet-110 6.43 %.

* :class:`CifarResNet` — the paper's CIFAR family (6n+2 layers: 16/32/64 filters, 3×3 convs,
  option-A shortcuts: identity with stride-2 subsampling and zero-padded channels); ``plain=True``
  removes the shortcuts for the degradation experiment.
* :class:`ResNet` — the ImageNet family (ResNet-18/34 basic blocks, ResNet-50 bottlenecks,
  projection shortcuts), laid out like torchvision's so parameter counts match exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelInfo, register

__all__ = [
    "CifarResNet",
    "ResNet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet18",
    "resnet34",
    "resnet50",
]

_INFO = dict(
    paper="Deep residual learning for image recognition",
    authors="Kaiming He, Xiangyu Zhang, Shaoqing Ren and Jian Sun",
    year=2015,
    module="02-CNN-Revolution",
    category="cnn",
    key_innovations=(
        "residual learning: blocks learn F(x) and add the identity, y = F(x) + x",
        "very deep networks (110 to 1000+ layers) that train better as they get deeper",
        "batch normalisation after every convolution, no dropout",
    ),
    limitations=(
        "depth costs latency: layers run one after another",
        "most of the gain saturates past ~100 layers on CIFAR",
    ),
    url="https://arxiv.org/abs/1512.03385",
)


class CifarBlock(nn.Module):
    """Two 3×3 conv-BN layers; option-A shortcut (parameter-free) or none (plain)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, plain: bool, conv: Callable[..., nn.Module]
    ) -> None:
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.plain, self.stride, self.pad = plain, stride, c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # subsample
        if self.pad:
            x = F.pad(
                x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2)
            )  # zero channels (option A)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))  # F(x)
        if not self.plain:
            out = out + self.shortcut(x)  # y = F(x) + x
        return F.relu(out)


@register
class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32×32 images, as in the paper's Section 4.2.

    ``width < 1`` scales the 16/32/64 filters (a CPU-sized copy with the same layout and depth)."""

    MODEL_INFO = ModelInfo(
        name="ResNet (CIFAR)",
        paper_result="CIFAR-10 test error: ResNet-20 8.75%, ResNet-56 6.97%, ResNet-110 6.43% (Table 6)",
        **_INFO,
    )

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        plain: bool = False,
        in_channels: int = 3,
        width: float = 1.0,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(
                f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}"
            )
        if not width > 0:
            raise ValueError(f"width must be > 0 (1.0: the paper's 16/32/64 filters), got {width}")
        n = (depth - 2) // 6
        self.depth, self.plain = depth, plain
        c = [max(2, round(f * width)) for f in (16, 32, 64)]
        self.conv1 = conv(in_channels, c[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        blocks, c_in = [], c[0]
        for stage, c_out in enumerate(c):
            for i in range(n):
                blocks.append(
                    CifarBlock(c_in, c_out, 2 if (stage > 0 and i == 0) else 1, plain, conv)
                )
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c[2], num_classes)
        for m in self.modules():
            weight = getattr(m, "weight", None)
            if (
                isinstance(weight, torch.Tensor) and weight.dim() == 4
            ):  # every conv, ours or torch's
                nn.init.kaiming_normal_(
                    weight, mode="fan_out", nonlinearity="relu"
                )  # He et al. 2015

    @classmethod
    def for_data(cls, bundle, depth: int = 20, **kwargs) -> CifarResNet:
        return cls(
            depth, num_classes=bundle.num_classes, in_channels=bundle.x_train.shape[1], **kwargs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # global average pooling
        return self.fc(x)


def resnet20(**kw) -> CifarResNet:
    return CifarResNet(20, **kw)


def resnet32(**kw) -> CifarResNet:
    return CifarResNet(32, **kw)


def resnet44(**kw) -> CifarResNet:
    return CifarResNet(44, **kw)


def resnet56(**kw) -> CifarResNet:
    return CifarResNet(56, **kw)


def resnet110(**kw) -> CifarResNet:
    return CifarResNet(110, **kw)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, conv: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.conv1 = conv(c_in, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _projection(c_in, width, stride, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 → 1×1 expand (×4): deep nets at the cost of shallow ones."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, conv: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.conv1 = conv(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = _projection(c_in, width * 4, stride, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _projection(c_in: int, c_out: int, stride: int, conv) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(
        conv(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )  # option B


@register
class ResNet(nn.Module):
    """ResNet-18/34/50 for 224×224 images (Table 1 of the paper)."""

    MODEL_INFO = ModelInfo(
        name="ResNet (ImageNet)",
        paper_result="ImageNet top-5 error 3.57% (ensemble); ResNet-50 single model 6.71% top-5 (10-crop)",
        **_INFO,
    )

    LAYOUTS = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
    }

    def __init__(
        self,
        depth: int = 18,
        num_classes: int = 1000,
        in_channels: int = 3,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        if depth not in self.LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(self.LAYOUTS)}, got {depth}")
        block, counts = self.LAYOUTS[depth]
        self.conv1 = conv(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, c_in = [], 64
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
            for i in range(count):
                layers.append(block(c_in, width, 2 if (stage > 0 and i == 0) else 1, conv))
                c_in = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet18(**kw) -> ResNet:
    return ResNet(18, **kw)


def resnet34(**kw) -> ResNet:
    return ResNet(34, **kw)


def resnet50(**kw) -> ResNet:
    return ResNet(50, **kw)
