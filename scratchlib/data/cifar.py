"""CIFAR-10 (Krizhevsky 2009): 60,000 32×32 colour images in 10 classes.

Where the images come from, in order (through :func:`scratchlib.data.fetch`):
1. the cache, as the official python batches ``cifar-10-batches-py/`` (what a download leaves),
   read with a restricted unpickler — loading them never runs code;
2. the cache, as image folders ``cifar10/{train,test}/<class>/*.jpg|png`` — or an archive
   ``cifar10*.tar.gz`` of that layout, unpacked safely on first use (e.g. a JPEG copy for offline
   machines); recorded as ``real:jpeg-folder``;
3. a download of the official archive (not in smoke mode, not offline), checked against its MD5;
4. otherwise an announced fallback: scikit-learn's real 8×8 digits, upscaled to 32×32 and tinted
   with random colours — a 10-class colour-image stand-in so every code path still runs.
Decoded image folders are cached as ``cifar10/cifar10-uint8.npz`` so the JPEGs are read once.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from scratchlib.utils import atomic_write_bytes

from .builtin import _bundle
from .core import DataBundle, DataUnavailableError, Request, choose, dataset
from .fetch import Fallback, extract_archive, fetch, load_pickle

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE, ARCHIVE_MD5 = "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"
BATCHES = "cifar-10-batches-py"

__all__ = ["CLASSES", "MEAN", "STD", "read_batch"]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 python batch: uint8 images ``(N, 32, 32, 3)`` and int64 labels."""
    entry = load_pickle(path)
    try:
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataUnavailableError(
            f"{path} is not a CIFAR-10 batch ({type(exc).__name__}: {exc}); delete it and load again"
        ) from exc
    if len(images) != len(labels):
        raise DataUnavailableError(
            f"{path} holds {len(images)} images but {len(labels)} labels; delete it and load again"
        )
    return images.transpose(0, 2, 3, 1), labels


def _from_batches(root: Path) -> tuple[np.ndarray, ...] | None:
    folder = root / BATCHES
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    if not all(p.exists() for p in (*train_files, folder / "test_batch")):
        return None
    parts = [read_batch(p) for p in train_files]
    x_te, y_te = read_batch(folder / "test_batch")
    return (
        np.concatenate([x for x, _ in parts]),
        np.concatenate([y for _, y in parts]),
        x_te,
        y_te,
    )


def _read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted(
            p for p in (folder / name).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        for p in files:
            try:
                with Image.open(p) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            except OSError as exc:
                raise DataUnavailableError(
                    f"{p} is not a readable image ({exc}); delete it or replace it"
                ) from exc
            labels.append(label)
    if not images:
        raise DataUnavailableError(
            f"no images under {folder}/<class>/ (expected the classes {CLASSES})"
        )
    shapes = {im.shape for im in images}
    if shapes != {(32, 32, 3)}:
        raise DataUnavailableError(
            f"images under {folder} must all be 32x32 RGB; found sizes {sorted(shapes)[:3]}"
        )
    return np.stack(images), np.array(labels)


def _from_folders(root: Path) -> tuple[np.ndarray, ...] | None:
    base = root / "cifar10"
    npz = base / "cifar10-uint8.npz"
    if npz.exists():
        try:
            with np.load(npz, allow_pickle=False) as z:
                return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
        except Exception as exc:  # noqa: BLE001 - a damaged cache: say which file and the fix
            raise DataUnavailableError(
                f"{npz} is damaged ({exc}); delete it and load again"
            ) from exc
    if not (base / "train").is_dir():
        archives = sorted(root.glob("cifar10*.tar.gz"))
        if not archives:
            return None
        extract_archive(archives[0], base)
    if not (base / "train").is_dir() or not (base / "test").is_dir():
        return None
    x_tr, y_tr = _read_folder(base / "train")
    x_te, y_te = _read_folder(base / "test")
    buf = io.BytesIO()
    np.savez(buf, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    atomic_write_bytes(npz, buf.getvalue(), durable=False)
    return x_tr, y_tr, x_te, y_te


def _cached(root: Path, keep: tuple[int, int] | None = None, seed: int = 0) -> DataBundle | None:
    """The cached CIFAR-10; ``keep=(n_train, n_test)`` picks those many images (seeded, stratified:
    the same ones ``DataBundle.subset`` would pick) *before* converting to float — smoke mode's
    subset without decoding 60,000 images into 700 MB of floats."""
    arrays, source = _from_batches(root), "real"
    if arrays is None:
        arrays, source = _from_folders(root), "real:jpeg-folder"  # JPEG copy: say so everywhere
    if arrays is None:
        return None
    x_tr, y_tr, x_te, y_te = arrays
    if keep is not None:
        (tr, _), (te, _) = (
            choose(y_tr, min(keep[0], len(y_tr)), seed),
            choose(y_te, min(keep[1], len(y_te)), seed),
        )
        x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_te[te], y_te[te]
    to_float = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0  # noqa: E731
    return DataBundle(
        "cifar10",
        to_float(x_tr),
        y_tr.astype(np.int64),
        to_float(x_te),
        y_te.astype(np.int64),
        source,
        list(CLASSES),
        "CIFAR-10 50k/10k",
        {"mean": MEAN, "std": STD},
    )


def _download_url(url: str, folder: Path, filename: str, md5: str) -> None:
    """torchvision's downloader (resumes nothing, but checks the MD5 and re-downloads a bad file)."""
    from torchvision.datasets.utils import download_url

    download_url(url, str(folder), filename=filename, md5=md5)


def _download(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _download_url(URL, root, ARCHIVE, ARCHIVE_MD5)
    extract_archive(root / ARCHIVE, root)


def _digits_rgb(req: Request) -> DataBundle:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(req.seed)
    grey = np.kron(d.images / 16.0, np.ones((4, 4)))  # 8x8 -> 32x32
    tint = rng.uniform(0.3, 1.0, size=(len(grey), 3, 1, 1))
    background = rng.uniform(0.0, 0.3, size=(len(grey), 3, 1, 1))
    x = (background + (tint - background) * grey[:, None]).astype(np.float32)
    x = np.clip(x + 0.03 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    return _bundle(
        "cifar10",
        x,
        d.target,
        "fallback:sklearn-digits-rgb32",
        [str(i) for i in range(10)],
        "digits as 32x32 colour images (CIFAR-10 stand-in)",
        req.seed,
        test_fraction=0.25,
    )


def _smoke_sizes() -> tuple[int, int]:
    from . import SMOKE_SIZES  # data.load cuts smoke-mode image sets to these sizes

    return SMOKE_SIZES


@dataset("cifar10", "CIFAR-10 (Krizhevsky 2009): 60,000 32x32 colour images, 10 classes")
def _cifar10(req: Request) -> DataBundle:
    return fetch(
        "cifar10",
        req,
        read=lambda: _cached(req.root, _smoke_sizes() if req.smoke else None, req.seed),
        download=lambda: _download(req.root),
        urls=(URL,),
        fallback=Fallback(
            "fallback:sklearn-digits-rgb32",
            "scikit-learn's real 8x8 digits, upscaled to 32x32 and randomly tinted (10 classes)",
            lambda: _digits_rgb(req),
        ),
        fix="For CIFAR-10 itself, go online once or put cifar-10-batches-py/ or a "
        f"cifar10*.tar.gz image-folder archive in {req.root}/.",
    )
