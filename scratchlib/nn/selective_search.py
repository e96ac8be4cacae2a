"""Selective search — Uijlings, van de Sande, Gevers & Smeulders (2013), "Selective search for
object recognition", IJCV 104(2): the region proposals of R-CNN.

Objects come at every scale and are made of parts that look alike, so: over-segment the image
(Felzenszwalb & Huttenlocher's graph-based segmentation, from scikit-image), then repeatedly merge
the two most similar *neighbouring* regions until one region is left. Every region ever formed is
a candidate object; its bounding box is a proposal. Similarity (Section 3.2) adds four
complementary measures, each in [0, 1]:

* colour: histogram intersection of 25-bin colour histograms per channel, Σ_k min(c_i^k, c_j^k);
* texture: the same on gradient histograms (8 orientations x 10 bins per channel; the paper uses
  Gaussian derivatives with σ = 1, as here);
* size: 1 - (|r_i| + |r_j|) / |image|, so small regions merge first, everywhere at once;
* fill: 1 - (|BB_ij| - |r_i| - |r_j|) / |image|, so regions that fit together merge first.

Diversification (Section 3.3): several segmentation scales ``k`` (and colour spaces) each give a
hierarchy; proposals are ranked by their position in the hierarchy times a random number (so the
large regions near the top come first, shuffled) and de-duplicated. The paper's "fast" mode (two
colour spaces, k = 50 and 100, two similarity combinations) gives about 2,100 boxes per image with
a mean average best overlap of 0.804 on PASCAL VOC 2007 (its Table 5). Here: one colour space (the
image's own), all four measures, a few ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["selective_search", "proposal_recall"]


def _as_hwc(image: Any) -> np.ndarray:
    """An ``(H, W, C)`` float array in [0, 1] from a ``(C, H, W)`` tensor, or an (H, W[, C]) array."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3:
            raise ValueError(
                f"selective_search takes one image (C, H, W); got {tuple(image.shape)}"
            )
        img = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    else:
        img = np.asarray(image, dtype=np.float64)
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise ValueError(f"selective_search takes one image (H, W[, C]); got shape {img.shape}")
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _texture_responses(img: np.ndarray) -> np.ndarray:
    """Gaussian derivative (σ = 1) responses in 8 orientations per channel, rectified and scaled to
    [0, 1]: ``(H, W, C * 8)``."""
    from scipy.ndimage import gaussian_filter

    out = []
    for c in range(img.shape[2]):
        gy = gaussian_filter(img[..., c], 1.0, order=(1, 0))
        gx = gaussian_filter(img[..., c], 1.0, order=(0, 1))
        for theta in np.arange(8) * np.pi / 4:
            r = np.maximum(gx * np.cos(theta) + gy * np.sin(theta), 0)  # one direction of the edge
            out.append(r / r.max() if r.max() > 0 else r)
    return np.stack(out, axis=-1)


def _histograms(values: np.ndarray, labels: np.ndarray, n: int, bins: int) -> np.ndarray:
    """Per region, per channel, a ``bins``-bin histogram of values in [0, 1], L1-normalised over
    the whole descriptor: ``(n, channels * bins)``."""
    flat_labels = labels.ravel()
    hists = []
    for ch in range(values.shape[-1]):
        b = np.minimum((values[..., ch].ravel() * bins).astype(np.int64), bins - 1)
        hists.append(np.bincount(flat_labels * bins + b, minlength=n * bins).reshape(n, bins))
    h = np.concatenate(hists, axis=1).astype(np.float64)
    return h / np.maximum(h.sum(1, keepdims=True), 1)


