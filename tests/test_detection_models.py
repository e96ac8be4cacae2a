"""Module 3's models on tiny synthetic batches: the loss dict each step returns (finite, with its
components), a loss that falls in a few steps, the detection output format, the paper's loss terms
where they can be checked by hand (YOLO), the ablation switches (U-Net skips, Mask R-CNN RoI pool),
region proposals, the plots, and clear errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from scratchlib import models, plots, track
from scratchlib.models.faster_rcnn import FasterRCNN
from scratchlib.models.mask_rcnn import MaskRCNN, paste_masks
from scratchlib.models.rcnn import RCNN
from scratchlib.models.unet import UNet, semantic_target
from scratchlib.models.yolo import YOLOv1
from scratchlib.nn import anchor_grid, nms
from scratchlib.nn.selective_search import proposal_recall, selective_search

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene(n: int = 2, size: int = 48, num_classes: int = 2, seed: int = 0, noise: float = 0.0):
    """Images with two objects each: class 0 a filled rectangle in red, class 1 an ellipse in
    green, on black; targets with boxes, labels and instance masks (the data protocol's batch)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 3, size, size)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    targets = []
    for i in range(n):
        boxes, labels, masks = [], [], []
        for _ in range(2):
            w, h = (int(torch.randint(size // 4, size // 2, (1,), generator=g)) for _ in range(2))
            x = int(torch.randint(0, size - w, (1,), generator=g))
            y = int(torch.randint(0, size - h, (1,), generator=g))
            c = int(torch.randint(0, num_classes, (1,), generator=g))
            if c == 0:
                m = (xx > x) & (xx < x + w) & (yy > y) & (yy < y + h)
            else:
                m = ((xx - x - w / 2) / (w / 2)) ** 2 + ((yy - y - h / 2) / (h / 2)) ** 2 <= 1
            images[i, c % 3][m] = 1.0
            boxes.append([x, y, x + w, y + h])
            labels.append(c)
            masks.append(m.to(torch.uint8))
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor(labels),
                "masks": torch.stack(masks),
            }
        )
    if noise:
        images = images + noise * torch.rand(images.shape, generator=g)
    return images, targets


def train(model, batch, steps: int, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr)
    losses = []
    for step in range(steps):
        out = model.training_step(batch, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    return losses


def check_step(out: dict, keys: set[str]) -> None:
    assert set(out) == keys | {"loss"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in out.values())
    assert out["loss"].requires_grad
    parts = sum(float(v) for k, v in out.items() if k != "loss")
    assert float(out["loss"].detach()) == pytest.approx(
        parts, rel=1e-5
    )  # the total is the sum of its parts


def check_detections(dets, n_images: int, size: int, num_classes: int, masks: bool = False) -> None:
    assert isinstance(dets, list) and len(dets) == n_images
    for d in dets:
        assert set(d) == {"boxes", "scores", "labels"} | ({"masks"} if masks else set())
        k = len(d["scores"])
        assert (
            d["boxes"].shape == (k, 4)
            and d["labels"].shape == (k,)
            and d["labels"].dtype == torch.long
        )
        if k:
            assert d["labels"].min() >= 0 and d["labels"].max() < num_classes
            assert d["boxes"].min() >= 0 and d["boxes"].max() <= size
            assert torch.all(d["scores"][:-1] >= d["scores"][1:])  # best first
        if masks:
            assert d["masks"].shape == (k, size, size) and d["masks"].dtype == torch.uint8


SMALL = dict(
    widths=(8, 16, 32, 32),
    representation=64,
    box_batch=64,
    rpn_batch=64,
    rpn_pre_nms=(300, 150),
    rpn_post_nms=(100, 50),
)


# ---------------------------------------------------------------- Faster R-CNN


def test_faster_rcnn_losses_fall_and_detections_have_the_format():
    torch.manual_seed(0)
    batch = scene()
    model = FasterRCNN(num_classes=2, **SMALL)
    check_step(
        model.training_step(batch, 0),
        {"loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg"},
    )
    losses = train(model, batch, 12)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses
    check_detections(model.detect(batch[0]), 2, 48, 2)
    assert model.training  # detect restores the mode it found
    assert model(batch[0])[0].keys() == {"boxes", "scores", "labels"}
    assert set(model(*batch)) >= {"loss", "loss_objectness"}


def test_faster_rcnn_validation_step_leaves_the_global_random_stream_alone():
    torch.manual_seed(0)
    model = FasterRCNN(num_classes=2, **SMALL).eval()
    batch = scene()
    state = torch.random.get_rng_state()
    a = model.validation_step(batch, 3)
    assert torch.equal(state, torch.random.get_rng_state())
    b = model.validation_step(batch, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)  # deterministic too
    assert not any(v.requires_grad for v in a.values())


def test_faster_rcnn_with_torchvision_ops_computes_the_same_losses():
    batch = scene()
    torch.manual_seed(1)
    ours = FasterRCNN(num_classes=2, **SMALL)
    fast = FasterRCNN(num_classes=2, torchvision_ops=True, **SMALL)
    fast.load_state_dict(ours.state_dict())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    images, targets = batch
    a, b = ours.compute_losses(images, targets, g1), fast.compute_losses(images, targets, g2)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_anchor_count_and_rpn_output_agree():
    model = FasterRCNN(num_classes=1, **SMALL)
    feature = model.backbone(torch.zeros(1, 3, 64, 48))
    logits, deltas = model.rpn_head(feature)
    anchors = model.anchors(feature)
    assert logits.shape == (1, len(anchors)) and deltas.shape == (1, len(anchors), 4)
    assert len(anchors) == 8 * 6 * 9  # stride 8: an 8 x 6 grid, 3 sizes x 3 ratios per cell


# ---------------------------------------------------------------- Mask R-CNN


@pytest.mark.parametrize("roi_op", ["align", "pool"])
def test_mask_rcnn_losses_fall_and_masks_come_out(roi_op):
    torch.manual_seed(0)
    batch = scene()
    model = MaskRCNN(num_classes=2, roi_op=roi_op, mask_channels=16, **SMALL)
    keys = {"loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box_reg", "loss_mask"}
    check_step(model.training_step(batch, 0), keys)
    losses = train(model, batch, 12)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses
    check_detections(model.detect(batch[0], score_threshold=0.0), 2, 48, 2, masks=True)


def test_mask_rcnn_needs_masks_and_roi_op_is_checked():
    images, targets = scene()
    for t in targets:
        del t["masks"]
    with pytest.raises(KeyError, match="masks"):
        MaskRCNN(num_classes=2, **SMALL).training_step((images, targets), 0)
    with pytest.raises(ValueError, match="roi_op"):
        MaskRCNN(num_classes=2, roi_op="warp")


def test_paste_masks_fills_exactly_the_box():
    full = torch.ones(2, 28, 28)
    boxes = torch.tensor([[8.0, 4.0, 24.0, 20.0], [0.0, 0.0, 10.0, 32.0]])
    pasted = paste_masks(full, boxes, (32, 32)) > 0.5
    expected = torch.zeros(2, 32, 32, dtype=torch.bool)
    expected[0, 4:20, 8:24] = True
    expected[1, :, :10] = True
    assert torch.equal(pasted, expected)
    half = torch.zeros(1, 28, 28)
    half[:, :, :14] = 1  # left half of the mask -> left half of the box
    assert torch.equal(
        (paste_masks(half, boxes[:1], (32, 32)) > 0.5)[0], expected[0] & (torch.arange(32) < 16)
    )


# ---------------------------------------------------------------- YOLO v1


def test_yolo_targets_and_the_papers_loss_by_hand():
    model = YOLOv1(num_classes=3, image_size=64, S=4, B=2, widths=(8, 8), hidden=16)
    # one object: box (8, 8)-(40, 24): centre (24, 16) -> cell row 1, column 1 (cells of 16 px)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 24.0]]), "labels": torch.tensor([2])}]
    t = model.encode_targets(targets, "cpu")
    assert t["obj"].sum() == 1 and t["obj"][0, 1, 1]
    torch.testing.assert_close(
        t["coords"][0, 1, 1], torch.tensor([0.5, 0.0, math.sqrt(0.5), math.sqrt(0.25)])
    )
    # a perfect output: predictor 0 exactly on the object, confidence = IoU = 1, right class
    out = torch.zeros(1, 4, 4, 5 * 2 + 3)
    out[0, 1, 1, :4] = t["coords"][0, 1, 1]
    out[0, 1, 1, 4] = 1.0
    out[0, 1, 1, 10:] = torch.tensor([0.0, 0.0, 1.0])
    perfect = model.loss(out, targets)
    assert float(perfect["loss"]) == pytest.approx(0.0, abs=1e-10)
    # move x by 0.1 -> λ_coord * 0.1² (and the confidence target drops below 1)
    out[0, 1, 1, 0] += 0.1
    assert float(model.loss(out, targets)["loss_xy"]) == pytest.approx(5 * 0.01)
    # a confident empty predictor costs λ_noobj * C²
    out[0, 1, 1, 0] -= 0.1
    out[0, 3, 3, 4] = 0.6
    assert float(model.loss(out, targets)["loss_noobj"]) == pytest.approx(0.5 * 0.36)

    # the square root: the same 4-pixel width error costs more on a small box than on a large one
    def wh_loss(width: float) -> float:
        box = {"boxes": torch.tensor([[8.0, 8.0, 8.0 + width, 24.0]]), "labels": torch.tensor([0])}
        enc = model.encode_targets([box], "cpu")
        row, col = torch.nonzero(enc["obj"][0])[0].tolist()
        o = torch.zeros(1, 4, 4, 13)
        o[0, row, col, :4] = enc["coords"][0, row, col]
        o[0, row, col, 2] = math.sqrt((width + 4) / 64)  # predicted 4 px too wide
        return float(model.loss(o, [box])["loss_wh"])

    assert wh_loss(8.0) > 3 * wh_loss(48.0)


def test_yolo_loss_falls_and_detections_have_the_format():
    torch.manual_seed(0)
    batch = scene(n=4, size=48)
    model = YOLOv1(num_classes=2, image_size=48, S=4, widths=(8, 16, 32), hidden=64)
    check_step(
        model.training_step(batch, 0),
        {"loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class"},
    )
    losses = train(model, batch, 25, lr=1e-3)
    assert np.mean(losses[-3:]) < 0.3 * np.mean(losses[:2]), losses
    check_detections(model.detect(batch[0], score_threshold=0.0), 4, 48, 2)
    with pytest.raises(ValueError, match="image_size"):
        model(torch.zeros(1, 3, 32, 32))


# ---------------------------------------------------------------- U-Net


@pytest.mark.parametrize("skip", [True, False])
def test_unet_shapes_and_loss_falls_with_and_without_skips(skip):
    torch.manual_seed(0)
    model = UNet(in_channels=3, num_classes=2, base=8, depth=2, skip=skip)
    assert model(torch.zeros(2, 3, 50, 46)).shape == (2, 2, 50, 46)  # any size, same size out
    batch = scene(n=2, size=32)
    losses = train(model, batch, 15, lr=1e-2)
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2]), losses
    model.eval()
    with torch.no_grad():
        val = model.validation_step(batch, 0)
    assert set(val) == {"loss", "iou", "dice", "boundary_iou"} and 0 <= float(val["iou"]) <= 1
    assert model.segment(batch[0]).shape == (2, 32, 32)


def test_unet_skip_switch_changes_the_decoder_only():
    with_skip = UNet(3, 2, base=8, depth=2, skip=True)
    without = UNet(3, 2, base=8, depth=2, skip=False)
    n = lambda m: sum(p.numel() for p in m.parameters())
    down = lambda m: (
        sum(p.numel() for p in m.down.parameters()) + sum(p.numel() for p in m.bottom.parameters())
    )
    assert down(with_skip) == down(without)  # the same encoder
    assert n(with_skip) > n(without)  # the decoder's first convs read twice the channels with skips


def test_semantic_target_from_instance_masks():
    _, targets = scene(n=1, size=32)
    y2 = semantic_target(targets, 2, (32, 32), "cpu")
    union = targets[0]["masks"].bool().any(0)
    assert torch.equal(y2[0] > 0, union) and y2.max() == 1
    y3 = semantic_target(targets, 3, (32, 32), "cpu")
    assert set(y3.unique().tolist()) <= {0, 1, 2} and torch.equal(y3[0] > 0, union)
    with pytest.raises(ValueError, match=r"\(B, 32, 32\)"):
        semantic_target(torch.zeros(1, 16, 16), 2, (32, 32), "cpu")


# ---------------------------------------------------------------- R-CNN and selective search


def test_rcnn_loss_falls_caches_proposals_and_detects():
    torch.manual_seed(0)
    batch = scene()
    calls = []
    proposals = []
    for i, t in enumerate(batch[1]):  # a cheap stand-in for selective search: near and far boxes
        g = torch.Generator().manual_seed(i)
        near = t["boxes"].repeat(10, 1) + 2 * torch.randn(20, 4, generator=g)
        xy = torch.rand(20, 2, generator=g) * 34
        far = torch.cat([xy, xy + 6 + 8 * torch.rand(20, 2, generator=g)], 1)
        proposals.append(torch.cat([near, far]).clamp(0, 48))

    def cheap_proposals(image):
        calls.append(1)
        return next(p for im, p in zip(batch[0], proposals, strict=True) if torch.equal(im, image))

    model = RCNN(
        num_classes=2, widths=(8, 16), crop_size=16, representation=32, proposal_fn=cheap_proposals
    )
    check_step(model.training_step(batch, 0), {"loss_classifier", "loss_box_reg"})
    losses = train(model, batch, 12)
    assert len(calls) == 2  # one search per image, then the cache
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2]), losses
    check_detections(model.detect(batch[0]), 2, 48, 2)


