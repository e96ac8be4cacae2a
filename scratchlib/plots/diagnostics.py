"""Plots that look inside training: gradient norms per layer, energy descent, capacity curves,
and grids of ±1 patterns (Hopfield memories)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .core import finish

__all__ = ["gradient_norms", "energy_curves", "capacity_curves", "pattern_grid"]


def gradient_norms(
    norms: Mapping[str, Sequence[float]],
    run: Any = None,
    title: str | None = None,
    name: str = "gradient_norms",
):
    """Gradient norm of each layer's weights (layer 1 nearest the input), one line per network,
    on a log scale: vanishing gradients show as a slope."""
    if not norms or any(len(v) == 0 for v in norms.values()):
        raise ValueError(
            "gradient_norms needs {label: [norm of layer 1, layer 2, ...]} with values"
        )
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, v in norms.items():
        ax.semilogy(np.arange(1, len(v) + 1), np.asarray(v, float), "o-", label=label)
    ax.set(
        xlabel="layer (1 = nearest the input)",
        ylabel="‖∂L/∂W‖",
        title=title or "gradient norm per layer",
    )
    ax.legend()
    fig.tight_layout()
    return finish(fig, name, run)


def energy_curves(
    energies: Mapping[str, Sequence[float]],
    run: Any = None,
    title: str | None = None,
    name: str = "energy_descent",
):
    """Energy after every single-neuron update, one line per recall."""
    if not energies:
        raise ValueError("energy_curves needs {label: [energy after each update, ...]}")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, e in energies.items():
        ax.plot(np.asarray(e, float), label=str(label))
    ax.set(
        xlabel="single-neuron updates",
        ylabel="E(s) = −½ sᵀWs",
        title=title or "energy during recall",
    )
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    return finish(fig, name, run)


def capacity_curves(
    curves: Mapping[Any, Mapping[str, Sequence[float]]],
    run: Any = None,
    reference: float | None = 0.138,
    title: str | None = None,
    name: str = "capacity",
):
    """Fraction recalled against load α = P/N, one line per network size, with the theory line."""
    if not curves:
        raise ValueError("capacity_curves needs {N: {'load': [...], 'recall': [...]}}")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for n, c in curves.items():
        load, recall = np.asarray(c["load"], float), np.asarray(c["recall"], float)
        if load.shape != recall.shape:
            raise ValueError(
                f"N={n}: load and recall differ in length ({load.shape} vs {recall.shape})"
            )
        ax.plot(load, recall, "o-", ms=3, label=f"N = {n}")
    if reference is not None:
        ax.axvline(reference, color="k", ls="--", lw=1, label=f"α_c = {reference}")
    ax.set(
        xlabel="load α = patterns / neurons",
        ylabel="fraction recalled",
        title=title or "capacity",
        ylim=(-0.03, 1.03),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return finish(fig, name, run)


def pattern_grid(
    patterns: Any,
    shape: tuple[int, int] | None = None,
    ncols: int = 8,
    row_labels: Sequence[str] | None = None,
    run: Any = None,
    title: str | None = None,
    name: str = "patterns",
):
    """±1 patterns as black (−1) / white (+1) images, ``ncols`` per row, with optional row labels.

    ``patterns`` is ``(n, H*W)`` with ``shape=(H, W)``, or ``(n, H, W)``. The colour scale is fixed
    at [−1, 1], so a pattern and its inverse always look inverted (no per-image rescaling).
    """
    P = np.asarray(patterns, dtype=float)
    if P.ndim == 2:
        if shape is None or int(np.prod(shape)) != P.shape[1]:
            raise ValueError(
                f"pattern_grid: patterns of shape {P.shape} need shape=(H, W) with H*W = {P.shape[1]}"
            )
        P = P.reshape(len(P), *shape)
    elif P.ndim != 3:
        raise ValueError(f"pattern_grid needs (n, H*W) or (n, H, W) patterns; got shape {P.shape}")
    if len(P) == 0 or not np.all(np.isin(P, (-1.0, 1.0))):
        raise ValueError("pattern_grid needs ±1 values (binarise with np.where(x > 0.5, 1, -1))")
    ncols = min(ncols, len(P))
    nrows = int(np.ceil(len(P) / ncols))
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"row_labels has {len(row_labels)} labels for {nrows} rows")
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.25 * nrows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(P):
            ax.imshow(P[i], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        else:
            ax.axis("off")
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, name, run)
