"""CIFAR-10 loading (the official batches read without running code, image folders and their
decoded cache, archives unpacked safely, the download path with a local fake, the announced
fallback), GPU-side augmentation of whole batches, and input normalisation as a model layer."""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from scratchlib import data
from scratchlib.data import augment, cifar
from scratchlib.data.core import DataUnavailableError
from scratchlib.nn import Normalize, Normalized

fetch_module = importlib.import_module("scratchlib.data.fetch")


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


def _batches(n: int = 4) -> dict[str, dict]:
    """Official-format CIFAR-10 python batches: rows of 3072 bytes (R, G, B planes), as Python 2
    pickled them (protocol 2)."""
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: {
            "batch_label": name,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [(k + j) % 10 for j in range(n)],
        }
        for k, name in enumerate(names)
    }


def _write_batches(folder: Path, batches: dict[str, dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, entry in batches.items():
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))


def test_smoke_mode_falls_back_loudly(capsys) -> None:
    b = data.load("cifar10", smoke=True)
    assert "NOTICE cifar10" in capsys.readouterr().out
    assert b.source == "fallback:sklearn-digits-rgb32" and b.x_train.shape[1:] == (3, 32, 32)
    assert b.x_train.dtype == np.float32 and b.x_train.min() >= 0 and b.x_train.max() <= 1


def test_official_batches_are_read_exactly_without_unpickling_code(data_dir: Path, capsys) -> None:
    batches = _batches()
    _write_batches(data_dir / "cifar-10-batches-py", batches)
    b = data.load("cifar10", val_fraction=0)
    assert b.source == "real" and b.x_train.shape == (20, 3, 32, 32) and len(b.x_test) == 4
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32) / 255.0
    np.testing.assert_allclose(b.x_train[0], first, atol=1e-6)  # channels first, R plane first
    assert b.y_test.tolist() == batches["test_batch"]["labels"] and b.classes == cifar.CLASSES
    assert "NOTICE" not in capsys.readouterr().out


def test_a_malicious_batch_is_refused_naming_the_file(data_dir: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (Path.mkdir, (data_dir / "pwned",))

    batches = _batches()
    folder = data_dir / "cifar-10-batches-py"
    _write_batches(folder, batches)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Evil()}, protocol=4))
    with pytest.raises(DataUnavailableError, match=r"data_batch_3 is not a plain-data pickle"):
        data.load("cifar10")
    assert not (data_dir / "pwned").exists()
    (folder / "data_batch_3").write_bytes(pickle.dumps({"labels": [1]}, protocol=2))
    with pytest.raises(DataUnavailableError, match=r"data_batch_3 is not a CIFAR-10 batch"):
        data.load("cifar10")


def test_image_folders_are_read_and_their_decoded_cache_written_atomically(data_dir, capsys):
    _image_folder(data_dir / "cifar10")
    b = data.load("cifar10", val_fraction=0)
    assert b.source == "real:jpeg-folder" and b.x_train.shape == b.x_test.shape == (20, 3, 32, 32)
    assert b.classes == cifar.CLASSES and sorted(set(b.y_train.tolist())) == list(range(10))
    assert "NOTICE" not in capsys.readouterr().out
    npz = data_dir / "cifar10" / "cifar10-uint8.npz"
    assert npz.exists() and not list(npz.parent.glob(".*.tmp")), "no temporary left behind"
    first = Image.open(sorted((data_dir / "cifar10" / "train" / "airplane").glob("*.png"))[0])
    np.testing.assert_allclose(
        b.x_train[0], np.asarray(first).transpose(2, 0, 1) / 255.0, atol=1e-6
    )
    again = data.load("cifar10", val_fraction=0)  # from the npz this time
    np.testing.assert_array_equal(again.x_train, b.x_train)
    npz.write_bytes(b"broken")
    with pytest.raises(DataUnavailableError, match=r"cifar10-uint8\.npz is damaged.*delete it"):
        data.load("cifar10")


