"""Faster R-CNN — Ren, He, Girshick & Sun (2015), "Faster R-CNN: Towards real-time object detection
with region proposal networks", NeurIPS 2015.

R-CNN ran a CNN once per proposal and took proposals from a slow, hand-made algorithm. Faster R-CNN
computes the image's convolutional features once and lets a small network on top of them, the
Region Proposal Network (RPN), propose the boxes: at every feature-map cell it scores ``A`` anchors
(sizes x aspect ratios) as object / not object and regresses each towards a box. The best ~300
proposals (after NMS) are pooled from the same shared features into a fixed 7x7 grid and a small
head classifies each and refines its box. PASCAL VOC 2007 test: 73.2 % mAP (VGG-16, VOC 07+12
training, 300 proposals) at 5 images/s on a 2015 GPU — against Fast R-CNN with selective search's
70.0 % at ~0.5 images/s.

Read top to bottom: backbone -> RPN (anchors, objectness, proposals, its loss) -> RoI head (sampled
RoIs, RoI align, classification and box regression, its loss) -> post-processing. Choices that
differ from the paper, said plainly: a small VGG-style backbone trained from scratch (no ImageNet
weights), RoI *align* (Mask R-CNN's, 2017, with the half-pixel correction of Detectron2) instead of RoI pooling by default (``roi_op="pool"`` gives
the original), anchors centred on their feature cell, anchors crossing the image border kept in
training (the paper ignores them), joint training of the RPN and head (the paper's "approximate
joint training") with torchvision's defaults for sampling and loss scaling.
``torchvision_ops=True`` swaps our NMS / RoI align for torchvision's compiled kernels (proven equal
in tests/test_boxes.py) when training at size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn.boxes import (
    anchor_grid,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    match_boxes,
    remove_small_boxes,
    sample_balanced,
)

from . import ModelInfo, register
from ._detection import (
    ConvBackbone,
    check_detection_batch,
    detection_ops,
    empty_detections,
    postprocess_detections,
)

__all__ = ["FasterRCNN", "RPNHead", "BoxHead"]

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # scale the head's regression targets to unit-ish size


class RPNHead(nn.Module):
    """3x3 conv "sliding window", then per anchor an objectness logit and 4 box deltas (1x1 convs)."""

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_anchors, 1)
        self.reg = nn.Conv2d(channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls, self.reg):
            nn.init.normal_(layer.weight, std=0.01)  # the paper's initialisation
            nn.init.zeros_(layer.bias)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> objectness ``(B, Hf*Wf*A)`` and deltas ``(B, Hf*Wf*A, 4)``, ordered like :func:`anchor_grid`."""
        b, _, h, w = feature.shape
        t = F.relu(self.conv(feature))
        logits = self.cls(t).permute(0, 2, 3, 1).reshape(b, -1)  # (B, H, W, A) -> cell, then anchor
        deltas = self.reg(t).reshape(b, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        return logits, deltas


class BoxHead(nn.Module):
    """Two fully connected layers on the pooled RoI, then K+1 class scores and a box per class."""

    def __init__(self, in_features: int, representation: int, num_classes: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation)
        self.fc7 = nn.Linear(representation, representation)
        self.cls_score = nn.Linear(representation, num_classes + 1)  # + background
        self.bbox_pred = nn.Linear(representation, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))
        return self.cls_score(x), self.bbox_pred(x)


