"""Box and RoI operations from tensor ops against torchvision.ops, the way torchvision tests its own:
random boxes over many seeds, then the edge cases (IoU exactly at the threshold, ties in scores,
empty inputs, degenerate boxes, boxes off the feature map), values and gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision.ops as tvo
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from scratchlib.nn import boxes as B
from scratchlib.nn import roi as R


def random_boxes(n: int, size: float = 60.0, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2
    return torch.cat([xy, xy + wh], 1).to(dtype)


# ---------------------------------------------------------------- IoU, area, formats


@pytest.mark.parametrize("seed", range(5))
def test_box_iou_equals_torchvision_on_random_boxes(seed):
    a, b = random_boxes(17, seed=seed), random_boxes(23, seed=seed + 100)
    torch.testing.assert_close(B.box_iou(a, b), tvo.box_iou(a, b), rtol=0, atol=0)
    torch.testing.assert_close(B.box_area(a), tvo.box_area(a))


def test_box_iou_known_values_degenerate_and_empty():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 1], [5, 5, 5, 5], [10, 10, 12, 12]])
    iou = B.box_iou(a, a)
    assert iou[0, 1] == 0.5  # half the square
    assert iou[0, 3] == 0.0  # disjoint
    assert torch.isnan(iou[2, 2])  # a zero-area box with itself: 0 / 0, as torchvision
    torch.testing.assert_close(iou, tvo.box_iou(a, a), equal_nan=True)
    assert B.box_iou(a, torch.zeros(0, 4)).shape == (4, 0)
    assert B.box_iou(torch.zeros(0, 4), a).shape == (0, 4)


def test_box_convert_matches_torchvision_and_round_trips():
    b = random_boxes(9)
    for fmt in ("xywh", "cxcywh"):
        torch.testing.assert_close(B.box_convert(b, "xyxy", fmt), tvo.box_convert(b, "xyxy", fmt))
        torch.testing.assert_close(B.box_convert(B.box_convert(b, "xyxy", fmt), fmt, "xyxy"), b)
    with pytest.raises(ValueError, match="unknown box format"):
        B.box_convert(b, "xyxy", "yxyx")


def test_clip_and_remove_small_match_torchvision():
    b = random_boxes(30, size=80) - 10
    torch.testing.assert_close(B.clip_boxes(b, (40, 50)), tvo.clip_boxes_to_image(b, (40, 50)))
    torch.testing.assert_close(B.remove_small_boxes(b, 8.0), tvo.remove_small_boxes(b, 8.0))


def test_bad_box_shapes_name_the_fix():
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        B.box_iou(torch.zeros(4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="one per box"):
        B.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


# ---------------------------------------------------------------- NMS


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_nms_equals_torchvision_on_random_boxes(seed, threshold):
    b = random_boxes(300, seed=seed)
    s = torch.rand(300, generator=torch.Generator().manual_seed(seed))
    ours = B.nms(b, s, threshold)
    assert torch.equal(ours, tvo.nms(b, s, threshold))
    assert torch.all(s[ours][:-1] >= s[ours][1:])  # decreasing score
    kept_iou = B.box_iou(b[ours], b[ours]).fill_diagonal_(0)
    assert kept_iou.max() <= threshold  # no two kept boxes overlap by more than the threshold


def test_nms_keeps_a_box_at_exactly_the_threshold():
    b = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 1]])  # IoU exactly 0.5
    s = torch.tensor([0.9, 0.8])
    for thr, kept in ((0.5, [0, 1]), (0.4999, [0])):
        assert B.nms(b, s, thr).tolist() == kept
        assert tvo.nms(b, s, thr).tolist() == kept


def test_nms_ties_keep_input_order_like_torchvision():
    b = random_boxes(60, seed=3)
    s = torch.tensor([0.5, 0.7, 0.7, 0.2, 0.7] * 12)  # many equal scores
    assert torch.equal(B.nms(b, s, 0.3), tvo.nms(b, s, 0.3))
    same = torch.tensor([[0.0, 0, 10, 10]] * 4)  # identical boxes, identical scores: the first wins
    assert (
        B.nms(same, torch.ones(4), 0.5).tolist()
        == tvo.nms(same, torch.ones(4), 0.5).tolist()
        == [0]
    )


def test_nms_empty_and_degenerate_boxes():
    empty = B.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.long and empty.numel() == 0
    b = torch.tensor(
        [[1.0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 4, 4], [0, 0, 4, 4.5]]
    )  # two zero-area boxes
    s = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert torch.equal(B.nms(b, s, 0.5), tvo.nms(b, s, 0.5))


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_equals_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    b = random_boxes(200, seed=seed)
    s = torch.rand(200, generator=g)
    idx = torch.randint(0, 4, (200,), generator=g)
    ours = B.batched_nms(b, s, idx, 0.5)
    assert torch.equal(ours, tvo.batched_nms(b, s, idx, 0.5))
    # boxes of different categories never suppress each other: identical boxes, two classes
    two = torch.tensor([[0.0, 0, 5, 5], [0, 0, 5, 5]])
    assert B.batched_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5).tolist() == [
        0,
        1,
    ]
    assert B.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


# ---------------------------------------------------------------- box coding and anchors


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_match_torchvision_box_coder(weights):
    coder = BoxCoder(weights)
    anchors, gt = random_boxes(50, seed=1) + 1, random_boxes(50, seed=2) + 1
    torch.testing.assert_close(
        B.encode_boxes(gt, anchors, weights), coder.encode_single(gt, anchors)
    )
    deltas = torch.randn(50, 12, generator=torch.Generator().manual_seed(0))  # 3 classes per anchor
    torch.testing.assert_close(
        B.decode_boxes(deltas, anchors, weights),
        coder.decode_single(deltas, anchors),
    )
    torch.testing.assert_close(
        B.decode_boxes(B.encode_boxes(gt, anchors, weights), anchors, weights),
        gt,
        atol=1e-4,
        rtol=0,
    )
    big = torch.tensor([[0.0, 0.0, 100.0, 100.0]]) * weights[2]  # a huge log-scale: clamped, finite
    assert torch.isfinite(B.decode_boxes(big, anchors[:1], weights)).all()


@pytest.mark.parametrize(
    "sizes, ratios, image, grid",
    [((32,), (1.0,), (64, 64), (8, 8)), ((16, 32, 64), (0.5, 1.0, 2.0), (96, 128), (12, 16))],
)
def test_anchor_grid_equals_torchvision_anchor_generator(sizes, ratios, image, grid):
    gen = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    images = ImageList(torch.zeros(1, 3, *image), [image])
    ref = gen(images, [torch.zeros(1, 8, *grid)])[0]
    stride = (image[0] // grid[0], image[1] // grid[1])
    ours = B.anchor_grid(grid, stride, sizes, ratios)
    torch.testing.assert_close(ours, ref)
    assert ours.shape == (grid[0] * grid[1] * len(sizes) * len(ratios), 4)
    # cell by cell, then ratio, then size: the first A anchors share the first cell's centre
    a = len(sizes) * len(ratios)
    centres = (ours[:, :2] + ours[:, 2:]) / 2
    torch.testing.assert_close(centres[:a], torch.zeros(a, 2), atol=0.5, rtol=0)
    areas = ((ours[:a, 2] - ours[:a, 0]) * (ours[:a, 3] - ours[:a, 1])).reshape(len(ratios), -1)
    expected = torch.tensor(sizes, dtype=torch.float32) ** 2  # area s² whatever the ratio
    torch.testing.assert_close(areas, expected.expand_as(areas), rtol=0.15, atol=0)


# ---------------------------------------------------------------- RoI pool / RoI align


def _rois(n_images: int, per_image: int, size: float, seed: int, dtype=torch.float64):
    boxes = [
        random_boxes(per_image, size=size, seed=seed + i, dtype=dtype) - 4 for i in range(n_images)
    ]
    # edge cases: a box off the map, a tiny box, a zero-width box, an inverted box
    boxes[0] = torch.cat(
        [
            boxes[0],
            torch.tensor(
                [[-20.0, -20, -8, -8], [10, 10, 10.4, 10.3], [5, 5, 5, 9], [12, 12, 6, 6]],
                dtype=dtype,
            ),
        ]
    )
    return boxes


def _value_and_grad(fn, x, boxes, *args):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, boxes, *args)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    return out, grad


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_roi_align_values_and_gradients_equal_torchvision(aligned, sampling_ratio, scale):
    x = torch.randn(2, 3, 15, 18, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    boxes = _rois(2, 6, size=18 / scale, seed=1)
    args = ((5, 4), scale, sampling_ratio, aligned)
    ours, g_ours = _value_and_grad(R.roi_align, x, boxes, *args)
    ref, g_ref = _value_and_grad(tvo.roi_align, x, boxes, *args)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-10)
    assert ours[6].abs().sum() == 0  # the box off the map samples nothing


def test_roi_align_float32_tensor_form_and_layer():
    x = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(1))
    rois = R.to_rois([random_boxes(5, size=40, seed=3), random_boxes(3, size=40, seed=4)])
    assert rois.shape == (8, 5) and rois[:5, 0].eq(0).all() and rois[5:, 0].eq(1).all()
    layer = R.RoIAlign((7, 7), 0.25, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(layer(x, rois), tvo.roi_align(x, rois, (7, 7), 0.25, 2, True))


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_pool_values_and_gradients_equal_torchvision(scale):
    x = torch.randn(2, 3, 14, 17, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    boxes = _rois(2, 7, size=17 / scale, seed=5)
    ours, g_ours = _value_and_grad(R.roi_pool, x, boxes, (4, 3), scale)
    ref, g_ref = _value_and_grad(tvo.roi_pool, x, boxes, (4, 3), scale)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def test_roi_pool_ties_send_the_gradient_where_torchvision_does():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)  # every element ties
    boxes = [torch.tensor([[0.0, 0, 7, 7], [1.5, 2.5, 6.5, 5.5]], dtype=torch.float64)]
    ours, g_ours = _value_and_grad(R.roi_pool, x, boxes, (3, 3), 1.0)
    ref, g_ref = _value_and_grad(tvo.roi_pool, x, boxes, (3, 3), 1.0)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)


def test_roi_ops_empty_boxes_and_bad_input():
    x = torch.randn(1, 2, 8, 8)
    empty = [torch.zeros(0, 4)]
    assert R.roi_align(x, empty, 3).shape == tvo.roi_align(x, empty, 3).shape == (0, 2, 3, 3)
    assert R.roi_pool(x, empty, 3).shape == (0, 2, 3, 3)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        R.roi_align(x, torch.zeros(3, 4), 3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        R.roi_pool(x[0], [torch.zeros(1, 4)], 3)
    with pytest.raises(IndexError, match="holds 1 images"):
        R.roi_align(x, torch.tensor([[1.0, 0, 0, 4, 4]]), 3)


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_roi_ops_keep_the_order_of_boxes_not_grouped_by_image(op):
    """RoIs of several images interleaved (batch index 1, 0, 1, 0, ...): ours computes image by
    image and must hand the outputs back in the order of the boxes, as torchvision does."""
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    boxes = random_boxes(8, size=12.0, seed=9, dtype=torch.float64)
    idx = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.float64)[:, None]
    rois = torch.cat([idx, boxes], 1)
    args = (rois, 3, 1.0, 2, True) if op == "roi_align" else (rois, 3, 1.0)
    ours, g_ours = _value_and_grad(getattr(R, op), x, *args)
    ref, g_ref = _value_and_grad(getattr(tvo, op), x, *args)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)


def test_roi_pool_with_wide_bins_equals_torchvision():
    """Large boxes on a small map: every bin spans several feature pixels (the gathered
    candidates per bin are many), values and gradients still torchvision's."""
    x = torch.randn(2, 4, 9, 11, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    boxes = [torch.tensor([[0.0, 0, 40, 30], [3, 2, 35, 36]], dtype=torch.float64)] * 2
    ours, g_ours = _value_and_grad(R.roi_pool, x, boxes, (2, 3), 0.25)
    ref, g_ref = _value_and_grad(tvo.roi_pool, x, boxes, (2, 3), 0.25)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    torch.testing.assert_close(g_ours, g_ref)


def test_objects_found_is_greedy_by_score_one_detection_per_object():
    target = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]]),
        "labels": torch.tensor([1, 2, 3]),
    }
    dets = {
        "boxes": torch.tensor(
            [[0.0, 0, 10, 9], [0, 0, 10, 10], [20, 20, 30, 31], [40, 0, 45, 10], [40, 0, 50, 10]]
        ),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.95, 0.3]),
        "labels": torch.tensor([1, 1, 5, 3, 3]),
    }
    # object 0: found (the duplicate at 0.8 finds nothing more); object 1: only a wrong label;
    # object 2: the 0.95 box overlaps it by IoU 0.5 exactly (found), the exact box scores 0.3
    assert B.objects_found(dets, target).tolist() == [True, False, True]
    assert B.objects_found(dets, target, match_labels=False).tolist() == [True, True, True]
    assert B.objects_found(dets, target, iou_threshold=0.6).tolist() == [True, False, False]
    assert B.objects_found(dets, target, score_threshold=0.0, iou_threshold=0.6).tolist() == [
        True,
        False,
        True,
    ]
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    assert B.objects_found(empty, target).tolist() == [False] * 3
