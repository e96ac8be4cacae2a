"""R-CNN — Girshick, Donahue, Darrell & Malik (2014), "Rich feature hierarchies for accurate object
detection and semantic segmentation", CVPR 2014.

The first detector to bring ImageNet-era CNNs to detection, in four plain steps: (1) ~2,000
category-independent region proposals per image from selective search; (2) each proposal, with 16
pixels of context, warped to the CNN's fixed input size whatever its shape; (3) one CNN pass *per
proposal* gives a feature vector; (4) per-class classifiers score it and a per-class linear
regression refines its box, then per-class non-maximum suppression. PASCAL VOC 2010 test mAP
53.7 % (VOC 2007: 58.5 %, 66.0 % with VGG-16 and box regression) against 40.4 % for the best
earlier system (SegDPM) — at 13 s per image on a GPU, because of step (3).

Differences from the paper, said plainly: a small CNN trained from scratch on the proposals
(no ImageNet pre-training), and the classifier and box regressor trained jointly with the CNN by
a softmax + smooth-L1 loss (the paper fine-tunes with a softmax, then fits linear SVMs and ridge
regressions on the frozen features: about +3 mAP, its Appendix B). Warping uses bilinear sampling
(RoI align on the image itself).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn.boxes import box_iou, encode_boxes, match_boxes, sample_balanced
from scratchlib.nn.selective_search import selective_search

from . import ModelInfo, register
from ._detection import (
    check_detection_batch,
    detection_ops,
    empty_detections,
    postprocess_detections,
)

__all__ = ["RCNN"]

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@register
class RCNN(nn.Module):
    """Proposals -> warped crops -> CNN features -> class scores and per-class box deltas.

    ``proposal_fn(image) -> (N, 4)`` replaces selective search if given; proposals are cached per
    image (by content), so the second epoch does not search again. Targets' ``labels`` are object
    classes ``0..num_classes-1``; the model adds the background class.
    """

    MODEL_INFO = ModelInfo(
        name="R-CNN",
        paper="Rich feature hierarchies for accurate object detection and semantic segmentation",
        authors="Ross Girshick, Jeff Donahue, Trevor Darrell and Jitendra Malik",
        year=2014,
        module="03-Applying-CNNs",
        category="object detection (region-based)",
        key_innovations=(
            "CNN features of warped region proposals replace hand-made features (SIFT, HOG) for detection",
            "supervised pre-training on a large auxiliary set, then fine-tuning on the small detection set",
            "class-specific bounding-box regression to fix localisation errors",
        ),
        limitations=(
            "one CNN forward pass per proposal: ~2,000 per image, 13 s per image on a GPU",
            "a multi-stage pipeline (proposals, CNN, SVMs, regressors) trained piece by piece",
        ),
        paper_result="PASCAL VOC 2010 test mAP 53.7% (VOC 2007 test 58.5% with box regression, AlexNet)",
        url="https://arxiv.org/abs/1311.2524",
    )

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        crop_size: int = 32,
        widths: tuple[int, ...] = (16, 32, 64),
        representation: int = 256,
        context: float = 16 / 227,
        max_proposals: int = 200,
        rois_per_image: int = 64,
        positive_fraction: float = 0.25,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.3,
        max_detections: int = 100,
        proposal_fn: Any = None,
        torchvision_ops: bool | tuple[str, ...] = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(
                f"num_classes counts object classes (no background); got {num_classes}"
            )
        self.num_classes, self.crop_size, self.context = num_classes, crop_size, context
        self.max_proposals, self.rois_per_image = max_proposals, rois_per_image
        self.positive_fraction = positive_fraction
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_detections, self.torchvision_ops = max_detections, torchvision_ops
        self.ops = detection_ops(torchvision_ops)
        self.proposal_fn = proposal_fn
        self._proposal_cache: dict[str, torch.Tensor] = {}
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:  # the per-region CNN: conv-BN-ReLU, halve the size each stage
            layers += [
                nn.Conv2d(c, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            layers.append(nn.MaxPool2d(2))
            c = w
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        side = crop_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"crop_size {crop_size} is too small for {len(widths)} poolings")
        self.fc = nn.Sequential(nn.Linear(c * side * side, representation), nn.ReLU(inplace=True))
        self.cls_score = nn.Linear(representation, num_classes + 1)  # + background
        self.bbox_pred = nn.Linear(representation, 4 * (num_classes + 1))
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    # --- step 1: proposals -----------------------------------------------------------------------
    def propose(self, image: torch.Tensor) -> torch.Tensor:
        """Proposals for one ``(C, H, W)`` image (selective search unless ``proposal_fn``), cached."""
        key = hashlib.blake2b(image.detach().cpu().numpy().tobytes(), digest_size=16).hexdigest()
        if key not in self._proposal_cache:
            fn = self.proposal_fn or (lambda img: selective_search(img))
            boxes = torch.as_tensor(fn(image), dtype=torch.float32).reshape(-1, 4)
            if len(self._proposal_cache) > 10_000:  # bounded: a long run must not grow without end
                self._proposal_cache.clear()
            self._proposal_cache[key] = boxes[: self.max_proposals].cpu()
        return self._proposal_cache[key].to(image.device)

    # --- step 2: warp each region, with context ----------------------------------------------------
    def warp(self, images: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Each box dilated so that, once warped to ``crop_size``, ``context`` of it is surrounding
        image (the paper's p = 16 pixels at 227), then resampled bilinearly to a square:
        ``(N, C, crop, crop)``. Context beyond the image is zero."""
        grown = []
        for b in boxes:
            w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            pad = self.context / (1 - 2 * self.context)  # pad / (w + 2 pad) = context
            dx, dy = w * pad, h * pad
            grown.append(torch.stack([b[:, 0] - dx, b[:, 1] - dy, b[:, 2] + dx, b[:, 3] + dy], 1))
        return self.ops.roi_align(images, grown, self.crop_size, 1.0, 2, True)

    # --- steps 3 and 4: CNN features, class scores and box deltas ----------------------------------
    def score(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.fc(self.cnn(crops))  # one CNN pass per region
        return self.cls_score(features), self.bbox_pred(features)

    def compute_losses(self, images, targets, generator=None) -> dict[str, torch.Tensor]:
        """Per image ``rois_per_image`` regions, a quarter foreground (IoU >= 0.5 with an object,
        ground truth included: the paper's fine-tuning), the rest background. Box regression learns
        from regions with IoU >= 0.6 (the paper's Appendix C)."""
        boxes, labels, regress, matched = [], [], [], []
        for img, t in zip(images, targets, strict=True):
            cand = torch.cat([self.propose(img), t["boxes"]])
            iou = box_iou(t["boxes"], cand)  # (objects, candidates)
            matches = match_boxes(iou, 0.5, 0.5)
            pos, neg = sample_balanced(
                matches, self.rois_per_image, self.positive_fraction, generator
            )
            lab = torch.zeros(len(pos) + len(neg), dtype=torch.long, device=images.device)
            lab[: len(pos)] = t["labels"][matches[pos]] + 1
            boxes.append(cand[torch.cat([pos, neg])])
            labels.append(lab)
            reg = torch.zeros_like(lab, dtype=torch.bool)
            if len(pos):
                reg[: len(pos)] = iou[matches[pos], pos] >= 0.6
            regress.append(reg)
            gt = torch.zeros(len(lab), 4, device=images.device)
            gt[: len(pos)] = t["boxes"][matches[pos]]
            matched.append(gt)
        labels, regress = torch.cat(labels), torch.cat(regress)
        class_logits, box_deltas = self.score(self.warp(images, boxes))
        loss_cls = F.cross_entropy(class_logits.float(), labels)
        rows = torch.where(regress)[0]
        # each regressed region's deltas for its true class
        pred = box_deltas.float().reshape(len(labels), -1, 4)[rows, labels[rows]]
        target = encode_boxes(torch.cat(matched)[rows], torch.cat(boxes)[rows], BOX_WEIGHTS)
        loss_box = F.smooth_l1_loss(pred, target, beta=1 / 9, reduction="sum") / max(len(labels), 1)
        return {"loss": loss_cls + loss_box, "loss_classifier": loss_cls, "loss_box_reg": loss_box}

    # --- the seams ------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = check_detection_batch(batch, self.num_classes)
        out = self.compute_losses(images, targets)
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        images, targets = check_detection_batch(batch, self.num_classes)
        g = torch.Generator().manual_seed(batch_idx)
        return {k: v.detach() for k, v in self.compute_losses(images, targets, g).items()}

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        return self.detect(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return self.detect(images)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        max_detections: int | None = None,
        regress: bool = True,
    ) -> list[dict[str, torch.Tensor]]:
        """Score every proposal of every image (one CNN pass each), refine its box per class
        (``regress=False`` keeps the proposal's own box: the paper's ablation), NMS within each
        class (IoU 0.3, the paper's): ``boxes``, ``scores``, ``labels`` per image."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(
                "detect takes a batch of images (B, C, H, W); use images[None] for one"
            )
        was_training = self.training
        self.eval()
        try:
            proposals = [self.propose(img) for img in images]
            size = tuple(images.shape[-2:])
            out = []
            for i, p in enumerate(proposals):
                if len(p) == 0:
                    out.append(empty_detections(images.device))
                    continue
                class_logits, box_deltas = self.score(self.warp(images[i : i + 1], [p]))
                out.append(
                    postprocess_detections(
                        class_logits,
                        box_deltas if regress else None,
                        p,
                        size,
                        BOX_WEIGHTS,
                        self.score_threshold if score_threshold is None else score_threshold,
                        self.nms_threshold if nms_threshold is None else nms_threshold,
                        self.max_detections if max_detections is None else max_detections,
                        self.ops.batched_nms,
                    )
                )
            return out
        finally:
            self.train(was_training)
