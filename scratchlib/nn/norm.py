"""Batch normalisation (Ioffe & Szegedy 2015) and local response normalisation (Krizhevsky et al. 2012)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["batch_norm", "BatchNorm2d", "local_response_norm", "LocalResponseNorm"]


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Normalise each channel over the batch (and space), then scale and shift.

    Training: μ_B, σ²_B from this batch; running statistics updated with the *unbiased* variance.
    Evaluation: the running statistics are used instead.
    """
    dims = [0] + list(range(2, x.dim()))  # every axis but the channel axis
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        mean = x.mean(dims)  # μ_B
        var = x.var(dims, unbiased=False)  # σ²_B (biased: what the normalisation uses)
        if running_mean is not None and running_var is not None:
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean)
                running_var.mul_(1 - momentum).add_(momentum * var * n / max(n - 1, 1))  # unbiased
    else:
        mean, var = running_mean, running_var
    x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps)  # x̂ = (x − μ) / √(σ² + ε)
    if weight is not None:
        x_hat = x_hat * weight.view(shape)  # γ x̂
    if bias is not None:
        x_hat = x_hat + bias.view(shape)  # + β
    return x_hat


class BatchNorm2d(nn.Module):
    """Drop-in for ``nn.BatchNorm2d`` (same parameters and buffers, so state dicts are interchangeable)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked += 1
        return batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )


def local_response_norm(
    x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> torch.Tensor:
    """AlexNet's LRN: b_c = a_c / (k + α/n · Σ_{c' near c} a_{c'}²)^β over ``size`` neighbouring channels."""
    sq = x.pow(2).unsqueeze(1)  # (N, 1, C, H, W)
    half = size // 2
    sq = torch.nn.functional.pad(sq, (0, 0, 0, 0, half, (size - 1) // 2))  # pad the channel axis
    window_sum = torch.nn.functional.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1) * size
    return x / (k + alpha / size * window_sum).pow(beta)


class LocalResponseNorm(nn.Module):
    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
    ) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)
