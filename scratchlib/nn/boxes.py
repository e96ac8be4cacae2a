"""Box operations for detection, from tensor ops; each is proven equal to ``torchvision.ops`` in
tests/test_boxes.py.

Boxes are ``(N, 4)`` float tensors in pixel ``x1, y1, x2, y2`` (corners, ``x2 >= x1``), the
convention of the data protocol (docs/seams.md) and of torchvision. A box's area is
``(x2 - x1) * (y2 - y1)``: coordinates are continuous, no "+1" as in the older Caffe code.

* :func:`box_iou`: intersection over union of every pair, the yardstick of the whole module.
* :func:`nms`, :func:`batched_nms`: greedy non-maximum suppression (keep a box unless a
  higher-scoring kept box overlaps it by IoU > threshold).
* :func:`encode_boxes`, :func:`decode_boxes`: the box parameterisation of R-CNN / Faster R-CNN.
* :func:`anchor_grid`: Faster R-CNN's anchors, sizes × aspect ratios at every feature-map cell.
* :func:`match_boxes`, :func:`sample_balanced`: label candidates (anchors, proposals) by their
  IoU with the ground truth and draw a minibatch with a fixed share of positives.
* :func:`objects_found`: which ground-truth objects an image's detections find (recall, per object).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "box_area",
    "box_iou",
    "box_convert",
    "clip_boxes",
    "remove_small_boxes",
    "nms",
    "batched_nms",
    "encode_boxes",
    "decode_boxes",
    "anchor_grid",
    "match_boxes",
    "sample_balanced",
    "objects_found",
    "BBOX_CLIP",
]

# Faster R-CNN clamps predicted log-scale changes so exp() cannot overflow: at most 1000/16 times
# larger (torchvision's bbox_xform_clip).
BBOX_CLIP = math.log(1000.0 / 16)


def _check_boxes(boxes: torch.Tensor, name: str = "boxes") -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, 4); got {type(boxes).__name__}"
        )
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} must have shape (N, 4) in x1, y1, x2, y2; got {tuple(boxes.shape)} "
            "(use boxes.reshape(-1, 4), or boxes[None] for a single box)"
        )


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of each ``(x1, y1, x2, y2)`` box: ``(x2 - x1) * (y2 - y1)``."""
    _check_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: ``(N, 4), (M, 4) -> (N, M)``.

    IoU(A, B) = |A ∩ B| / |A ∪ B| = inter / (area(A) + area(B) - inter). Two empty boxes give
    0 / 0 = NaN, exactly as torchvision does (NMS then never suppresses with them).
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # no overlap -> 0 width or height
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert between ``"xyxy"`` (corners), ``"xywh"`` (corner + size, COCO's) and
    ``"cxcywh"`` (centre + size, YOLO's)."""
    _check_boxes(boxes)
    fmts = ("xyxy", "xywh", "cxcywh")
    for f in (in_fmt, out_fmt):
        if f not in fmts:
            raise ValueError(f"unknown box format {f!r}; use one of {fmts}")
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    # now x1, y1, x2, y2
    if out_fmt == "xywh":
        return torch.stack([a, b, c - a, d - b], -1)
    if out_fmt == "cxcywh":
        return torch.stack([(a + c) / 2, (b + d) / 2, c - a, d - b], -1)
    return torch.stack([a, b, c, d], -1)


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clip boxes to an image of ``size = (height, width)``."""
    _check_boxes(boxes)
    h, w = size
    x = boxes[:, 0::2].clamp(0, w)
    y = boxes[:, 1::2].clamp(0, h)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], -1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``."""
    _check_boxes(boxes)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((w >= min_size) & (h >= min_size))[0]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; the indices kept, in decreasing score order.

    Visit boxes from the highest score down; keep a box unless a box kept before it overlaps it by
    IoU *greater* than ``iou_threshold`` (a box at exactly the threshold survives). Equal scores
    keep their input order (a stable sort), as torchvision does. The IoUs of all pairs are computed
    at once (O(N²) memory); the greedy pass itself is sequential by nature: one row per kept box.
    """
    _check_boxes(boxes)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"nms: scores must have shape ({boxes.shape[0]},), one per box; got {tuple(scores.shape)}"
        )
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    # overlaps[i, j]: box i (in score order) would suppress box j. NaN (empty boxes) is never >.
    overlaps = (box_iou(sorted_boxes, sorted_boxes) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]  # every box this one overlaps too much is out
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category ``idxs`` (boxes of different categories never suppress each other).

    The trick torchvision uses: shift every category's boxes by ``idx * (max coordinate + 1)`` so
    boxes of different categories cannot overlap, then run one :func:`nms`.
    """
    _check_boxes(boxes)
    if idxs.shape != scores.shape:
        raise ValueError(
            f"batched_nms: idxs must have one category per box, shape {tuple(scores.shape)}; got {tuple(idxs.shape)}"
        )
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def encode_boxes(
    boxes: torch.Tensor,
    anchors: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Regression targets ``t = (tx, ty, tw, th)`` that move each anchor / proposal onto its box.

    R-CNN (Girshick et al. 2014, Appendix C) and Faster R-CNN (Ren et al. 2015, eq. 2)::

        tx = (x - xa) / wa    ty = (y - ya) / ha    tw = log(w / wa)    th = log(h / ha)

    with (x, y, w, h) the box's centre and size and (xa, ya, wa, ha) the anchor's; ``weights``
    multiply them (torchvision's box head uses (10, 10, 5, 5) so the targets have unit-ish scale).
    """
    _check_boxes(boxes)
    _check_boxes(anchors, "anchors")
    if boxes.shape[0] != anchors.shape[0]:
        raise ValueError(
            f"encode_boxes pairs boxes with anchors one to one: {boxes.shape[0]} vs {anchors.shape[0]}"
        )
    wx, wy, ww, wh = weights
    wa = anchors[:, 2] - anchors[:, 0]
    ha = anchors[:, 3] - anchors[:, 1]
    xa = anchors[:, 0] + 0.5 * wa
    ya = anchors[:, 1] + 0.5 * ha
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    x = boxes[:, 0] + 0.5 * w
    y = boxes[:, 1] + 0.5 * h
    tx = wx * (x - xa) / wa  # tx = (x - xa) / wa
    ty = wy * (y - ya) / ha  # ty = (y - ya) / ha
    tw = ww * torch.log(w / wa)  # tw = log(w / wa)
    th = wh * torch.log(h / ha)  # th = log(h / ha)
    return torch.stack([tx, ty, tw, th], dim=1)


def decode_boxes(
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clip: float = BBOX_CLIP,
) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: apply ``deltas (N, 4k)`` to ``anchors (N, 4)`` -> boxes ``(N, 4k)``.

    x = tx * wa + xa, y = ty * ha + ya, w = wa * exp(tw), h = ha * exp(th); ``tw, th`` are clamped
    at ``clip`` first. ``k > 1`` decodes one box per class from the same anchor.
    """
    _check_boxes(anchors, "anchors")
    if deltas.dim() != 2 or deltas.shape[1] % 4 or deltas.shape[0] != anchors.shape[0]:
        raise ValueError(
            f"decode_boxes: deltas must have shape ({anchors.shape[0]}, 4k), one row per anchor; got {tuple(deltas.shape)}"
        )
    wx, wy, ww, wh = weights
    anchors = anchors.to(deltas.dtype)
    wa = (anchors[:, 2] - anchors[:, 0])[:, None]
    ha = (anchors[:, 3] - anchors[:, 1])[:, None]
    xa = anchors[:, 0, None] + 0.5 * wa
    ya = anchors[:, 1, None] + 0.5 * ha
    tx, ty = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    tw = (deltas[:, 2::4] / ww).clamp(max=clip)
    th = (deltas[:, 3::4] / wh).clamp(max=clip)
    x = tx * wa + xa  # x = tx * wa + xa
    y = ty * ha + ya  # y = ty * ha + ya
    half_w = 0.5 * torch.exp(tw) * wa  # w = wa * exp(tw)
    half_h = 0.5 * torch.exp(th) * ha  # h = ha * exp(th)
    out = torch.stack([x - half_w, y - half_h, x + half_w, y + half_h], dim=2)  # (N, k, 4)
    return out.reshape(deltas.shape[0], -1)


def anchor_grid(
    feature_size: tuple[int, int],
    stride: int | tuple[int, int],
    sizes: Sequence[float] = (32, 64, 128),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    offset: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Faster R-CNN's anchors (Ren et al. 2015, Section 3.1.1): at each cell of a feature map of
    ``feature_size = (Hf, Wf)``, ``len(sizes) * len(aspect_ratios)`` boxes centred on the cell.

    An anchor of size s and aspect ratio r = h / w has area s² (w = s / sqrt(r), h = s * sqrt(r)),
    corners rounded to whole pixels. Cell (i, j) is centred at ((j + offset) * stride,
    (i + offset) * stride); ``offset=0`` is torchvision's layout, 0.5 the centre of the cell.
    Returns ``(Hf * Wf * A, 4)``, ordered cell by cell (row-major), then ratio, then size.
    """
    if not sizes or not aspect_ratios:
        raise ValueError("anchor_grid needs at least one size and one aspect ratio")
    if min(sizes) <= 0 or min(aspect_ratios) <= 0:
        raise ValueError(
            f"anchor sizes and aspect ratios must be positive; got {sizes}, {aspect_ratios}"
        )
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    hf, wf = feature_size
    scales = torch.as_tensor(sizes, dtype=torch.float32, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32, device=device)
    h_ratios = torch.sqrt(ratios)  # h = s * sqrt(r)
    w_ratios = 1 / h_ratios  # w = s / sqrt(r)
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # (A, 4), centred on 0
    xs = (torch.arange(wf, dtype=torch.float32, device=device) + offset) * sw
    ys = (torch.arange(hf, dtype=torch.float32, device=device) + offset) * sh
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    cx, cy = cx.reshape(-1), cy.reshape(-1)
    shifts = torch.stack([cx, cy, cx, cy], dim=1)  # (Hf * Wf, 4)
    return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)


BACKGROUND, IGNORE = (
    -1,
    -2,
)  # match_boxes' codes for "no object" and "neither: leave out of the loss"


def match_boxes(
    iou: torch.Tensor, high: float, low: float, allow_low_quality: bool = False
) -> torch.Tensor:
    """Assign each of N candidates to a ground truth from ``iou (G, N)``: the index of its best
    ground truth where that IoU >= ``high``, ``-1`` (background) where it is < ``low``, ``-2``
    (ignored) in between.

    Faster R-CNN's RPN rule (Ren et al. 2015, Section 3.1.2): positive at IoU >= 0.7, negative below
    0.3, and with ``allow_low_quality`` also the anchor(s) with the highest IoU for each ground truth,
    so that every object gets at least one positive (ties all count; an object no candidate touches
    gets none).
    """
    if iou.dim() != 2:
        raise ValueError(f"match_boxes needs a (G, N) IoU matrix; got {tuple(iou.shape)}")
    if low > high:
        raise ValueError(f"match_boxes: low ({low}) must not exceed high ({high})")
    if iou.shape[0] == 0:  # no objects in this image: everything is background
        return torch.full((iou.shape[1],), BACKGROUND, dtype=torch.long, device=iou.device)
    best, matches = iou.max(dim=0)
    out = matches.clone()
    out[best < low] = BACKGROUND
    out[(best >= low) & (best < high)] = IGNORE
    if allow_low_quality:
        best_per_gt = iou.max(dim=1, keepdim=True).values
        _, cand = torch.where((iou == best_per_gt) & (best_per_gt > 0))
        out[cand] = matches[cand]
    return out


def sample_balanced(
    matches: torch.Tensor,
    batch_size: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a random minibatch of positives (``matches >= 0``) and negatives (``== -1``):
    at most ``batch_size * positive_fraction`` positives, negatives fill the rest (Fast R-CNN's 25 %
    foreground RoIs, the RPN's 1:1 anchors). ``generator`` (on the CPU) keeps validation from
    consuming the global random stream."""
    pos = torch.where(matches >= 0)[0]
    neg = torch.where(matches == BACKGROUND)[0]
    n_pos = min(int(batch_size * positive_fraction), pos.numel())
    n_neg = min(batch_size - n_pos, neg.numel())
    pick_pos = torch.randperm(pos.numel(), generator=generator)[:n_pos].to(pos.device)
    pick_neg = torch.randperm(neg.numel(), generator=generator)[:n_neg].to(neg.device)
    return pos[pick_pos], neg[pick_neg]


def objects_found(
    detections: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    match_labels: bool = True,
) -> torch.Tensor:
    """Which ground-truth objects of one image the detections find: a bool ``(k,)``.

    The PASCAL rule, per object rather than averaged: detections scoring at least
    ``score_threshold`` are taken best first; each claims the unclaimed object (of its own label,
    when ``match_labels``) it overlaps most, if that IoU is at least ``iou_threshold``. Use it to
    split recall by object size, crowding or anything else an object carries."""
    gt = target["boxes"].reshape(-1, 4).float()
    found = torch.zeros(len(gt), dtype=torch.bool, device=gt.device)
    keep = detections["scores"] >= score_threshold
    boxes = detections["boxes"][keep].reshape(-1, 4).float().to(gt.device)
    if len(gt) == 0 or len(boxes) == 0:
        return found
    order = torch.argsort(detections["scores"][keep].to(gt.device), descending=True, stable=True)
    iou = box_iou(boxes[order], gt)  # (detections, objects)
    if match_labels:
        same = detections["labels"][keep].to(gt.device)[order][:, None] == target["labels"][None]
        iou = torch.where(same, iou, torch.full_like(iou, -1.0))
    for row in iou:
        row = torch.where(found, torch.full_like(row, -1.0), row)
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            found[best] = True
    return found
