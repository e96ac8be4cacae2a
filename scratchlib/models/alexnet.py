"""AlexNet — Krizhevsky, Sutskever & Hinton (2012), "ImageNet classification with deep
convolutional neural networks", NeurIPS. ImageNet top-5 error 15.3 % (ILSVRC-2012), against 26.2 %
for the best non-neural entry.

Five convolutional layers (ReLU, local response normalisation, overlapping max-pooling) and three
fully connected layers with dropout, trained on two GPUs.

* ``AlexNet(layout="paper")``: the paper's widths 96-256-384-384-256 with its two-GPU grouping
  (conv2, conv4, conv5 see only their own GPU's half), LRN after conv1 and conv2.
* ``AlexNet(layout="torchvision")``: the single-GPU widths 64-192-384-256-256 of Krizhevsky's
  "One weird trick" (2014), which torchvision's ``alexnet`` uses (no LRN).
* :class:`AlexNetCIFAR`: the same design scaled to 32×32 images.
* :class:`Figure1CNN`: the small four-layer CNN of the paper's Figure 1 (ReLU against tanh).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from scratchlib.nn import LocalResponseNorm

from . import ModelInfo, register

__all__ = ["AlexNet", "AlexNetCIFAR", "Figure1CNN", "PAPER_LRN"]

# The paper's LRN (Section 3.3): b = a / (k + α Σ_{n neighbours} a²)^β with k = 2, n = 5, α = 1e-4,
# β = 0.75. PyTorch's local_response_norm (and ours, equal to it) divides α by n:
# b = a / (k + (α'/n) Σ a²)^β — so the paper's α is passed as α' = n · 1e-4 = 5e-4.
PAPER_LRN = dict(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)

_INFO = dict(
    paper="ImageNet classification with deep convolutional neural networks",
    authors="Alex Krizhevsky, Ilya Sutskever and Geoffrey E. Hinton",
    year=2012,
    module="02-CNN-Revolution",
    category="cnn",
    key_innovations=(
        "ReLU units: about 6x faster training than tanh (the paper's Figure 1)",
        "dropout in the fully connected layers against overfitting",
        "GPU training, data augmentation, overlapping pooling",
    ),
    limitations=(
        "61M parameters, mostly in the fully connected layers",
        "large 11x11 first-layer kernels waste computation",
    ),
    paper_result="ILSVRC-2012 top-5 test error 15.3% (top-1 37.5% on ILSVRC-2010)",
    url="https://papers.nips.cc/paper/4824",
)


@register
class AlexNet(nn.Module):
    MODEL_INFO = ModelInfo(name="AlexNet", **_INFO)

    def __init__(
        self,
        num_classes: int = 1000,
        layout: str = "paper",
        dropout: float = 0.5,
        activation: Callable[[], nn.Module] = lambda: nn.ReLU(inplace=True),
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        if layout not in ("paper", "torchvision"):
            raise ValueError(f"layout must be 'paper' or 'torchvision', got {layout!r}")
        paper = layout == "paper"
        w = (96, 256, 384, 384, 256) if paper else (64, 192, 384, 256, 256)
        lrn = lambda: LocalResponseNorm(**PAPER_LRN)  # noqa: E731
        g = 2 if paper else 1  # the two GPUs: grouped convolutions
        act = activation
        self.features = nn.Sequential(
            conv(3, w[0], 11, stride=4, padding=2),
            act(),
            *([lrn()] if paper else []),
            nn.MaxPool2d(3, 2),  # overlapping pooling: 3x3 windows, stride 2
            conv(w[0], w[1], 5, padding=2, groups=g),
            act(),
            *([lrn()] if paper else []),
            nn.MaxPool2d(3, 2),
            conv(w[1], w[2], 3, padding=1),
            act(),
            conv(w[2], w[3], 3, padding=1, groups=g),
            act(),
            conv(w[3], w[4], 3, padding=1, groups=g),
            act(),
            nn.MaxPool2d(3, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(w[4] * 36, 4096),
            act(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            act(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register
class AlexNetCIFAR(nn.Module):
    """AlexNet's design for 32×32 images: five convs (ReLU, LRN, overlapping pooling), dropout FCs.

    ``init="he"`` draws every weight from a Gaussian of variance gain² / fan-in (He et al. 2015),
    with the non-linearity's gain (√2 for ReLU, 5/3 for tanh), so the signal neither dies nor
    explodes through the eight layers; ``init="torch"`` keeps PyTorch's default (uniform,
    variance 1 / (3 · fan-in)), under which a deep ReLU stack starts with vanishing activations.
    """

    MODEL_INFO = ModelInfo(name="AlexNet (CIFAR-size)", **_INFO)

    def __init__(
        self,
        num_classes: int = 10,
        dropout: float = 0.5,
        activation: str = "relu",
        lrn: bool = True,
        width: float = 1.0,
        init: str = "torch",
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        acts = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        if init not in ("torch", "he"):
            raise ValueError(f"init must be 'torch' (PyTorch's default) or 'he', got {init!r}")
        act = acts[activation]
        norm = (lambda: LocalResponseNorm(**PAPER_LRN)) if lrn else nn.Identity
        c = [
            max(8, round(n * width)) for n in (64, 192, 384, 256, 256, 1024)
        ]  # width: a CPU-sized copy
        self.features = nn.Sequential(
            conv(3, c[0], 5, padding=2), act(), norm(), nn.MaxPool2d(3, 2, padding=1),  # 16x16
            conv(c[0], c[1], 5, padding=2), act(), norm(), nn.MaxPool2d(3, 2, padding=1),  # 8x8
            conv(c[1], c[2], 3, padding=1), act(),
            conv(c[2], c[3], 3, padding=1), act(),
            conv(c[3], c[4], 3, padding=1), act(), nn.MaxPool2d(3, 2, padding=1),  # 4x4
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c[4] * 16, c[5]), act(),
            nn.Dropout(dropout), nn.Linear(c[5], c[5]), act(),
            nn.Linear(c[5], num_classes),
        )  # fmt: skip
        if init == "he":
            _he_init(self, nn.init.calculate_gain(activation), self.classifier[-1])

    @classmethod
    def for_data(cls, bundle, **kwargs) -> AlexNetCIFAR:
        return cls(num_classes=bundle.num_classes, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _he_init(model: nn.Module, gain: float, last: nn.Module) -> None:
    """Weights ~ N(0, gain² / fan-in) (He et al. 2015), biases 0; ``last`` (the logits) gain 1."""
    for m in model.modules():
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() in (2, 4):
            nn.init.normal_(weight, 0.0, (1.0 if m is last else gain) / weight[0].numel() ** 0.5)
            nn.init.zeros_(m.bias)


class Figure1CNN(nn.Module):
    """The four-layer CNN of the paper's Figure 1, where ReLUs reached 25 % training error on
    CIFAR-10 six times faster than tanh units. Its layers follow cuda-convnet's small CIFAR-10
    configuration: three 5×5 convolutions with 32, 32 and 64 filters, each followed by 3×3/2
    max-pooling and (``lrn=True``) the paper's local response normalisation, then one linear layer
    to the classes. No dropout, no weight decay ("no regularisation of any kind"); ``init="he"``
    as in :class:`AlexNetCIFAR`. Without LRN, the unbounded ReLU units need a learning rate several
    times smaller than tanh units to train at all."""

    MODEL_INFO = ModelInfo(name="AlexNet Figure-1 CNN", **_INFO)

    def __init__(
        self,
        activation: str = "relu",
        num_classes: int = 10,
        init: str = "he",
        lrn: bool = True,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        if init not in ("torch", "he"):
            raise ValueError(f"init must be 'torch' (PyTorch's default) or 'he', got {init!r}")
        act = acts[activation]
        norm = (lambda: LocalResponseNorm(**PAPER_LRN)) if lrn else nn.Identity
        self.features = nn.Sequential(
            conv(3, 32, 5, padding=2), act(), nn.MaxPool2d(3, 2, padding=1), norm(),  # 16x16
            conv(32, 32, 5, padding=2), act(), nn.MaxPool2d(3, 2, padding=1), norm(),  # 8x8
            conv(32, 64, 5, padding=2), act(), nn.MaxPool2d(3, 2, padding=1),  # 4x4
        )  # fmt: skip
        self.classifier = nn.Linear(64 * 16, num_classes)
        if init == "he":
            _he_init(self, nn.init.calculate_gain(activation), self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
