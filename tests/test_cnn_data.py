"""CIFAR-10 loading (cache layouts, archive, download path with a fake, announced fallback) and
GPU-side augmentation."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scratchlib import data
from scratchlib.data import augment, cifar
from scratchlib.data.core import DataUnavailableError


def _image_folder(base: Path, per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in cifar.CLASSES:
            d = base / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    d / f"{i:04d}.png"
                )


def test_smoke_mode_falls_back_loudly(capsys) -> None:
    b = data.load("cifar10", smoke=True)
    assert "NOTICE cifar10" in capsys.readouterr().out
    assert b.source == "fallback:sklearn-digits-rgb32" and b.x_train.shape[1:] == (3, 32, 32)
    assert b.x_train.dtype == np.float32 and b.x_train.min() >= 0 and b.x_train.max() <= 1


def test_image_folders_in_the_cache_are_read_and_cached(data_dir: Path, capsys) -> None:
    _image_folder(data_dir / "cifar10")
    b = data.load("cifar10")
    assert (
        b.source == "real:jpeg-folder"
        and b.x_train.shape == (20, 3, 32, 32)
        and b.x_test.shape == (20, 3, 32, 32)
    )
    assert b.classes == cifar.CLASSES and sorted(set(b.y_train.tolist())) == list(range(10))
    assert "NOTICE" not in capsys.readouterr().out
    npz = data_dir / "cifar10" / "cifar10-uint8.npz"
    assert npz.exists()
    first = Image.open(sorted((data_dir / "cifar10" / "train" / "airplane").glob("*.png"))[0])
    np.testing.assert_allclose(
        b.x_train[0], np.asarray(first).transpose(2, 0, 1) / 255.0, atol=1e-6
    )
    again = data.load("cifar10")  # from the npz this time
    np.testing.assert_array_equal(again.x_train, b.x_train)
    npz.write_bytes(b"broken")
    with pytest.raises(DataUnavailableError, match="damaged.*delete it"):
        data.load("cifar10")


def test_an_archive_of_image_folders_is_unpacked(data_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image_folder(src, per_class=1)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(data_dir / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(src / split, arcname=split)
    b = data.load("cifar10")
    assert b.source == "real:jpeg-folder" and len(b.x_train) == 10


def test_download_path_with_a_local_fake(monkeypatch, data_dir: Path) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(cifar, "_reachable", lambda url, timeout=3.0: True)

    class FakeCIFAR10:
        url = "https://example.invalid/cifar.tar.gz"

        def __init__(self, root: str, train: bool, download: bool) -> None:
            folder = Path(root) / "cifar-10-batches-py"
            if download:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "test_batch").write_bytes(b"x")
            n = 30 if train else 10
            self.data = np.full((n, 32, 32, 3), 128, dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    b = data.load("cifar10")
    assert b.source == "real" and b.x_train.shape == (30, 3, 32, 32)
    assert np.allclose(b.x_train, 128 / 255)


def test_no_network_falls_back_with_the_reason(monkeypatch, capsys) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(cifar, "_reachable", lambda url, timeout=3.0: False)
    assert data.load("cifar10").is_fallback and "no network" in capsys.readouterr().out


def test_random_crop_flip_takes_windows_of_the_padded_image() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    aug = augment.RandomCropFlip(padding=2, flip=True, seed=0)
    y = aug(x)
    assert y.shape == x.shape
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        windows = [xp[n, :, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(y[n], w) or torch.equal(y[n], w.flip(2)) for w in windows)
    again = augment.RandomCropFlip(padding=2, flip=True, seed=0)(x)
    assert torch.equal(y, again), "seeded: the same crops again"
    flips = augment.RandomCropFlip(padding=0, flip=True, seed=1)(x.repeat(50, 1, 1, 1))
    mirrored = sum(torch.equal(flips[k], x[k % 2].flip(2)) for k in range(100))
    assert 25 < mirrored < 75, "about half the images are mirrored"
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        aug(torch.zeros(3, 8, 8))


def test_normalize_layer() -> None:
    norm = augment.Normalize(cifar.MEAN, cifar.STD)
    x = torch.rand(4, 3, 5, 5)
    expected = (x - torch.tensor(cifar.MEAN).view(1, 3, 1, 1)) / torch.tensor(cifar.STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(norm(x), expected)


def test_normalized_wrapper_keeps_the_models_own_training_step() -> None:
    from scratchlib.models.googlenet import GoogLeNet

    net = GoogLeNet(num_classes=10, small_input=True, batch_norm=True, width=0.125)
    wrapped = augment.Normalized(net, cifar.MEAN, cifar.STD).train()
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    out = wrapped.training_step((x, y))
    assert out["loss"].requires_grad and out["count"] == 2
    logits = wrapped.eval()(x)
    torch.testing.assert_close(logits, net.eval()(augment.Normalize(cifar.MEAN, cifar.STD)(x)))