def test_selective_search_finds_the_objects_and_ranks_unique_boxes():
    images, targets = scene(n=3, size=64, noise=0.05, seed=3)
    recalls = []
    for img, t in zip(images, targets, strict=True):
        p = selective_search(img, scales=(50, 100))
        assert p.shape[1] == 4 and len(p) == len(torch.unique(p, dim=0))  # no duplicates
        assert (p[:, 2] > p[:, 0]).all() and p.min() >= 0 and p.max() <= 64
        assert [0.0, 0.0, 64.0, 64.0] in p.tolist()  # the top of the hierarchy: the whole image
        recalls.append(proposal_recall(p, t["boxes"], 0.5))
        assert torch.equal(p, selective_search(img, scales=(50, 100)))  # deterministic
    assert np.mean(recalls) >= 0.8, recalls
    assert proposal_recall(torch.zeros(0, 4), targets[0]["boxes"]) == 0.0


# ---------------------------------------------------------------- registry, bad input, plots


def test_models_are_registered_with_their_papers():
    for name, year in (
        ("rcnn", 2014),
        ("fasterrcnn", 2015),
        ("yolov1", 2016),
        ("unet", 2015),
        ("maskrcnn", 2017),
    ):
        cls = models.get(name)
        assert cls.MODEL_INFO.year == year and cls.MODEL_INFO.module == "03-Applying-CNNs"
    assert FasterRCNN(num_classes=3, **SMALL).hparams["num_classes"] == 3


