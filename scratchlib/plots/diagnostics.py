"""Plots that look inside training: gradient norms per layer, energy descent, capacity curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .core import finish

__all__ = ["gradient_norms", "energy_curves", "capacity_curves"]


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
