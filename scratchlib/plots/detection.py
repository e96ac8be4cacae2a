"""Detection and segmentation plots: boxes with labels and scores, instance masks overlaid,
anchors, and region proposals before and after NMS. Like every plot: saved into the active run's
figures/, shown in a notebook, the figure returned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from .core import finish, to_numpy

__all__ = ["draw_boxes", "detections_grid", "masks_overlay", "anchors_plot", "proposals_plot"]

_COLOURS = plt.get_cmap("tab10").colors


def _image(image: Any) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` / ``(H, W, C)`` / ``(H, W)`` -> something imshow draws, and its colour map."""
    img = to_numpy(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise ValueError(f"expected one image (C, H, W) or (H, W); got shape {img.shape}")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:
        img = (img - lo) / (hi - lo + 1e-9)
    return img, ("gray" if img.ndim == 2 else None)


def _boxes(boxes: Any) -> np.ndarray:
    b = to_numpy(boxes).astype(float).reshape(-1, 4) if boxes is not None else np.zeros((0, 4))
    return b


def _draw(
    ax: Any,
    boxes: np.ndarray,
    labels: Any = None,
    scores: Any = None,
    classes: Sequence[str] | None = None,
    colour: Any = None,
    linestyle: str = "-",
    linewidth: float = 1.5,
) -> None:
    labels = None if labels is None else to_numpy(labels).astype(int).ravel()
    scores = None if scores is None else to_numpy(scores).ravel()
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        c = (
            colour
            if colour is not None
            else _COLOURS[(labels[i] if labels is not None else 0) % 10]
        )
        ax.add_patch(
            Rectangle(
                (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, lw=linewidth, ls=linestyle
            )
        )
        parts = []
        if labels is not None:
            parts.append(classes[labels[i]] if classes else str(labels[i]))
        if scores is not None:
            parts.append(f"{scores[i]:.2f}")
        if parts:
            ax.text(
                x1, y1, " ".join(parts), fontsize=7, color="white", va="bottom",
                bbox={"facecolor": c, "alpha": 0.8, "pad": 1, "lw": 0},
            )  # fmt: skip


def draw_boxes(
    image: Any,
    boxes: Any,
    labels: Any = None,
    scores: Any = None,
    classes: Sequence[str] | None = None,
    gt_boxes: Any = None,
    score_threshold: float = 0.0,
    ax: Any = None,
    run: Any = None,
    title: str | None = None,
    name: str = "boxes",
):
    """One image with its boxes (colour by class, "label score" tags); ``gt_boxes`` dashed white.
    Boxes scoring below ``score_threshold`` are not drawn. Pass ``ax`` to draw into a grid."""
    img, cmap = _image(image)
    b = _boxes(boxes)
    keep = np.ones(len(b), bool)
    if scores is not None:
        keep = to_numpy(scores).ravel() >= score_threshold
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    ax.imshow(img, cmap=cmap)
    if gt_boxes is not None:
        _draw(ax, _boxes(gt_boxes), colour="white", linestyle="--", linewidth=1.0)
    _draw(
        ax,
        b[keep],
        None if labels is None else to_numpy(labels).ravel()[keep],
        None if scores is None else to_numpy(scores).ravel()[keep],
        classes,
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if not own:
        return fig
    fig.tight_layout()
    return finish(fig, name, run)


def detections_grid(
    images: Any,
    preds: Sequence[dict[str, Any]],
    targets: Sequence[dict[str, Any]] | None = None,
    classes: Sequence[str] | None = None,
    score_threshold: float = 0.5,
    ncols: int = 4,
    masks: bool = True,
    run: Any = None,
    title: str | None = None,
    name: str = "detections",
):
    """A grid of images with their predicted boxes (and masks when the predictions have them);
    ground-truth boxes from ``targets`` dashed white."""
    n = len(preds)
    if n == 0:
        raise ValueError("detections_grid: no predictions to show")
    if len(images) < n:
        raise ValueError(f"detections_grid: {n} predictions but only {len(images)} images")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= n:
            continue
        p = preds[i]
        sc = to_numpy(p.get("scores", np.ones(len(_boxes(p["boxes"]))))).ravel()
        keep = sc >= score_threshold
        if masks and p.get("masks") is not None and len(p["masks"]):
            _overlay(
                ax, images[i], to_numpy(p["masks"])[keep], to_numpy(p["labels"]).astype(int)[keep]
            )
        else:
            img, cmap = _image(images[i])
            ax.imshow(img, cmap=cmap)
        if targets is not None:
            _draw(ax, _boxes(targets[i]["boxes"]), colour="white", linestyle="--", linewidth=1.0)
        _draw(ax, _boxes(p["boxes"])[keep], to_numpy(p["labels"]).ravel()[keep], sc[keep], classes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, name, run)


def _overlay(
    ax: Any, image: Any, masks: np.ndarray, labels: np.ndarray | None, alpha: float = 0.5
) -> None:
    img, cmap = _image(image)
    rgb = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3].copy()
    for i, m in enumerate(masks):
        c = np.array(_COLOURS[(int(labels[i]) if labels is not None else i) % 10])
        on = m > 0.5
        rgb[on] = (1 - alpha) * rgb[on] + alpha * c
    ax.imshow(np.clip(rgb, 0, 1))


def masks_overlay(
    image: Any,
    masks: Any,
    labels: Any = None,
    boxes: Any = None,
    scores: Any = None,
    classes: Sequence[str] | None = None,
    alpha: float = 0.5,
    ax: Any = None,
    run: Any = None,
    title: str | None = None,
    name: str = "masks",
):
    """Instance masks ``(k, H, W)`` (or one semantic ``(H, W)`` map of class indices, 0 =
    background) painted over the image, one colour per class (per instance without labels)."""
    m = to_numpy(masks)
    if m.ndim == 2:  # a class map -> one binary mask per class present
        present = [c for c in np.unique(m).astype(int) if c != 0]
        labels = np.array(present) if labels is None else labels
        m = np.stack([m == c for c in present]) if present else np.zeros((0, *m.shape))
    if m.ndim != 3:
        raise ValueError(
            f"masks must be (k, H, W) instance masks or an (H, W) class map; got {m.shape}"
        )
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    lab = None if labels is None else to_numpy(labels).astype(int).ravel()
    _overlay(ax, image, m, lab, alpha)
    if boxes is not None:
        _draw(ax, _boxes(boxes), lab, scores, classes)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if not own:
        return fig
    fig.tight_layout()
    return finish(fig, name, run)


def anchors_plot(
    image: Any,
    anchors: Any,
    num_anchors: int,
    cells: Sequence[int] | None = None,
    run: Any = None,
    title: str | None = None,
    name: str = "anchors",
):
    """Faster R-CNN's anchors: the centre of every feature-map cell as a dot, and all
    ``num_anchors`` anchors (sizes x ratios) of a few ``cells`` (default: the middle one)."""
    a = _boxes(anchors)
    if num_anchors < 1 or len(a) % num_anchors:
        raise ValueError(f"{len(a)} anchors do not split into cells of num_anchors={num_anchors}")
    per_cell = a.reshape(-1, num_anchors, 4)
    cells = [len(per_cell) // 2] if cells is None else list(cells)
    img, cmap = _image(image)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(img, cmap=cmap)
    centres = (per_cell[:, 0, :2] + per_cell[:, 0, 2:]) / 2
    ax.scatter(centres[:, 0], centres[:, 1], s=3, c="yellow")
    for c in cells:
        for j, (x1, y1, x2, y2) in enumerate(per_cell[c]):
            ax.add_patch(
                Rectangle(
                    (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=_COLOURS[j % 10], lw=1.2
                )
            )
    h, w = img.shape[:2]
    ax.set(
        xlim=(min(-0.5, a[:, 0].min()), max(w, a[:, 2].max())),
        ylim=(max(h, a[:, 3].max()), min(-0.5, a[:, 1].min())),
    )
    ax.set_title(title or f"{len(per_cell)} cells x {num_anchors} anchors", fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    return finish(fig, name, run)


def proposals_plot(
    image: Any,
    before: Any,
    after: Any,
    scores_before: Any = None,
    top: int = 100,
    run: Any = None,
    title: str | None = None,
    name: str = "proposals",
):
    """Two panels: the top ``top`` proposals before NMS (highest scores first, when given) and the
    ones NMS keeps — how many near-duplicates suppression removes."""
    b, a = _boxes(before), _boxes(after)
    if scores_before is not None:
        b = b[np.argsort(-to_numpy(scores_before).ravel(), kind="stable")]
    img, cmap = _image(image)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, boxes, label in ((axes[0], b[:top], "before NMS"), (axes[1], a[:top], "after NMS")):
        ax.imshow(img, cmap=cmap)
        _draw(ax, boxes, colour="lime", linewidth=0.8)
        shown = f"{len(boxes)} of {len(b) if label == 'before NMS' else len(a)}"
        ax.set_title(f"{label}: {shown}", fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, name, run)