def test_bad_detection_batches_name_the_fix():
    model = FasterRCNN(num_classes=2, **SMALL)
    images, targets = scene()
    with pytest.raises(TypeError, match=r"\(images, targets\)"):
        model.training_step(images, 0)
    targets[0]["labels"] = torch.tensor([0, 2])
    with pytest.raises(ValueError, match="num_classes=2"):
        model.training_step((images, targets), 0)
    targets[0]["labels"] = torch.tensor([0, 1])
    targets[0]["boxes"][0] = torch.tensor([10.0, 10.0, 5.0, 20.0])
    with pytest.raises(ValueError, match="x2 > x1"):
        model.training_step((images, targets), 0)
    with pytest.raises(ValueError, match="targets must be a list of 2"):
        model.training_step((images, targets[:1]), 0)
    # an image without objects is fine: everything is background
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    assert torch.isfinite(model.training_step((images, empty), 0)["loss"])


def test_detection_plots_draw_what_they_are_given():
    images, targets = scene(n=2, size=32)
    run = track.start("fasterrcnn", experiment="plots")
    fig = plots.draw_boxes(
        images[0],
        targets[0]["boxes"],
        targets[0]["labels"],
        torch.tensor([0.9, 0.4]),
        classes=["box", "ball"],
    )
    assert sum(isinstance(p, Rectangle) for p in fig.axes[0].patches) == 2
    preds = [{**t, "scores": torch.tensor([0.9, 0.2])} for t in targets]
    fig = plots.detections_grid(images, preds, targets, score_threshold=0.5)
    assert sum(isinstance(p, Rectangle) for p in fig.axes[0].patches) == 2 + 1  # 2 truths + 1 kept
    plots.masks_overlay(
        images[0], targets[0]["masks"], targets[0]["labels"], boxes=targets[0]["boxes"]
    )
    anchors = anchor_grid((4, 4), 8, (8, 16), (0.5, 1.0, 2.0), offset=0.5)
    fig = plots.anchors_plot(images[0], anchors, num_anchors=6)
    assert sum(isinstance(p, Rectangle) for p in fig.axes[0].patches) == 6
    boxes = torch.cat([targets[0]["boxes"], targets[0]["boxes"] + 1])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    plots.proposals_plot(images[0], boxes, boxes[nms(boxes, scores, 0.5)], scores)
    saved = sorted(p.stem for p in run.figures_dir.glob("*.png"))
    assert saved == ["anchors", "boxes", "detections", "masks", "proposals"]
    with pytest.raises(ValueError, match="num_anchors"):
        plots.anchors_plot(images[0], anchors, num_anchors=5)


