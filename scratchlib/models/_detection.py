"""Pieces shared by the detection models of Module 3 (R-CNN, Faster R-CNN, Mask R-CNN, YOLO, U-Net):
checking a batch, a small convolutional backbone, the choice of operators, and turning class
scores and box deltas into final detections."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn import boxes as B
from scratchlib.nn import roi as R

__all__ = ["check_detection_batch", "ConvBackbone", "detection_ops", "postprocess_detections"]


def check_detection_batch(
    batch: Any, num_classes: int, need_masks: bool = False
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``(images, targets)`` of the data protocol (docs/seams.md), checked, targets on the images'
    device. ``labels`` are object classes ``0 .. num_classes - 1``; the models keep their own
    background class."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            "a detection batch is (images, targets): images (B, C, H, W), targets a list of B dicts "
            "with 'boxes' (k, 4) and 'labels' (k,) (docs/seams.md)"
        )
    images, targets = batch
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor (B, C, H, W); got {got}")
    if not isinstance(targets, (list, tuple)) or len(targets) != images.shape[0]:
        raise ValueError(
            f"targets must be a list of {images.shape[0]} dicts, one per image; got {type(targets).__name__}"
            + (f" of length {len(targets)}" if isinstance(targets, (list, tuple)) else "")
        )
    out = []
    for i, t in enumerate(targets):
        for key in ("boxes", "labels") + (("masks",) if need_masks else ()):
            if key not in t:
                raise KeyError(f"targets[{i}] has no {key!r}; it has {sorted(t)}")
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=images.device).reshape(
            -1, 4
        )
        labels = torch.as_tensor(t["labels"], dtype=torch.long, device=images.device).reshape(-1)
        if len(boxes) != len(labels):
            raise ValueError(f"targets[{i}]: {len(boxes)} boxes but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"targets[{i}]: labels must be object classes 0..{num_classes - 1} (the model adds its "
                f"own background); got {labels.tolist()} — is num_classes={num_classes} right?"
            )
        if len(boxes) and ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise ValueError(
                f"targets[{i}]: every box needs x2 > x1 and y2 > y1 (x1, y1, x2, y2 pixels); drop empty boxes"
            )
        item = {"boxes": boxes, "labels": labels}
        if "masks" in t:
            masks = torch.as_tensor(t["masks"], device=images.device)
            if (
                masks.dim() != 3
                or masks.shape[0] != len(labels)
                or masks.shape[1:] != images.shape[2:]
            ):
                raise ValueError(
                    f"targets[{i}]['masks'] must be (k, H, W) = ({len(labels)}, {images.shape[2]}, "
                    f"{images.shape[3]}); got {tuple(masks.shape)}"
                )
            item["masks"] = masks
        out.append(item)
    return images, out


class ConvBackbone(nn.Module):
    """A small VGG-style feature extractor: one conv3x3-BN-ReLU pair per stage, a 2x2 max-pool
    before every stage after the first, so the stride is ``2 ** (len(widths) - 1)``."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if not widths:
            raise ValueError("ConvBackbone needs at least one stage width")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            c = w
        self.body = nn.Sequential(*layers)
        self.out_channels, self.stride = c, 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


OPS = ("nms", "batched_nms", "roi_align", "roi_pool")


def detection_ops(torchvision_ops: bool | Sequence[str]) -> SimpleNamespace:
    """Our from-scratch operators, or torchvision's compiled kernels (proven equal in
    tests/test_boxes.py) for training at size, where speed matters: ``True`` takes all four of
    torchvision's, a collection of names (from ``nms``, ``batched_nms``, ``roi_align``,
    ``roi_pool``) only those. On a CPU our RoI align is the faster one and torchvision's NMS and
    RoI pool are (benchmarks/bench_detection.py measures all four)."""
    if isinstance(torchvision_ops, bool):
        chosen = set(OPS) if torchvision_ops else set()
    else:
        chosen = set(torchvision_ops)
        unknown = chosen - set(OPS)
        if unknown:
            raise ValueError(
                f"torchvision_ops names unknown operators {sorted(unknown)}; choose from {OPS}, "
                "or pass True / False for all of them"
            )
    ours = {
        "nms": B.nms,
        "batched_nms": B.batched_nms,
        "roi_align": R.roi_align,
        "roi_pool": R.roi_pool,
    }
    if chosen:
        import torchvision.ops as tvo

        for name in chosen:
            ours[name] = getattr(tvo, name)
    return SimpleNamespace(**ours)


def postprocess_detections(
    class_logits: torch.Tensor,
    box_deltas: torch.Tensor,
    proposals: torch.Tensor,
    image_size: tuple[int, int],
    weights: tuple[float, float, float, float],
    score_threshold: float,
    nms_threshold: float,
    max_detections: int,
    batched_nms: Any = B.batched_nms,
) -> dict[str, torch.Tensor]:
    """One image's detections from a box head: softmax scores, one decoded box per class, clipped;
    drop the background, scores <= ``score_threshold`` and tiny boxes; NMS within each class; the
    top ``max_detections``. ``labels`` come back as object classes 0..K-1."""
    n, k1 = class_logits.shape
    scores = F.softmax(class_logits.float(), dim=1)
    if box_deltas is None:  # no regression: the proposal itself for every class
        boxes = proposals[:, None, :].expand(n, k1, 4)
    else:
        boxes = B.decode_boxes(box_deltas.float(), proposals, weights).reshape(n, k1, 4)
    boxes = B.clip_boxes(boxes.reshape(-1, 4), image_size).reshape(n, k1, 4)
    labels = torch.arange(k1, device=scores.device).expand(n, k1)
    boxes, scores, labels = (
        boxes[:, 1:].reshape(-1, 4),
        scores[:, 1:].reshape(-1),
        labels[:, 1:].reshape(-1),
    )
    keep = torch.where(scores > score_threshold)[0]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = B.remove_small_boxes(boxes, 1e-2)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_threshold)[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep] - 1}


def empty_detections(device: torch.device | str, with_masks: tuple[int, int] | None = None) -> dict:
    out = {
        "boxes": torch.zeros((0, 4), device=device),
        "scores": torch.zeros(0, device=device),
        "labels": torch.zeros(0, dtype=torch.long, device=device),
    }
    if with_masks is not None:
        out["masks"] = torch.zeros((0, *with_masks), dtype=torch.uint8, device=device)
    return out
