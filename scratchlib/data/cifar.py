"""CIFAR-10 (Krizhevsky 2009): 60,000 32×32 colour images in 10 classes.

Where the images come from, in order:
1. the cache, as torchvision's ``cifar-10-batches-py/`` (what a download leaves);
2. the cache, as image folders ``cifar10/{train,test}/<class>/*.jpg|png`` — or an archive
   ``cifar10*.tar.gz`` of that layout, unpacked on first use (e.g. a JPEG copy for offline machines);
3. a torchvision download (not in smoke mode, not offline);
4. otherwise an announced fallback: scikit-learn's real 8×8 digits, upscaled to 32×32 and tinted
   with random colours — a 10-class colour-image stand-in so every code path still runs.
Decoded image folders are cached as ``cifar10/cifar10-uint8.npz`` so the JPEGs are read once.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from .builtin import _reachable
from .core import DataBundle, DataUnavailableError, Request, announce_fallback, dataset, offline

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

__all__ = ["CLASSES", "MEAN", "STD"]


def _from_batches(root: Path) -> tuple[np.ndarray, ...] | None:
    if not (root / "cifar-10-batches-py" / "test_batch").exists():
        return None
    from torchvision.datasets import CIFAR10

    tr, te = (
        CIFAR10(str(root), train=True, download=False),
        CIFAR10(str(root), train=False, download=False),
    )
    return tr.data, np.array(tr.targets), te.data, np.array(te.targets)


def _read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted(
            p for p in (folder / name).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        for p in files:
            with Image.open(p) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            labels.append(label)
    if not images:
        raise DataUnavailableError(
            f"no images under {folder}/<class>/ (expected the classes {CLASSES})"
        )
    return np.stack(images), np.array(labels)


def _from_folders(root: Path) -> tuple[np.ndarray, ...] | None:
    base = root / "cifar10"
    npz = base / "cifar10-uint8.npz"
    if npz.exists():
        try:
            with np.load(npz) as z:
                return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
        except Exception as exc:  # noqa: BLE001 - a damaged cache: say which file and the fix
            raise DataUnavailableError(
                f"{npz} is damaged ({exc}); delete it and load again"
            ) from exc
    if not (base / "train").is_dir():
        archives = sorted(root.glob("cifar10*.tar.gz"))
        if not archives:
            return None
        base.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            try:
                tar.extractall(base, filter="data")  # refuse links and paths outside the folder
            except TypeError:  # Python < 3.10.12 has no extraction filters
                tar.extractall(base)  # noqa: S202
    if not (base / "train").is_dir() or not (base / "test").is_dir():
        return None
    x_tr, y_tr = _read_folder(base / "train")
    x_te, y_te = _read_folder(base / "test")
    tmp = base / ".cifar10-uint8.tmp.npz"
    np.savez(tmp, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    tmp.replace(npz)
    return x_tr, y_tr, x_te, y_te


def _download(root: Path) -> str | None:
    from torchvision.datasets import CIFAR10

    if not _reachable(CIFAR10.url):
        return "no network"
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001
        return f"download failed: {exc}"
    return None


def _fallback(req: Request, why: str) -> DataBundle:
    from sklearn.datasets import load_digits

    announce_fallback(
        "cifar10",
        "scikit-learn's real 8x8 digits, upscaled to 32x32 and randomly tinted (10 classes)",
        why,
        f"For CIFAR-10 itself, go online once or put cifar-10-batches-py/ or a cifar10*.tar.gz image-folder archive in {req.root}/.",
    )
    d = load_digits()
    rng = np.random.default_rng(req.seed)
    grey = np.kron(d.images / 16.0, np.ones((4, 4)))  # 8x8 -> 32x32
    tint = rng.uniform(0.3, 1.0, size=(len(grey), 3, 1, 1))
    background = rng.uniform(0.0, 0.3, size=(len(grey), 3, 1, 1))
    x = (background + (tint - background) * grey[:, None]).astype(np.float32)
    x = np.clip(x + 0.03 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    from .builtin import _bundle

    b = _bundle(
        "cifar10",
        x,
        d.target,
        "fallback:sklearn-digits-rgb32",
        [str(i) for i in range(10)],
        "digits as 32x32 colour images (CIFAR-10 stand-in)",
        req.seed,
        test_fraction=0.25,
    )
    return b


@dataset("cifar10", "CIFAR-10 (Krizhevsky 2009): 60,000 32x32 colour images, 10 classes")
def _cifar10(req: Request) -> DataBundle:
    arrays = _from_batches(req.root) or _from_folders(req.root)
    source = "real"
    if arrays is None:
        if req.smoke or not req.download or offline():
            why = (
                "smoke mode"
                if req.smoke
                else ("download=False" if not req.download else "SCRATCHLIB_OFFLINE is set")
            )
            return _fallback(req, why)
        why = _download(req.root)
        if why is not None:
            return _fallback(req, why)
        arrays = _from_batches(req.root)
    x_tr, y_tr, x_te, y_te = arrays
    if (req.root / "cifar10" / "cifar10-uint8.npz").exists() and not (
        req.root / "cifar-10-batches-py"
    ).exists():
        source = "real:jpeg-folder"  # e.g. a JPEG-recompressed copy: say so beside every figure
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
