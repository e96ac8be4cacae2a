"""COCO mAP (boxes and masks), mask IoU and Dice against pycocotools' COCOeval, the reference every
detection paper since 2015 reports with: random fixtures over several images and classes, crowded
scenes, crowd regions, empty images, ties in scores, IoUs exactly at a threshold."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from scratchlib.metrics import boundary_iou, dice, mask_iou, mask_iou_matrix, mean_average_precision

pycocotools = pytest.importorskip("pycocotools", reason="the reference: poetry install --with dev")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

STATS = [
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def coco_reference(preds, targets, iou_type="bbox") -> list[float]:
    """pycocotools' nine summary numbers (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100)."""
    images, anns, dets = [], [], []
    cats = sorted({int(c) for d in [*preds, *targets] for c in d["labels"]})
    for i, (p, t) in enumerate(zip(preds, targets, strict=True), start=1):
        h, w = t["masks"].shape[1:] if iou_type == "segm" else (200, 200)
        images.append({"id": i, "height": int(h), "width": int(w)})
        crowd = t.get("iscrowd", np.zeros(len(t["labels"]), dtype=int))
        for j in range(len(t["labels"])):
            a = {"id": len(anns) + 1, "image_id": i, "category_id": int(t["labels"][j])}
            a["iscrowd"] = int(crowd[j])
            if iou_type == "bbox":
                x1, y1, x2, y2 = map(float, t["boxes"][j])
                a["bbox"], a["area"] = [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1)
            else:
                a["segmentation"] = _rle(t["masks"][j])
                a["area"] = float(t["masks"][j].sum())
                a["bbox"] = list(mask_utils.toBbox(a["segmentation"]))
            anns.append(a)
        for j in range(len(p["labels"])):
            d = {"image_id": i, "category_id": int(p["labels"][j]), "score": float(p["scores"][j])}
            if iou_type == "bbox":
                x1, y1, x2, y2 = map(float, p["boxes"][j])
                d["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                d["segmentation"] = _rle(p["masks"][j])
            dets.append(d)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c} for c in cats],
        }
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats[:9]]


def ours(preds, targets, iou_type="bbox") -> list[float]:
    out = mean_average_precision(preds, targets, iou_type=iou_type)
    return [out[k] for k in STATS]


def random_scene(
    rng,
    n_images=6,
    n_classes=3,
    max_gt=6,
    crowd_rate=0.0,
    discrete_scores=False,
    size=120,
    min_gt=0,
):
    """Ground truths, their jittered copies as detections, plus false positives and misses."""
    preds, targets = [], []
    for _ in range(n_images):
        k = int(rng.integers(min_gt, max_gt + 1))
        xy = rng.uniform(0, size * 0.7, (k, 2))
        gt = np.concatenate([xy, xy + rng.uniform(3, size * 0.45, (k, 2))], 1)
        gl = rng.integers(0, n_classes, k)
        hit = rng.uniform(size=k) < 0.8  # some objects are missed
        jitter = gt[hit] + rng.normal(0, 3, (int(hit.sum()), 4))
        n_fp = int(rng.integers(0, 4))
        fp_xy = rng.uniform(0, size * 0.7, (n_fp, 2))
        fp = np.concatenate([fp_xy, fp_xy + rng.uniform(3, 40, (n_fp, 2))], 1)
        boxes = np.concatenate([jitter, fp])
        labels = np.concatenate([gl[hit], rng.integers(0, n_classes, n_fp)])
        # some detections take the wrong class
        wrong = rng.uniform(size=len(labels)) < 0.1
        labels[wrong] = rng.integers(0, n_classes, int(wrong.sum()))
        scores = (
            rng.choice([0.25, 0.5, 0.75], len(boxes))
            if discrete_scores
            else rng.uniform(size=len(boxes))
        )
        order = rng.permutation(len(boxes))
        preds.append({"boxes": boxes[order], "scores": scores[order], "labels": labels[order]})
        t = {"boxes": gt, "labels": gl}
        if crowd_rate:
            t["iscrowd"] = (rng.uniform(size=k) < crowd_rate).astype(int)
        targets.append(t)
    return preds, targets


