"""Detection speed: our NMS and RoI align against torchvision's compiled kernels, and the inference
throughput of our Faster R-CNN.

1. ``nms`` on N random boxes (ours: all-pairs IoU + a greedy pass; torchvision: a C++ / CUDA
   kernel) — time ratio ours / torchvision.
2. ``roi_align`` and ``roi_pool`` forward + backward on a feature map typical of a small detector
   — time ratio.
3. Faster R-CNN inference, images/s, with our operators and with torchvision's (``torchvision_ops``).

Not goals, lessons: the from-scratch operators are proven equal (tests/test_boxes.py) and the
notebooks train at size with the fast ones, saying so. Timings alternate between the contenders
and report medians, so a noisy machine affects both alike. Nothing is asserted.

    python benchmarks/bench_detection.py [--device auto|cpu|cuda] [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torchvision.ops as tvo

from scratchlib import nn as snn
from scratchlib.models.faster_rcnn import FasterRCNN
from scratchlib.nn import nms
from scratchlib.utils import choose_device, describe_device, seed_everything


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def race(
    a: Callable[[], object], b: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, measured alternately after one warm-up each."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a, device))
        tb.append(timed(b, device))
    return statistics.median(ta), statistics.median(tb)


def random_boxes(n: int, size: float, device: torch.device) -> torch.Tensor:
    xy = torch.rand(n, 2, device=device) * size
    wh = torch.rand(n, 2, device=device) * size / 4 + 2
    return torch.cat([xy, xy + wh], 1)


def bench_nms(n: int, device: torch.device, repeats: int) -> dict:
    boxes, scores = random_boxes(n, 512, device), torch.rand(n, device=device)
    ours, ref = race(
        lambda: nms(boxes, scores, 0.5), lambda: tvo.nms(boxes, scores, 0.5), device, repeats
    )
    assert torch.equal(
        nms(boxes, scores, 0.5), tvo.nms(boxes, scores, 0.5)
    )  # same answer, then time
    return {"what": f"nms, {n} boxes", "ours_ms": 1e3 * ours, "torchvision_ms": 1e3 * ref}


def bench_roi(op: str, k: int, c: int, hw: int, device: torch.device, repeats: int) -> dict:
    """``op`` ("roi_align" or "roi_pool") forward + backward, ours against torchvision's."""
    feat = torch.randn(2, c, hw, hw, device=device, requires_grad=True)
    boxes = [random_boxes(k // 2, hw * 8, device) for _ in range(2)]
    args = (7, 1 / 8, 2, False) if op == "roi_align" else (7, 1 / 8)

    def run(fn: Callable) -> Callable[[], None]:
        def step() -> None:
            out = fn(feat, boxes, *args)
            out.sum().backward()
            feat.grad = None

        return step

    ours, ref = race(run(getattr(snn, op)), run(getattr(tvo, op)), device, repeats)
    return {
        "what": f"{op} fwd+bwd, {k} RoIs, {c}x{hw}x{hw}",
        "ours_ms": 1e3 * ours,
        "torchvision_ms": 1e3 * ref,
    }


def bench_faster_rcnn(size: int, batch: int, device: torch.device, repeats: int) -> list[dict]:
    images = torch.rand(batch, 3, size, size, device=device)
    seed_everything(0)
    ours = FasterRCNN(num_classes=10).to(device).eval()
    fast = FasterRCNN(num_classes=10, torchvision_ops=True).to(device).eval()
    fast.load_state_dict(ours.state_dict())
    t_ours, t_fast = race(lambda: ours.detect(images), lambda: fast.detect(images), device, repeats)
    return [
        {
            "what": f"Faster R-CNN inference, {size}px, batch {batch}, our ops",
            "images_per_s": batch / t_ours,
        },
        {
            "what": f"Faster R-CNN inference, {size}px, batch {batch}, torchvision ops",
            "images_per_s": batch / t_fast,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--quick", action="store_true", help="small sizes: well under a minute on a CPU"
    )
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    if args.quick:
        n_boxes, (k, c, hw), (size, batch) = 1000, (128, 32, 16), (128, 4)
    elif device.type == "cuda":
        n_boxes, (k, c, hw), (size, batch) = 5000, (512, 256, 50), (512, 16)
    else:
        n_boxes, (k, c, hw), (size, batch) = 2000, (256, 64, 32), (256, 8)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; repeats {repeats}")
    seed_everything(0)
    rows = [bench_nms(n_boxes, device, repeats)]
    rows += [bench_roi(op, k, c, hw, device, repeats) for op in ("roi_align", "roi_pool")]
    for r in rows:
        ratio = r["ours_ms"] / r["torchvision_ms"]
        print(
            f"{r['what']:<48} ours {r['ours_ms']:9.2f} ms   torchvision {r['torchvision_ms']:8.2f} ms   ratio {ratio:7.1f}x"
        )
    for r in bench_faster_rcnn(size, batch, device, repeats):
        print(f"{r['what']:<60} {r['images_per_s']:8.1f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
