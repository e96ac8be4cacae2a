"""VGG — Simonyan & Zisserman (2014), "Very deep convolutional networks for large-scale image
recognition", ICLR 2015. ImageNet top-5 error 7.3 % (ensemble; VGG-16/19 single nets ~7.5 %).

Only 3×3 convolutions (stride 1, padding 1) and 2×2 max-pooling: two stacked 3×3 layers see a 5×5
field, three see 7×7, with fewer parameters and more non-linearities. Configurations A–E (Table 1):
A = VGG-11, B = VGG-13, C = VGG-16 with three 1×1 layers, D = VGG-16, E = VGG-19.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import ModelInfo, register

__all__ = ["VGG", "CONFIGS"]

# numbers: 3x3 conv output channels; "1:n": a 1x1 conv with n channels (config C); "M": max-pool
CONFIGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        "1:256",
        "M",
        512,
        512,
        "1:512",
        "M",
        512,
        512,
        "1:512",
        "M",
    ],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}
# The paper's own depth test (Section 4.1): B with each pair of 3x3 layers replaced by one 5x5 layer
# (same receptive field, more weights, half the non-linearities): top-1 error 7% higher than B.
# "5:n": a 5x5 conv with n channels.
CONFIGS["B-shallow"] = ["5:64", "M", "5:128", "M", "5:256", "M", "5:512", "M", "5:512", "M"]
DEPTH = {"A": 11, "B": 13, "C": 16, "D": 16, "E": 19, "B-shallow": 8}


@register
class VGG(nn.Module):
    """VGG configuration A–E. ``image_size=224`` gives the paper's 4096-4096 classifier on 7×7×512;
    ``image_size=32`` (CIFAR) ends with 1×1×512 and a small classifier."""

    MODEL_INFO = ModelInfo(
        name="VGG",
        paper="Very deep convolutional networks for large-scale image recognition",
        authors="Karen Simonyan and Andrew Zisserman",
        year=2014,
        module="02-CNN-Revolution",
        category="cnn",
        key_innovations=(
            "depth from uniform stacks of 3x3 convolutions (receptive field grows, parameters do not)",
            "a simple, regular design that became the default feature extractor",
        ),
        limitations=(
            "138M parameters (VGG-16), most in the first fully connected layer",
            "slow and memory hungry",
        ),
        paper_result="ImageNet top-5 error 7.3% (ensemble), VGG-16 single net ~7.4% (multi-scale)",
        url="https://arxiv.org/abs/1409.1556",
    )

    def __init__(
        self,
        config: str = "D",
        num_classes: int = 1000,
        image_size: int = 224,
        batch_norm: bool = False,
        in_channels: int = 3,
        dropout: float = 0.5,
        width: float = 1.0,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"unknown VGG configuration {config!r}; use one of {sorted(CONFIGS)}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            k, out = (int(v.split(":")[0]), int(v.split(":")[1])) if isinstance(v, str) else (3, v)
            out = max(8, round(out * width))  # width < 1: a CPU-sized copy, same layout
            layers.append(conv(c, out, k, padding=k // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            c = out
        self.features = nn.Sequential(*layers)
        self.config, self.depth = config, DEPTH[config]
        if image_size >= 224:
            self.pool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(c * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(dropout),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            )
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

    @classmethod
    def for_data(cls, bundle, config: str = "A", **kwargs) -> VGG:
        return cls(
            config,
            num_classes=bundle.num_classes,
            image_size=bundle.x_train.shape[-1],
            in_channels=bundle.x_train.shape[1],
            batch_norm=True,
            **kwargs,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