def _hierarchy(img: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Hierarchical grouping (the paper's Algorithm 1) over an initial segmentation ``labels``.

    Returns every region's box ``(x1, y1, x2, y2)`` with its level: 1 for the last region formed
    (the whole image), increasing down to the initial regions.
    """
    h, w = labels.shape
    n = int(labels.max()) + 1
    size = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    ys, xs = np.mgrid[:h, :w]
    box = np.zeros((n, 4))
    box[:, 0] = np.full(n, w)
    box[:, 1] = np.full(n, h)
    np.minimum.at(box[:, 0], labels.ravel(), xs.ravel())
    np.minimum.at(box[:, 1], labels.ravel(), ys.ravel())
    np.maximum.at(box[:, 2], labels.ravel(), xs.ravel() + 1)
    np.maximum.at(box[:, 3], labels.ravel(), ys.ravel() + 1)
    colour = _histograms(img, labels, n, 25)
    texture = _histograms(_texture_responses(img), labels, n, 10)
    image_size = float(h * w)

    # neighbours: regions that touch horizontally or vertically
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
        ]
    )
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    regions = {i: (size[i], box[i], colour[i], texture[i]) for i in range(n)}

    def similarity(a: int, b: int) -> float:
        sa, ba, ca, ta = regions[a]
        sb, bb, cb, tb = regions[b]
        s_colour = np.minimum(ca, cb).sum()  # Σ min(c_i^k, c_j^k)
        s_texture = np.minimum(ta, tb).sum()  # Σ min(t_i^k, t_j^k)
        s_size = 1 - (sa + sb) / image_size
        bw = max(ba[2], bb[2]) - min(ba[0], bb[0])
        bh = max(ba[3], bb[3]) - min(ba[1], bb[1])
        s_fill = 1 - (bw * bh - sa - sb) / image_size
        return s_colour + s_texture + s_size + s_fill

    sim = {(a, b): similarity(a, b) for a, b in pairs.tolist()}
    order = list(range(n))  # creation order
    nxt = n
    while sim:
        a, b = max(sim, key=sim.get)  # the most similar neighbours
        sa, ba, ca, ta = regions[a]
        sb, bb, cb, tb = regions[b]
        regions[nxt] = (
            sa + sb,
            np.array([min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3])]),
            (sa * ca + sb * cb) / (sa + sb),  # a merged histogram is the size-weighted mean
            (sa * ta + sb * tb) / (sa + sb),
        )
        neighbours[nxt] = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        for m in neighbours[nxt]:
            neighbours[m] -= {a, b}
            neighbours[m].add(nxt)
        sim = {k: v for k, v in sim.items() if a not in k and b not in k}
        for m in neighbours[nxt]:
            sim[(m, nxt)] = similarity(m, nxt)
        order.append(nxt)
        nxt += 1
    total = len(order)
    return [(regions[r][1], total - i) for i, r in enumerate(order)]  # level 1 = the last merge


def selective_search(
    image: Any,
    scales: Sequence[float] = (50, 100, 200),
    sigma: float = 0.8,
    min_size: int | None = None,
    min_box: float = 4.0,
    max_proposals: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Region proposals ``(N, 4)`` float xyxy pixels for one image, ranked (best guess first).

    ``image``: a ``(C, H, W)`` tensor or an ``(H, W[, C])`` array. ``scales``: Felzenszwalb's ``k``
    for each hierarchy (larger k, larger initial regions). ``min_size``: the smallest initial
    region in pixels (default about 1/400 of the image, at least 10). Boxes smaller than
    ``min_box`` pixels on a side and duplicates are dropped. Deterministic for a given ``seed``.
    Needs scikit-image (``poetry install --with detection``).
    """
    try:
        from skimage.segmentation import felzenszwalb
    except ImportError as exc:  # pragma: no cover - the detection group brings it
        raise ImportError(
            "selective_search needs scikit-image: poetry install --with detection"
        ) from exc
    if not scales:
        raise ValueError("selective_search needs at least one scale k, e.g. scales=(100,)")
    img = _as_hwc(image)
    h, w = img.shape[:2]
    min_size = max(10, h * w // 400) if min_size is None else min_size
    rng = np.random.default_rng(seed)
    ranked: list[tuple[float, tuple[float, ...]]] = []
    for k in scales:
        seg = felzenszwalb(
            img if img.shape[2] > 1 else img[..., 0],
            scale=k,
            sigma=sigma,
            min_size=min_size,
            channel_axis=-1 if img.shape[2] > 1 else None,
        )
        for bx, level in _hierarchy(img, seg):
            ranked.append((level * rng.uniform(), tuple(float(v) for v in bx)))  # v_i = RND x i
    ranked.sort(key=lambda r: r[0])
    seen, boxes = set(), []
    for _, bx in ranked:
        if bx in seen or bx[2] - bx[0] < min_box or bx[3] - bx[1] < min_box:
            continue
        seen.add(bx)
        boxes.append(bx)
    out = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return out[:max_proposals] if max_proposals else out


def proposal_recall(proposals: torch.Tensor, gt_boxes: torch.Tensor, iou: float = 0.5) -> float:
    """Share of ground-truth boxes covered by at least one proposal with IoU >= ``iou`` (the paper's
    recall; 1.0 when there is nothing to find)."""
    from .boxes import box_iou

    if len(gt_boxes) == 0:
        return 1.0
    if len(proposals) == 0:
        return 0.0
    best = box_iou(gt_boxes.float(), proposals.float()).max(dim=1).values
    return float((best >= iou).float().mean())