def test_detection_models_train_through_the_trainer_seam():
    """(images, targets) batches with per-image dicts go through Trainer.fit / predict unchanged."""
    from scratchlib.train import Trainer

    torch.manual_seed(0)
    b1, b2 = scene(seed=0), scene(seed=1)
    model = FasterRCNN(num_classes=2, **SMALL)
    history = Trainer(epochs=1, lr=1e-3, progress=False).fit(model, ([b1, b2], [b1]))
    assert {"train_loss", "train_loss_objectness", "val_loss", "val_loss_box_reg"} <= set(history)
    assert all(
        math.isfinite(v[0])
        for v in history.values()
        if isinstance(v, list) and v and isinstance(v[0], float)
    )
    preds = Trainer(progress=False).predict(model, [b1, b2])
    check_detections(preds, 4, 48, 2)  # one flat list: a dict per image, over both batches


def test_mask_targets_and_pasting_round_trip_pixel_for_pixel():
    """A perfect mask head outputs exactly the cropped target; pasting it back must give the
    object's own mask. With the half-pixel correction it does (thin strokes included); the
    uncorrected crop shifts every target half a pixel and loses a large share of a thin stroke."""
    from scratchlib.models.mask_rcnn import crop_masks
    from scratchlib.nn import roi as R

    masks = torch.zeros(3, 40, 40, dtype=torch.uint8)
    masks[0, 5:30, 8:11] = 1  # a 3-pixel-wide vertical stroke
    masks[1, 20:23, 12:36] = 1  # a horizontal one
    masks[2, 10:26, 22:38] = 1  # a block
    boxes = torch.tensor([[8.0, 5, 11, 30], [12, 20, 36, 23], [22, 10, 38, 26]])
    for size in (14, 28):
        back = paste_masks(crop_masks(masks, boxes, size), boxes, (40, 40)) > 0.5
        inter = (back & masks.bool()).flatten(1).sum(1)
        union = (back | masks.bool()).flatten(1).sum(1)
        assert (inter / union).min() > 0.95, inter / union

    def uncorrected(inp, rois, s, scale, ratio, aligned):
        return R.roi_align(inp, rois, s, scale, ratio, False)

    back = paste_masks(crop_masks(masks, boxes, 14, uncorrected), boxes, (40, 40)) > 0.5
    iou = (back & masks.bool()).flatten(1).sum(1) / (back | masks.bool()).flatten(1).sum(1)
    assert iou[:2].min() < 0.8  # a thin stroke loses a large share without the correction


