"""YOLO v1 — Redmon, Divvala, Girshick & Farhadi (2016), "You only look once: Unified, real-time
object detection", CVPR 2016.

Detection as one regression: the image is divided into an S x S grid; each cell predicts B boxes
(x, y relative to the cell, sqrt(w), sqrt(h) relative to the image, and a confidence = Pr(object) x
IoU) plus C class probabilities shared by its boxes: one forward pass gives an S x S x (5B + C)
tensor. No proposals, no per-region work: 45 images/s at 63.4 % mAP on PASCAL VOC 2007 (Fast YOLO
155 images/s at 52.7 %), against Faster R-CNN's 7 images/s at 73.2 % — and the paper's own
error analysis: more localisation errors, and "each grid cell only predicts two boxes and can only
have one class", so small objects in groups (flocks of birds) are missed.

The loss (eq. 3) is a sum of squared errors: λ_coord = 5 on the box terms, λ_noobj = 0.5 on the
confidence of boxes responsible for no object, square roots of w and h so that an error on a small
box costs more than on a large one. The box "responsible" for an object is the one of its cell's B
predictors with the highest IoU with it. Differences from the paper, said plainly: a small
convolutional backbone with batch norm (YOLO v2's addition) trained from scratch instead of 24
convolutional layers pre-trained on ImageNet; and ``head="conv"`` offers a fully convolutional head
(a 3x3 and a 1x1 convolution computing every cell's 5B + C numbers with shared weights, as YOLO v2
went on to do) beside the paper's two fully connected layers (``head="fc"``, the default). The FC
head must learn every cell's predictions separately: without ImageNet pre-training and on a few
thousand images it barely learns the classes (03-Applying-CNNs/03_yolo measures it).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn.boxes import clip_boxes

from . import ModelInfo, register
from ._detection import check_detection_batch, detection_ops

__all__ = ["YOLOv1"]


@register
class YOLOv1(nn.Module):
    """``model(images)`` -> the raw grid ``(N, S, S, 5B + C)``; :meth:`detect` -> per-image dicts.
    ``head``: ``"fc"`` (the paper's two fully connected layers) or ``"conv"`` (shared per cell)."""

    MODEL_INFO = ModelInfo(
        name="YOLO v1",
        paper="You only look once: Unified, real-time object detection",
        authors="Joseph Redmon, Santosh Divvala, Ross Girshick and Ali Farhadi",
        year=2016,
        module="03-Applying-CNNs",
        category="object detection (one-stage)",
        key_innovations=(
            "detection as a single regression from pixels to an S x S x (5B + C) grid of boxes and classes",
            "one network pass per image: real time (45 fps) with global context",
            "a sum-squared loss weighted for coordinates (λ_coord = 5) and empty cells (λ_noobj = 0.5)",
        ),
        limitations=(
            "each cell predicts at most B boxes of one class: small objects in groups are missed",
            "coarse features and a loss that treats errors alike give more localisation errors",
        ),
        paper_result="PASCAL VOC 2007 test mAP 63.4% at 45 fps; Fast YOLO 52.7% at 155 fps (Table 1)",
        url="https://arxiv.org/abs/1506.02640",
    )

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 64,
        S: int = 7,
        B: int = 2,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        hidden: int = 256,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        dropout: float = 0.0,
        head: str = "fc",
        score_threshold: float = 0.1,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        torchvision_ops: bool | tuple[str, ...] = False,
    ) -> None:
        super().__init__()
        if num_classes < 1 or S < 1 or B < 1:
            raise ValueError(f"num_classes, S and B must be positive; got {num_classes}, {S}, {B}")
        self.num_classes, self.image_size, self.S, self.B = num_classes, image_size, S, B
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_detections, self.torchvision_ops = max_detections, torchvision_ops
        self.ops = detection_ops(torchvision_ops)
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:  # conv - BN - leaky ReLU (0.1, the paper's), halve the size each stage
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.LeakyReLU(0.1, inplace=True),
                nn.MaxPool2d(2),
            ]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(S))
        out = 5 * B + num_classes
        if head == "fc":
            self.head = nn.Sequential(  # the paper's two fully connected layers
                nn.Flatten(),
                nn.Linear(c * S * S, hidden),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, S * S * out),  # linear output, as in the paper
            )
        elif head == "conv":
            self.head = nn.Sequential(  # the same prediction at every cell, weights shared
                nn.Conv2d(c, hidden, 3, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Dropout(dropout),
                nn.Conv2d(hidden, out, 1),  # (N, 5B + C, S, S), linear output
            )
        else:
            raise ValueError(
                f"head must be 'fc' (the paper's) or 'conv' (shared per cell); got {head!r}"
            )
        self.head_kind = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"YOLOv1 was built for (N, C, {self.image_size}, {self.image_size}) images; got "
                f"{tuple(images.shape)} (resize the images or pass image_size=...)"
            )
        out = self.head(self.features(images))
        if self.head_kind == "conv":
            return out.permute(0, 2, 3, 1)  # (N, S, S, 5B + C): a cell's row, column, then values
        return out.reshape(-1, self.S, self.S, 5 * self.B + self.num_classes)

    # --- the grid, as boxes ----------------------------------------------------------------------
    def decode(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grid output -> boxes ``(N, S, S, B, 4)`` xyxy pixels, confidences ``(N, S, S, B)``,
        class probabilities ``(N, S, S, C)``."""
        n, s, b = out.shape[0], self.S, self.B
        pred = out[..., : 5 * b].reshape(n, s, s, b, 5)
        cell = self.image_size / s
        j = torch.arange(s, device=out.device, dtype=out.dtype)  # column
        cx = (j[None, None, :, None] + pred[..., 0]) * cell  # x is relative to the cell
        cy = (j[None, :, None, None] + pred[..., 1]) * cell
        w = pred[..., 2].square() * self.image_size  # the network predicts sqrt(w)
        h = pred[..., 3].square() * self.image_size
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        return boxes, pred[..., 4], out[..., 5 * b :]

    def encode_targets(
        self, targets: list[dict[str, torch.Tensor]], device
    ) -> dict[str, torch.Tensor]:
        """Per cell: whether an object's centre falls in it, that object's (x, y, sqrt w, sqrt h)
        relative to cell / image, its box and one-hot class. One object per cell (the paper's
        limit): when several centres share a cell, the largest object wins."""
        n, s, k = len(targets), self.S, self.num_classes
        obj = torch.zeros(n, s, s, dtype=torch.bool, device=device)
        coords = torch.zeros(n, s, s, 4, device=device)
        boxes = torch.zeros(n, s, s, 4, device=device)
        classes = torch.zeros(n, s, s, k, device=device)
        cell = self.image_size / s
        for i, t in enumerate(targets):
            bx = t["boxes"]
            area = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
            for o in torch.argsort(area).tolist():  # small first: a larger object overwrites it
                x1, y1, x2, y2 = bx[o]
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                col = int((cx / cell).clamp(0, s - 1))
                row = int((cy / cell).clamp(0, s - 1))
                obj[i, row, col] = True
                coords[i, row, col] = torch.stack(
                    [
                        cx / cell - col,  # x within the cell, 0..1
                        cy / cell - row,
                        ((x2 - x1) / self.image_size).sqrt(),  # sqrt(w / image width)
                        ((y2 - y1) / self.image_size).sqrt(),
                    ]
                )
                boxes[i, row, col] = bx[o]
                classes[i, row, col] = F.one_hot(t["labels"][o], k).float()
        return {"obj": obj, "coords": coords, "boxes": boxes, "classes": classes}

    def loss(
        self, out: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The paper's eq. (3), summed over the grid and averaged over the images."""
        n, s, b = out.shape[0], self.S, self.B
        t = self.encode_targets(targets, out.device)
        out = out.float()
        pred = out[..., : 5 * b].reshape(n, s, s, b, 5)
        boxes, conf, class_probs = self.decode(out)
        # IoU of each predictor with its cell's object; the best one is "responsible" (1_ij^obj)
        flat_pred = boxes.detach().reshape(n * s * s, b, 4)
        flat_gt = t["boxes"].reshape(n * s * s, 1, 4)
        iou = _paired_iou(flat_pred, flat_gt.expand_as(flat_pred)).reshape(n, s, s, b)
        best = iou.argmax(dim=-1)
        resp = F.one_hot(best, b).bool() & t["obj"][..., None]  # 1_ij^obj: (N, S, S, B)
        noobj = ~resp  # 1_ij^noobj
        tc = t["coords"][..., None, :].expand(n, s, s, b, 4)
        # λ_coord Σ 1_ij^obj [(x - x̂)² + (y - ŷ)²]
        loss_xy = self.lambda_coord * ((pred[..., :2] - tc[..., :2]).square().sum(-1) * resp).sum()
        # λ_coord Σ 1_ij^obj [(√w - √ŵ)² + (√h - √ĥ)²]   (the network outputs √w, √h directly)
        loss_wh = (
            self.lambda_coord * ((pred[..., 2:4] - tc[..., 2:4]).square().sum(-1) * resp).sum()
        )
        # Σ 1_ij^obj (C - Ĉ)², with Ĉ the IoU of the predicted box with the object
        loss_obj = ((conf - iou).square() * resp).sum()
        # λ_noobj Σ 1_ij^noobj (C - 0)²
        loss_noobj = self.lambda_noobj * (conf.square() * noobj).sum()
        # Σ_i 1_i^obj Σ_c (p(c) - p̂(c))²
        loss_class = ((class_probs - t["classes"]).square().sum(-1) * t["obj"]).sum()
        parts = {
            "loss_xy": loss_xy / n,
            "loss_wh": loss_wh / n,
            "loss_obj": loss_obj / n,
            "loss_noobj": loss_noobj / n,
            "loss_class": loss_class / n,
        }
        return {"loss": sum(parts.values()), **parts}

    # --- the seams -------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = check_detection_batch(batch, self.num_classes)
        out = self.loss(self(images), targets)
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = check_detection_batch(batch, self.num_classes)
        return {k: v.detach() for k, v in self.loss(self(images), targets).items()}

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        return self.detect(batch[0] if isinstance(batch, (tuple, list)) else batch)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Class-specific confidence = Pr(class | object) x confidence for each of the S²B boxes;
        keep those above ``score_threshold``, NMS within each class, the top ``max_detections``."""
        thr = self.score_threshold if score_threshold is None else score_threshold
        nms_thr = self.nms_threshold if nms_threshold is None else nms_threshold
        top = self.max_detections if max_detections is None else max_detections
        was_training = self.training
        self.eval()
        try:
            boxes, conf, probs = self.decode(self(images).float())
        finally:
            self.train(was_training)
        n = images.shape[0]
        scores = (probs[..., None, :] * conf[..., None]).clamp(min=0)  # (N, S, S, B, C)
        results = []
        for i in range(n):
            sc = scores[i].reshape(-1, self.num_classes)  # (S*S*B, C): a score per box and class
            box_idx, label = torch.where(sc > thr)
            score = sc[box_idx, label]
            bx = clip_boxes(boxes[i].reshape(-1, 4)[box_idx], (self.image_size, self.image_size))
            ok = torch.where((bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1]))[0]
            bx, score, label = bx[ok], score[ok], label[ok]
            keep = self.ops.batched_nms(bx, score, label, nms_thr)[:top]
            results.append({"boxes": bx[keep], "scores": score[keep], "labels": label[keep]})
        return results


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``a[..., i]`` with ``b[..., i]`` (element-wise pairs, not all pairs); 0 for empty pairs."""
    lt = torch.max(a[..., :2], b[..., :2])
    rb = torch.min(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[..., 2] - x[..., 0]).clamp(min=0) * (x[..., 3] - x[..., 1]).clamp(min=0)
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