def test_an_archive_of_image_folders_is_unpacked_and_a_hostile_one_refused(data_dir, tmp_path):
    src = tmp_path / "src"
    _image_folder(src, per_class=1)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(data_dir / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(src / split, arcname=split)
    b = data.load("cifar10")
    assert b.source == "real:jpeg-folder" and len(b.x_train) + len(b.x_val) == 10
    other = tmp_path / "other"
    with tarfile.open(other.with_suffix(".tar.gz"), "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"png"))
    other.mkdir()
    (other.with_suffix(".tar.gz")).rename(other / "cifar10-evil.tar.gz")
    with pytest.raises(DataUnavailableError, match="outside its own folder"):
        data.load("cifar10", root=other)
    assert not (other / "escaped.png").exists()


def test_download_path_with_a_local_fake(monkeypatch, data_dir: Path, tmp_path: Path) -> None:
    """The real download code path — the official archive fetched, unpacked, read — with the
    transfer itself replaced by a local fake that 'downloads' an archive built here."""
    staged = tmp_path / "stage" / "cifar-10-batches-py"
    _write_batches(staged, _batches(n=3))
    fetched = []

    def fake_download_url(url: str, folder: Path, filename: str, md5: str) -> None:
        fetched.append((url, filename, md5))
        with tarfile.open(Path(folder) / filename, "w:gz") as tar:
            tar.add(staged, arcname="cifar-10-batches-py")

    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(fetch_module, "reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(cifar, "_download_url", fake_download_url)
    b = data.load("cifar10")
    assert b.source == "real" and len(b.x_train) + len(b.x_val) == 15
    assert fetched == [(cifar.URL, cifar.ARCHIVE, cifar.ARCHIVE_MD5)]
    assert data.load("cifar10").source == "real" and len(fetched) == 1, "cached now"


def test_no_network_falls_back_with_the_reason(monkeypatch, capsys) -> None:
    monkeypatch.delenv("SCRATCHLIB_OFFLINE")
    monkeypatch.setattr(fetch_module, "reachable", lambda url, timeout=3.0: False)
    assert data.load("cifar10").is_fallback and "no network" in capsys.readouterr().out


# --- augmentation --------------------------------------------------------------------------------


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


def test_random_crop_flip_takes_a_whole_batch_and_keeps_the_labels() -> None:
    x, labels = torch.rand(6, 3, 8, 8), torch.arange(6)
    out = augment.RandomCropFlip(seed=4)((x, labels))
    assert isinstance(out, tuple) and out[1] is labels
    assert torch.equal(out[0], augment.RandomCropFlip(seed=4)(x)), "the same as on the bare images"
    as_list = augment.RandomCropFlip(seed=4)([x, labels])
    assert isinstance(as_list, list) and torch.equal(as_list[0], out[0])


# --- normalisation as the first layer of a model ------------------------------------------------------


def test_normalize_layer() -> None:
    norm = Normalize(cifar.MEAN, cifar.STD)
    x = torch.rand(4, 3, 5, 5)
    mean, std = torch.tensor(cifar.MEAN).view(1, 3, 1, 1), torch.tensor(cifar.STD).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), (x - mean) / std)
    with pytest.raises(ValueError, match="one mean and one std per channel"):
        Normalize((0.5, 0.5), (0.2,))


class _OwnSteps(nn.Module):
    """A model with its own steps that records what reaches them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.seen: list[tuple[torch.Tensor, int]] = []

    def forward(self, x):
        return self.fc(x.flatten(1))

    def training_step(self, batch, batch_idx):
        self.seen.append((batch[0], batch_idx))
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.seen.append((batch[0], batch_idx))
        return {"loss": torch.nn.functional.cross_entropy(self(batch[0]), batch[1])}


def test_normalized_passes_batch_and_batch_idx_to_the_models_own_steps() -> None:
    inner = _OwnSteps()
    wrapped = Normalized(inner, cifar.MEAN, cifar.STD)
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
    loss = wrapped.training_step((x, y), 7)
    out = wrapped.validation_step([x, y], 8)
    normed = Normalize(cifar.MEAN, cifar.STD)(x)
    assert [i for _, i in inner.seen] == [7, 8]
    assert all(torch.allclose(seen, normed) for seen, _ in inner.seen), "images normalised first"
    assert loss.requires_grad and set(out) == {"loss"}
    torch.testing.assert_close(wrapped(x), inner(normed))
    plain = Normalized(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), cifar.MEAN, cifar.STD)
    assert not hasattr(plain, "training_step") and not hasattr(plain, "validation_step")
    assert "norm.mean" in wrapped.state_dict(), "the statistics travel with the weights"
