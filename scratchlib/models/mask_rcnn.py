"""Mask R-CNN — He, Gkioxari, Dollár & Girshick (2017), "Mask R-CNN", ICCV 2017 (Marr Prize).

Faster R-CNN plus a third branch: for each RoI a small fully convolutional head predicts a
28x28 binary mask per class, and only the mask of the RoI's class enters the loss (a per-pixel
sigmoid, so classes never compete for a pixel: that is the classifier's job). The detail that made
it work is RoIAlign: RoIPool's two roundings shift the pooled features by up to a feature stride,
harmless for a box score, ruinous for a pixel mask. COCO test-dev mask AP 35.7 (ResNet-101-FPN);
the ablation (Table 2c, ResNet-50-C4): RoIPool 26.9 AP / 26.4 AP@0.75 -> RoIAlign 30.2 / 31.8.

``roi_op="pool"`` swaps RoIAlign for RoIPool in both heads, for that ablation. Everything else is
:class:`~scratchlib.models.faster_rcnn.FasterRCNN` (read that first).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib.nn import roi as R

from . import ModelInfo, register
from .faster_rcnn import FasterRCNN

__all__ = ["MaskRCNN", "MaskHead", "paste_masks", "crop_masks"]


class MaskHead(nn.Module):
    """A few 3x3 convs on the 14x14 RoI feature, a 2x up-convolution to 28x28, one logit map per class."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, num_convs: int = 4
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(inplace=True)]
            c = channels
        self.convs = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.up(self.convs(x))))


def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """Resize each ``M x M`` mask (probabilities, ``(n, M, M)``) into its box and place it on an
    empty image: ``(n, H, W)``. Each image pixel centre is mapped into the box's mask and sampled
    bilinearly; pixels outside the box get 0."""
    n = masks.shape[0]
    h, w = image_size
    if n == 0:
        return masks.new_zeros((0, h, w))
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))
    xs = torch.arange(w, device=masks.device, dtype=masks.dtype) + 0.5  # pixel centres
    ys = torch.arange(h, device=masks.device, dtype=masks.dtype) + 0.5
    gx = (xs[None] - x1) / (x2 - x1).clamp(min=1e-6) * 2 - 1  # -1 .. 1 across the box, (n, W)
    gy = (ys[None] - y1) / (y2 - y1).clamp(min=1e-6) * 2 - 1  # (n, H)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=-1)
    return F.grid_sample(masks[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


def crop_masks(
    masks: torch.Tensor, boxes: torch.Tensor, size: int, roi_align: Any = R.roi_align
) -> torch.Tensor:
    """The part of each mask ``(n, H, W)`` inside its box ``(n, 4)``, resampled to ``size x size``
    (values in [0, 1]): Mask R-CNN's training target. RoI align with the half-pixel correction
    (``aligned=True``), so the crop's sample points are the pixel centres :func:`paste_masks` maps
    back to — without it every target sits half a pixel off its object, which caps the mask IoU a
    perfect head could reach on thin objects."""
    idx = torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None]
    rois = torch.cat([idx, boxes], 1)
    return roi_align(masks[:, None].to(boxes.dtype), rois, size, 1.0, -1, True)[:, 0]


@register
class MaskRCNN(FasterRCNN):
    """Faster R-CNN with a mask branch. Targets need ``masks`` (k, H, W); detections gain ``masks``
    (n, H, W) uint8 (probability > ``mask_threshold``)."""

    MODEL_INFO = ModelInfo(
        name="Mask R-CNN",
        paper="Mask R-CNN",
        authors="Kaiming He, Georgia Gkioxari, Piotr Dollár and Ross Girshick",
        year=2017,
        module="03-Applying-CNNs",
        category="instance segmentation",
        key_innovations=(
            "a mask branch in parallel with classification and box regression: instance segmentation",
            "RoIAlign: bilinear sampling without rounding keeps pixel-accurate alignment",
            "per-class binary masks with a sigmoid: masks decoupled from classification",
        ),
        limitations=(
            "28x28 masks lose fine detail on large objects",
            "inherits the two-stage detector's speed (about 5 fps in the paper)",
        ),
        paper_result="COCO test-dev mask AP 35.7 (ResNet-101-FPN); RoIAlign vs RoIPool +3.3 AP, +5.4 AP@0.75 (Table 2c)",
        url="https://arxiv.org/abs/1703.06870",
    )

    _needs_masks = True

    def __init__(
        self,
        num_classes: int,
        *args,
        mask_roi_size: int = 14,
        mask_channels: int = 64,
        mask_convs: int = 2,
        mask_threshold: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(num_classes, *args, **kwargs)
        self.mask_roi_size, self.mask_threshold = mask_roi_size, mask_threshold
        self.mask_head = MaskHead(
            self.backbone.out_channels, mask_channels, num_classes, mask_convs
        )

    def extra_losses(self, feature, rois, targets) -> dict[str, torch.Tensor]:
        """L_mask: mean per-pixel binary cross-entropy of the true class's 28x28 mask on each
        foreground RoI. The target is the object's mask cut out by the RoI and resampled to 28x28
        (RoIAlign on the ground-truth mask, as torchvision does, with the half-pixel correction so that
        target and :func:`paste_masks` agree pixel for pixel)."""
        fg = [r["labels"] > 0 for r in rois]
        boxes = [r["boxes"][f] for r, f in zip(rois, fg, strict=True)]
        labels = torch.cat([r["labels"][f] for r, f in zip(rois, fg, strict=True)]) - 1
        if labels.numel() == 0:  # no foreground RoI in this batch: a zero that keeps the graph
            return {"loss_mask": sum(p.sum() for p in self.mask_head.parameters()) * 0.0}
        logits = self.mask_head(self.pool(feature, boxes, self.mask_roi_size))  # (P, K, M, M)
        m = logits.shape[-1]
        mask_targets = []
        for r, f, t, b in zip(rois, fg, targets, boxes, strict=True):
            if len(b) == 0:
                continue
            gt_masks = t["masks"][r["gt"][f]]  # (P_i, H, W): each RoI's own object
            mask_targets.append(crop_masks(gt_masks, b, m, self.ops.roi_align))
        picked = logits[torch.arange(len(labels), device=labels.device), labels]
        loss = F.binary_cross_entropy_with_logits(picked.float(), torch.cat(mask_targets))
        return {"loss_mask": loss}

    def add_masks(self, feature, dets, size) -> list[dict]:
        boxes = [d["boxes"] for d in dets]
        if sum(len(b) for b in boxes) == 0:
            for d in dets:
                d["masks"] = torch.zeros((0, *size), dtype=torch.uint8, device=feature.device)
            return dets
        logits = self.mask_head(self.pool(feature, boxes, self.mask_roi_size))
        start = 0
        for d in dets:
            end = start + len(d["boxes"])
            probs = (
                logits[start:end][torch.arange(end - start, device=logits.device), d["labels"]]
                .float()
                .sigmoid()
            )
            d["masks"] = (paste_masks(probs, d["boxes"], size) > self.mask_threshold).to(
                torch.uint8
            )
            start = end
        return dets