@pytest.mark.parametrize("seed", range(6))
def test_box_map_equals_pycocotools_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    preds, targets = random_scene(
        rng, crowd_rate=0.15 if seed % 2 else 0.0, discrete_scores=seed >= 3
    )
    np.testing.assert_allclose(
        ours(preds, targets), coco_reference(preds, targets), rtol=0, atol=1e-12
    )


def test_box_map_equals_pycocotools_on_crowded_scenes_and_every_size():
    rng = np.random.default_rng(11)
    preds, targets = random_scene(rng, n_images=4, n_classes=2, min_gt=12, max_gt=25, size=400)
    assert max(len(t["labels"]) for t in targets) >= 10  # many overlapping objects per image
    ref = coco_reference(preds, targets)
    assert min(ref[3:6]) > -1  # small, medium and large objects all present
    np.testing.assert_allclose(ours(preds, targets), ref, rtol=0, atol=1e-12)


def test_box_map_empty_images_missing_classes_and_max_detections():
    rng = np.random.default_rng(5)
    preds, targets = random_scene(rng, n_images=3)
    e = np.zeros((0, 4))
    preds += [
        {"boxes": np.array([[0.0, 0, 10, 10]]), "scores": [0.9], "labels": [7]},  # class 7: no gt
        {"boxes": e, "scores": [], "labels": []},  # an image without detections
        # more than 100 detections of one class in one image: COCO keeps the top 100
        {
            "boxes": np.tile([[5.0, 5, 30, 30]], (120, 1)) + rng.normal(0, 2, (120, 4)),
            "scores": rng.uniform(size=120),
            "labels": np.zeros(120, int),
        },
    ]
    targets += [
        {"boxes": e, "labels": []},  # an image without objects
        {"boxes": np.array([[20.0, 20, 60, 50]]), "labels": [1]},
        {"boxes": np.array([[5.0, 5, 30, 30], [50, 50, 90, 90]]), "labels": [0, 0]},
    ]
    np.testing.assert_allclose(
        ours(preds, targets), coco_reference(preds, targets), rtol=0, atol=1e-12
    )


def test_iou_exactly_at_a_threshold_counts_as_a_match():
    gt = {"boxes": np.array([[0.0, 0, 10, 10]]), "labels": [0]}
    half = {"boxes": np.array([[0.0, 0, 10, 5]]), "scores": [0.9], "labels": [0]}  # IoU exactly 0.5
    three_q = {"boxes": np.array([[0.0, 0, 10, 7.5]]), "scores": [0.9], "labels": [0]}  # IoU 0.75
    for p in (half, three_q):
        np.testing.assert_allclose(ours([p], [gt]), coco_reference([p], [gt]), rtol=0, atol=1e-12)
    out = mean_average_precision([half], [gt])
    # precision is tp / (tp + fp + eps), as in COCO: one ulp below 1
    assert out["map_50"] == pytest.approx(1.0) and out["map_75"] == 0.0
    assert out["map"] == pytest.approx(0.1)  # matched at 0.5 only: 1 of 10 thresholds
    assert mean_average_precision([three_q], [gt])["map_75"] == pytest.approx(1.0)


def test_known_values_perfect_nothing_and_undefined():
    rng = np.random.default_rng(0)
    _, targets = random_scene(rng, n_images=4)
    perfect = [
        {"boxes": t["boxes"], "scores": np.ones(len(t["labels"])), "labels": t["labels"]}
        for t in targets
    ]
    assert mean_average_precision(perfect, targets)["map"] == pytest.approx(1.0)
    nothing = [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []} for _ in targets]
    assert mean_average_precision(nothing, targets)["map"] == 0.0
    no_gt = [{"boxes": np.zeros((0, 4)), "labels": []}]
    assert mean_average_precision(nothing[:1], no_gt)["map"] == -1.0  # nothing to measure