def test_torchvision_ops_can_be_chosen_one_by_one():
    import torchvision.ops as tvo

    from scratchlib.nn import roi as R

    model = FasterRCNN(num_classes=2, torchvision_ops=("nms", "roi_pool"), **SMALL)
    assert model.ops.nms is tvo.nms and model.ops.roi_pool is tvo.roi_pool
    assert model.ops.roi_align is R.roi_align and model.ops.batched_nms is not tvo.batched_nms
    assert FasterRCNN(num_classes=2, torchvision_ops=True, **SMALL).ops.roi_align is tvo.roi_align
    with pytest.raises(ValueError, match="roi_warp"):
        FasterRCNN(num_classes=2, torchvision_ops=("roi_warp",), **SMALL)


def test_yolo_conv_head_shares_one_prediction_across_cells():
    torch.manual_seed(0)
    batch = scene(n=4, size=48)
    model = YOLOv1(num_classes=2, image_size=48, S=6, widths=(8, 16, 32), hidden=32, head="conv")
    out = model(batch[0])
    assert out.shape == (4, 6, 6, 5 * 2 + 2)
    # the same input patch gives the same prediction in every cell: weights shared per cell
    flat = torch.zeros(1, 3, 48, 48)
    grid = model.eval()(flat)[0]
    torch.testing.assert_close(grid[2, 2], grid[3, 3])
    assert sum(p.numel() for p in model.head.parameters()) < 32 * 32 * 9 + 32 * 12 + 100
    losses = train(model.train(), batch, 25, lr=1e-3)
    assert np.mean(losses[-3:]) < 0.3 * np.mean(losses[:2]), losses
    with pytest.raises(ValueError, match="head"):
        YOLOv1(num_classes=2, head="mlp")
