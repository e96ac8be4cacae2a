"""The everyday plots: learning curves, 2-D decision boundaries, confusion matrices, image grids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .core import finish, to_numpy

__all__ = ["learning_curves", "decision_boundary", "confusion_matrix", "image_grid"]


def _history_columns(history: Any) -> dict[str, list[float]]:
    if hasattr(history, "to_dict") and hasattr(history, "columns"):  # DataFrame
        return {c: history[c].tolist() for c in history.columns}
    return {k: list(v) for k, v in dict(history).items()}


def learning_curves(
    history: Any,
    metrics: Sequence[str] | None = None,
    run: Any = None,
    title: str | None = None,
    name: str = "learning_curves",
    logy: bool = False,
):
    """One panel per quantity (loss, accuracy, ...), train and validation on the same axes.

    ``history`` is the Trainer's dict of lists (or a DataFrame, e.g. a run's scalars).
    """
    cols = _history_columns(history)
    if not cols:
        raise ValueError("learning_curves: the history is empty (did training run?)")
    x = cols.get("epoch") or list(range(1, len(next(iter(cols.values()))) + 1))
    by_step = "step" in cols and any(
        b <= a for a, b in zip(x, x[1:], strict=False)
    )  # rows per validation
    x = cols["step"] if by_step else x
    skip = {"epoch", "step", "lr", "time", "epoch_time", "run_id", "model", "experiment"}
    keys = [k for k in (metrics or cols) if k not in skip]
    unknown = [k for k in keys if k not in cols]
    if unknown:
        raise KeyError(f"learning_curves: no {unknown} in the history; it has {sorted(cols)}")
    groups: dict[str, list[str]] = {}
    for k in keys:
        base = k.split("_", 1)[1] if k.startswith(("train_", "val_", "test_")) else k
        groups.setdefault(base, []).append(k)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.2), squeeze=False)
    for ax, (base, ks) in zip(axes[0], groups.items(), strict=True):
        for k in ks:
            y = np.asarray(cols[k], dtype=float)
            ax.plot(
                x[: len(y)],
                y,
                marker="o" if len(y) <= 30 else None,
                ms=3,
                label=k.split("_", 1)[0] if k != base else k,
            )
        ax.set(
            xlabel="step" if by_step else "epoch",
            ylabel=base.replace("_", " "),
            title=base.replace("_", " "),
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(ks) > 1 or ks[0] != base:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, name, run)


def _predict_grid(predict: Callable[[np.ndarray], Any], grid: np.ndarray) -> np.ndarray:
    """Class labels on the grid: argmax of several scores, ``logit > 0`` for one torch output."""
    import torch

    if isinstance(predict, torch.nn.Module):
        model, was_training = predict, predict.training
        dev = next(model.parameters()).device
        try:
            with torch.no_grad():
                model.eval()
                out = to_numpy(model(torch.as_tensor(grid, dtype=torch.float32, device=dev)))
        finally:
            model.train(
                was_training
            )  # plotting mid-training leaves dropout/batch norm as they were
        if out.ndim == 2 and out.shape[1] > 1:
            return out.argmax(1)
        return (out.ravel() > 0).astype(np.int64)  # one logit: class 1 where it is positive
    out = to_numpy(predict(grid))
    return out.argmax(1) if out.ndim == 2 and out.shape[1] > 1 else out.ravel()


def decision_boundary(
    predict: Callable[[np.ndarray], Any],
    X: Any,
    y: Any,
    run: Any = None,
    title: str | None = None,
    ax: Any = None,
    resolution: int = 200,
    name: str = "decision_boundary",
    feature_names: Sequence[str] | None = None,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
):
    """Colour the plane by ``predict`` (labels or class scores of an ``(N, 2)`` array, or a torch
    model) and scatter the points ``X`` coloured by ``y``. Pass ``ax`` to draw into a grid of plots.

    ``bounds=((x_lo, x_hi), (y_lo, y_hi))`` sets the window drawn (default: the points' extent plus
    10%). Integer classes keep one colour each, in the regions and the points alike, even when a
    model predicts a single class everywhere."""
    X, y = to_numpy(X), to_numpy(y).ravel()
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary needs 2-D points, shape (N, 2); got {X.shape}")
    if len(y) != len(X):
        raise ValueError(f"decision_boundary: {len(X)} points but {len(y)} labels")
    pad = 0.1 * (X.max(0) - X.min(0) + 1e-9)
    lo, hi = X.min(0) - pad, X.max(0) + pad
    if bounds is not None:
        (lo[0], hi[0]), (lo[1], hi[1]) = bounds
    xx, yy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    zz = _predict_grid(predict, np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.5, 4))
    else:
        fig = ax.figure
    labels = np.union1d(np.unique(zz), np.unique(y)).astype(float)
    if np.all(labels == np.round(labels)):  # classes: one fixed colour per class
        first, last = int(labels.min()), int(labels.max())
        levels = np.arange(first, last + 2) - 0.5
        norm = dict(vmin=first, vmax=max(last, first + 1))
    else:
        levels, norm = (np.unique(zz).size if np.unique(zz).size > 1 else 2), {}
    ax.contourf(xx, yy, zz, alpha=0.3, cmap="coolwarm", levels=levels, **norm)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", edgecolor="k", s=18, linewidth=0.4, **norm)
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    if feature_names:
        ax.set(xlabel=feature_names[0], ylabel=feature_names[1])
    if title:
        ax.set_title(title)
    if not own:
        return fig
    fig.tight_layout()
    return finish(fig, name, run)


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[str] | None = None,
    run: Any = None,
    normalize: bool = False,
    title: str | None = None,
    name: str = "confusion_matrix",
):
    """Counts (or row-normalised rates) of true class (rows) against predicted class (columns)."""
    yt, yp = to_numpy(y_true).astype(int).ravel(), to_numpy(y_pred).astype(int).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape} vs {yp.shape}")
    k = len(classes) if classes else int(max(yt.max(), yp.max())) + 1
    low, high = min(yt.min(), yp.min()), max(yt.max(), yp.max())
    if low < 0 or high >= k:
        raise ValueError(
            f"confusion_matrix: labels must be class indices 0..{k - 1}; got a label {low if low < 0 else high}"
            + (" (map ±1 labels to 0/1 first)" if low < 0 else " (more labels than class names)")
        )
    cm = np.zeros((k, k), dtype=float)
    np.add.at(cm, (yt, yp), 1)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.5, 0.45 * k + 2))
    im = ax.imshow(cm, cmap="Blues")
    labels = list(classes) if classes else [str(i) for i in range(k)]
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=title or "confusion matrix",
    )
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]:.2f}" if normalize else int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return finish(fig, name, run)


def image_grid(
    images: Any,
    labels: Sequence[Any] | None = None,
    preds: Sequence[Any] | None = None,
    run: Any = None,
    ncols: int = 8,
    title: str | None = None,
    cmap: str = "gray",
    name: str = "image_grid",
    classes: Sequence[str] | None = None,
    show: bool = True,
):
    """A grid of images ``(N, C, H, W)`` / ``(N, H, W)``; titles show label (and prediction, red if
    wrong). ``show=False`` only saves it into the run (e.g. grids drawn during training)."""
    imgs = to_numpy(images)
    if imgs.ndim == 4:
        imgs = imgs.transpose(0, 2, 3, 1)
        if imgs.shape[-1] == 1:
            imgs = imgs[..., 0]
    elif imgs.ndim != 3:
        raise ValueError(
            f"image_grid needs (N, C, H, W) or (N, H, W) images; got shape {imgs.shape}"
        )
    n = len(imgs)
    if n == 0:
        raise ValueError("image_grid: no images to show (the batch is empty)")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.45 * nrows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        img = imgs[i]
        if img.ndim == 3:
            lo, hi = img.min(), img.max()
            img = (img - lo) / (hi - lo + 1e-9) if lo < 0 or hi > 1 else img
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None)
        parts, colour = [], "black"
        name_of = (lambda c: classes[int(c)]) if classes else (lambda c: str(c))
        if labels is not None:
            parts.append(
                name_of(to_numpy(labels[i]).item() if hasattr(labels[i], "shape") else labels[i])
            )
        if preds is not None:
            p = to_numpy(preds[i]).item() if hasattr(preds[i], "shape") else preds[i]
            parts.append(f"→{name_of(p)}")
            if labels is not None and str(name_of(p)) != parts[0]:
                colour = "red"
        if parts:
            ax.set_title(" ".join(parts), fontsize=8, color=colour)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, name, run, show=show)