def test_iou_thresholds_option_gives_voc_style_map50():
    rng = np.random.default_rng(3)
    preds, targets = random_scene(rng)
    coco = mean_average_precision(preds, targets, class_metrics=True)
    at50 = mean_average_precision(preds, targets, iou_thresholds=[0.5])
    assert at50["map"] == pytest.approx(coco["map_50"], abs=1e-12)
    assert len(coco["map_per_class"]) == len(coco["classes"]) == 3
    assert np.mean(coco["map_per_class"]) == pytest.approx(coco["map"], abs=1e-12)


# ---------------------------------------------------------------- masks


def random_masks(rng, boxes, size):
    """An ellipse inside each box, a few pixels flipped: instance masks of varied shape."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    out = []
    for x1, y1, x2, y2 in boxes:
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 1), max((y2 - y1) / 2, 1)
        m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        out.append(m ^ (rng.uniform(size=m.shape) < 0.02))
    return np.array(out, dtype=np.uint8).reshape(len(out), size, size)


@pytest.mark.parametrize("seed", range(3))
def test_mask_map_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    size = 64
    preds, targets = random_scene(rng, n_images=4, size=size, crowd_rate=0.2 if seed == 2 else 0.0)
    for p, t in zip(preds, targets, strict=True):
        t["masks"] = random_masks(rng, t["boxes"], size)
        p["masks"] = random_masks(rng, p["boxes"], size)
    np.testing.assert_allclose(
        ours(preds, targets, "segm"), coco_reference(preds, targets, "segm"), rtol=0, atol=1e-12
    )


def test_mask_iou_matrix_equals_pycocotools_and_binary_metrics():
    rng = np.random.default_rng(1)
    boxes = np.array([[2.0, 2, 20, 20], [10, 5, 30, 28], [0, 0, 31, 31]])
    a, b = random_masks(rng, boxes, 32), random_masks(rng, boxes[::-1], 32)
    ref = mask_utils.iou([_rle(m) for m in a], [_rle(m) for m in b], [0, 0, 0])
    np.testing.assert_allclose(mask_iou_matrix(a, b), ref, rtol=0, atol=1e-12)
    p = np.zeros((4, 4), bool)
    t = np.zeros((4, 4), bool)
    p[:2, :2] = True  # 4 pixels
    t[:2, :] = True  # 8 pixels, 4 shared
    assert mask_iou(p, t) == 0.5
    assert dice(p, t) == pytest.approx(2 * 4 / 12)
    assert (
        mask_iou(np.zeros((3, 3)), np.zeros((3, 3)))
        == dice(np.zeros((3, 3)), np.zeros((3, 3)))
        == 1.0
    )
    assert mask_iou(np.full((2, 2), 0.7), np.ones((2, 2))) == 1.0  # probabilities cut at 0.5
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="one of each per image"):
        mean_average_precision([{}], [])
    with pytest.raises(KeyError, match="scores"):
        mean_average_precision(
            [{"boxes": np.zeros((0, 4)), "labels": []}], [{"boxes": np.zeros((0, 4)), "labels": []}]
        )
    with pytest.raises(ValueError, match="iou_type"):
        mean_average_precision([], [], iou_type="keypoints")


def test_boundary_iou_by_hand_and_against_mask_iou():
    a = np.zeros((12, 12), bool)
    a[3:8, 3:8] = True  # a 5 x 5 square: its 1-pixel band is the 16-pixel ring
    b = np.roll(a, 1, axis=1)  # shifted one pixel right
    # rings share rows 3 and 7 at columns 4..7: 8 pixels; union 16 + 16 - 8 = 24
    assert boundary_iou(a, b, dilation=1) == pytest.approx(8 / 24)
    assert mask_iou(a, b) == pytest.approx(20 / 30)  # the interior hides the shift from mask IoU
    assert boundary_iou(a, a) == 1.0 and boundary_iou(a, np.zeros_like(a)) == 0.0
    batch = np.stack([a, b])
    assert boundary_iou(batch, batch) == 1.0  # (B, H, W) works too
    with pytest.raises(ValueError, match="dilation"):
        boundary_iou(a, b, dilation=0)