@register
class FasterRCNN(nn.Module):
    """Backbone + RPN + RoI head. ``labels`` in targets are object classes ``0..num_classes-1``.

    ``model(images)`` (or :meth:`detect`) gives one dict per image: ``boxes`` (n, 4) xyxy pixels,
    ``scores`` (n,), ``labels`` (n,); ``model(images, targets)`` gives the loss dict.
    """

    MODEL_INFO = ModelInfo(
        name="Faster R-CNN",
        paper="Faster R-CNN: Towards real-time object detection with region proposal networks",
        authors="Shaoqing Ren, Kaiming He, Ross Girshick and Jian Sun",
        year=2015,
        module="03-Applying-CNNs",
        category="object detection (two-stage)",
        key_innovations=(
            "a Region Proposal Network shares the detector's convolutional features: proposals almost for free",
            "anchors: reference boxes of several sizes and aspect ratios at every feature-map position",
            "one network trained end to end for proposals, classification and box regression",
        ),
        limitations=(
            "two stages: slower than one-stage detectors such as YOLO",
            "a single coarse feature map struggles with small objects (fixed later by feature pyramids)",
        ),
        paper_result="PASCAL VOC 2007 test mAP 73.2% (VGG-16, VOC 07+12, 300 proposals) at 5 fps (Table 3)",
        url="https://arxiv.org/abs/1506.01497",
    )

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        anchor_sizes: tuple[float, ...] = (16, 32, 64),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        rpn_pre_nms: tuple[int, int] = (600, 300),  # (training, testing)
        rpn_post_nms: tuple[int, int] = (200, 100),
        rpn_nms_threshold: float = 0.7,
        rpn_batch: int = 256,
        roi_size: int = 7,
        representation: int = 256,
        box_batch: int = 128,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        roi_op: str = "align",
        torchvision_ops: bool | tuple[str, ...] = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(
                f"num_classes counts object classes (no background); got {num_classes}"
            )
        if roi_op not in ("align", "pool"):
            raise ValueError(
                f"roi_op must be 'align' (RoIAlign) or 'pool' (RoIPool); got {roi_op!r}"
            )
        self.num_classes = num_classes
        self.anchor_sizes, self.aspect_ratios = tuple(anchor_sizes), tuple(aspect_ratios)
        self.rpn_pre_nms, self.rpn_post_nms = rpn_pre_nms, rpn_post_nms
        self.rpn_nms_threshold, self.rpn_batch = rpn_nms_threshold, rpn_batch
        self.roi_size, self.box_batch = roi_size, box_batch
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_detections, self.roi_op = max_detections, roi_op
        self.torchvision_ops = torchvision_ops
        self.ops = detection_ops(torchvision_ops)

        self.backbone = ConvBackbone(in_channels, tuple(widths))
        c = self.backbone.out_channels
        self.rpn_head = RPNHead(c, len(self.anchor_sizes) * len(self.aspect_ratios))
        self.box_head = BoxHead(c * roi_size * roi_size, representation, num_classes)

    # --- shared features and RoI extraction ----------------------------------------------------
    def pool(self, feature: torch.Tensor, boxes: list[torch.Tensor], size: int) -> torch.Tensor:
        """Fixed-size features of image-pixel ``boxes`` (one tensor per image) from the feature map."""
        scale = 1.0 / self.backbone.stride
        boxes = [b.to(feature.dtype) for b in boxes] if feature.dtype == torch.float64 else boxes
        feature = feature.float() if feature.dtype in (torch.float16, torch.bfloat16) else feature
        if self.roi_op == "pool":
            return self.ops.roi_pool(feature, boxes, size, scale)
        return self.ops.roi_align(feature, boxes, size, scale, 2, True)  # pixel centres at +0.5

    def anchors(self, feature: torch.Tensor) -> torch.Tensor:
        h, w = feature.shape[-2:]
        return anchor_grid(
            (h, w), self.backbone.stride, self.anchor_sizes, self.aspect_ratios, 0.5, feature.device
        )

    # --- region proposal network ---------------------------------------------------------------
    def propose(
        self,
        feature: torch.Tensor,
        image_size: tuple[int, int],
        targets: list[dict[str, torch.Tensor]] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """The RPN: proposals per image (boxes, best first, after NMS) and, given targets, its losses."""
        logits, deltas = self.rpn_head(feature)
        anchors = self.anchors(feature)
        b, n = logits.shape
        boxes = decode_boxes(deltas.detach().float().reshape(-1, 4), anchors.repeat(b, 1))
        boxes = boxes.reshape(b, n, 4)
        mode = 0 if self.training else 1
        proposals = []
        for i in range(b):
            score = logits[i].detach().float()
            top = score.topk(min(self.rpn_pre_nms[mode], n)).indices
            bx, sc = clip_boxes(boxes[i, top], image_size), score[top]
            keep = remove_small_boxes(bx, 1e-3)
            bx, sc = bx[keep], sc[keep]
            keep = self.ops.nms(bx, sc, self.rpn_nms_threshold)[: self.rpn_post_nms[mode]]
            proposals.append(bx[keep])
        losses: dict[str, torch.Tensor] = {}
        if targets is not None:
            losses = self.rpn_loss(logits, deltas, anchors, targets, generator)
        return proposals, losses

    def rpn_loss(self, logits, deltas, anchors, targets, generator=None) -> dict[str, torch.Tensor]:
        """L = 1/N Σ BCE(p_i, p_i*) + 1/N Σ p_i* smoothL1(t_i - t_i*) over 256 sampled anchors per
        image, half positive at most (IoU >= 0.7, or an object's best anchor) and the rest negative
        (IoU < 0.3) — the paper's eq. (1), with torchvision's normalisation."""
        obj, box, count = [], [], 0
        for i, t in enumerate(targets):
            matches = match_boxes(box_iou(t["boxes"], anchors), 0.7, 0.3, allow_low_quality=True)
            pos, neg = sample_balanced(matches, self.rpn_batch, 0.5, generator)
            idx = torch.cat([pos, neg])
            label = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).to(logits.dtype)
            obj.append(F.binary_cross_entropy_with_logits(logits[i, idx], label, reduction="sum"))
            target = encode_boxes(t["boxes"][matches[pos]], anchors[pos])
            box.append(F.smooth_l1_loss(deltas[i, pos], target, beta=1 / 9, reduction="sum"))
            count += idx.numel()
        count = max(count, 1)
        return {"loss_objectness": sum(obj) / count, "loss_rpn_box": sum(box) / count}

    # --- RoI head ------------------------------------------------------------------------------
    def sample_rois(
        self,
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        generator: torch.Generator | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Per image ``box_batch`` RoIs, a quarter foreground at most (IoU >= 0.5 with an object,
        ground-truth boxes included as proposals), the rest background (IoU < 0.5): Fast R-CNN's
        minibatch. Each dict: ``boxes``, ``labels`` (0 = background, c + 1 = class c), ``gt``
        (the matched object's index, -1 for background)."""
        out = []
        for p, t in zip(proposals, targets, strict=True):
            cand = torch.cat([p, t["boxes"]])
            matches = match_boxes(box_iou(t["boxes"], cand), 0.5, 0.5)
            pos, neg = sample_balanced(matches, self.box_batch, 0.25, generator)
            idx = torch.cat([pos, neg])
            gt = torch.cat([matches[pos], torch.full_like(neg, -1)])
            labels = torch.zeros_like(idx)
            labels[: len(pos)] = t["labels"][matches[pos]] + 1
            out.append({"boxes": cand[idx], "labels": labels, "gt": gt})
        return out

    def box_loss(
        self, feature: torch.Tensor, rois: list[dict[str, torch.Tensor]], targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        """L = CE(class scores, u) + [u >= 1] smoothL1(t^u - v): Fast R-CNN's multi-task loss (eq. 1)."""
        x = self.pool(feature, [r["boxes"] for r in rois], self.roi_size)
        class_logits, box_deltas = self.box_head(x)
        labels = torch.cat([r["labels"] for r in rois])
        loss_cls = F.cross_entropy(class_logits.float(), labels)
        pos = torch.where(labels > 0)[0]
        v = []  # v: the regression targets of the foreground RoIs, in the order of `pos`
        for r, t in zip(rois, targets, strict=True):
            fg = r["labels"] > 0
            v.append(encode_boxes(t["boxes"][r["gt"][fg]], r["boxes"][fg], BOX_WEIGHTS))
        # t^u: each foreground RoI's predicted deltas for its true class u
        t_u = box_deltas.float().reshape(len(labels), -1, 4)[pos, labels[pos]]
        loss_box = F.smooth_l1_loss(t_u, torch.cat(v), beta=1 / 9, reduction="sum")
        loss_box = loss_box / max(len(labels), 1)
        return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}

    # --- the seams: losses, training / validation steps, detection ------------------------------
    def compute_losses(
        self,
        images: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        feature = self.backbone(images)
        proposals, losses = self.propose(feature, images.shape[-2:], targets, generator)
        rois = self.sample_rois(proposals, targets, generator)
        losses.update(self.box_loss(feature, rois, targets))
        losses.update(self.extra_losses(feature, rois, targets))
        return {"loss": sum(losses.values()), **losses}

    def extra_losses(self, feature, rois, targets) -> dict[str, torch.Tensor]:
        return {}  # Mask R-CNN adds its mask loss here

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None) -> Any:
        if targets is not None:
            images, targets = check_detection_batch(
                (images, targets), self.num_classes, self._needs_masks
            )
            return self.compute_losses(images, targets)
        return self.detect(images)

    _needs_masks = False

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = check_detection_batch(batch, self.num_classes, self._needs_masks)
        out = self.compute_losses(images, targets)
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """The same losses on held-out data; sampling draws from its own seeded generator so
        validating never moves the training's random stream."""
        images, targets = check_detection_batch(batch, self.num_classes, self._needs_masks)
        g = torch.Generator().manual_seed(batch_idx)
        return {k: v.detach() for k, v in self.compute_losses(images, targets, g).items()}

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.detect(images)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image after NMS: ``boxes`` (n, 4), ``scores`` (n,), ``labels`` (n,)."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(
                "detect takes a batch of images (B, C, H, W); use images[None] for one"
            )
        was_training = self.training
        self.eval()
        try:
            feature = self.backbone(images)
            size = tuple(images.shape[-2:])
            proposals, _ = self.propose(feature, size)
            dets = self.detect_from_proposals(
                feature,
                proposals,
                size,
                self.score_threshold if score_threshold is None else score_threshold,
                self.nms_threshold if nms_threshold is None else nms_threshold,
                self.max_detections if max_detections is None else max_detections,
            )
            return self.add_masks(feature, dets, size)
        finally:
            self.train(was_training)

    def detect_from_proposals(
        self, feature, proposals, size, score_thr, nms_thr, max_det
    ) -> list[dict]:
        if sum(len(p) for p in proposals) == 0:
            return [empty_detections(feature.device) for _ in proposals]
        class_logits, box_deltas = self.box_head(self.pool(feature, proposals, self.roi_size))
        out, start = [], 0
        for p in proposals:
            end = start + len(p)
            out.append(
                postprocess_detections(
                    class_logits[start:end],
                    box_deltas[start:end],
                    p,
                    size,
                    BOX_WEIGHTS,
                    score_thr,
                    nms_thr,
                    max_det,
                    self.ops.batched_nms,
                )
            )
            start = end
        return out

    def add_masks(self, feature, dets, size) -> list[dict]:
        return dets  # Mask R-CNN predicts a mask for each detection here
