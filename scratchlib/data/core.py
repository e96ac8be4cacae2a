"""Dataset registry, the cache folder and the never-silent fallback notice.

Every dataset is a function registered under a name with ``@dataset("name")``. It receives a
:class:`Request` (cache folder, smoke flag, whether downloading is allowed, seed) and returns a
:class:`DataBundle`. ``scratchlib.data.load(name)`` is the one call learners use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DataBundle",
    "Request",
    "DataUnavailableError",
    "UnknownDatasetError",
    "dataset",
    "cache_dir",
    "names",
    "DATASETS",
]

CACHE_ENV = "SCRATCHLIB_DATA"
OFFLINE_ENV = "SCRATCHLIB_OFFLINE"


class DataUnavailableError(RuntimeError):
    """A dataset is neither cached, downloadable nor bundled; the message says what to do."""


class UnknownDatasetError(KeyError):
    """An unknown dataset name; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The data cache: ``root``, else ``$SCRATCHLIB_DATA``, else ``<project root>/data``."""
    if root or os.environ.get(CACHE_ENV):
        return Path(root or os.environ[CACHE_ENV]).expanduser()
    from scratchlib.utils import project_root

    return project_root() / "data"


def offline() -> bool:
    """True when ``$SCRATCHLIB_OFFLINE`` is set to 1/true/yes: never try the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Request:
    """What a loader is asked for."""

    root: Path
    smoke: bool = False
    download: bool = True
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataBundle:
    """A dataset split into train and test arrays, with where it came from.

    ``source`` is recorded in every run's facts: ``"real"`` data from the cache or a download,
    ``"fallback:<what>"`` for a substitute (always announced), ``"synthetic"`` for generated toys.
    Images are ``float32`` arrays ``(N, C, H, W)`` in [0, 1]; tabular data ``(N, D)``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    classes: list[str] = field(default_factory=list)
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_fallback(self) -> bool:
        return self.source.startswith("fallback")

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(np.max(self.y_train)) + 1

    @property
    def train(self):  # -> torch.utils.data.TensorDataset
        return _tensor_dataset(self.x_train, self.y_train)

    @property
    def test(self):  # -> torch.utils.data.TensorDataset
        return _tensor_dataset(self.x_test, self.y_test)

    def loaders(self, batch_size: int = 128, shuffle: bool = True, seed: int = 0, **kwargs: Any):
        """``(train_loader, test_loader)`` torch DataLoaders (train shuffled with a seeded generator)."""
        import torch
        from torch.utils.data import DataLoader

        g = torch.Generator().manual_seed(seed)
        train = DataLoader(
            self.train, batch_size=batch_size, shuffle=shuffle, generator=g, **kwargs
        )
        test = DataLoader(self.test, batch_size=batch_size, shuffle=False, **kwargs)
        return train, test

    def facts(self) -> dict[str, Any]:
        """What tracking records about the data."""
        return {
            "dataset": self.name,
            "data_source": self.source,
            "n_train": len(self.x_train),
            "n_test": len(self.x_test),
            "input_shape": list(self.x_train.shape[1:]),
            "num_classes": self.num_classes,
        }

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> DataBundle:
        """A smaller bundle with the same classes (stratification not attempted; seeded)."""
        rng = np.random.default_rng(seed)
        tr = rng.permutation(len(self.x_train))[: n_train or len(self.x_train)]
        te = rng.permutation(len(self.x_test))[: n_test or len(self.x_test)]
        return DataBundle(
            self.name,
            self.x_train[tr],
            self.y_train[tr],
            self.x_test[te],
            self.y_test[te],
            self.source,
            list(self.classes),
            self.description,
            {**self.info, "subset_of": [len(self.x_train), len(self.x_test)]},
        )

    def __repr__(self) -> str:
        return (
            f"DataBundle({self.name!r}, source={self.source!r}, train={self.x_train.shape}, "
            f"test={self.x_test.shape}, classes={len(self.classes) or self.num_classes})"
        )


def _tensor_dataset(x: np.ndarray, y: np.ndarray):
    import torch
    from torch.utils.data import TensorDataset

    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y)
    if yt.dtype in (torch.int32, torch.int16, torch.uint8, torch.int8):
        yt = yt.long()
    return TensorDataset(xt, yt)


Loader = Callable[[Request], DataBundle]
DATASETS: dict[str, tuple[Loader, str]] = {}


def dataset(name: str, description: str = "") -> Callable[[Loader], Loader]:
    """Register a loader under ``name`` (decorator)."""

    def deco(fn: Loader) -> Loader:
        DATASETS[name] = (fn, description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def names() -> list[str]:
    """Every dataset name ``load`` accepts."""
    return sorted(DATASETS)


def announce_fallback(name: str, source: str, why: str, fix: str = "") -> None:
    """Say on screen that ``name`` is being substituted — every time, never silently.

    (A ``warnings.warn`` would be shown once per session and then hidden, so this prints.)
    The loader also records the substitute in ``DataBundle.source``, which tracking saves.
    """
    msg = f"[scratchlib.data] NOTICE {name}: using {source} instead of the real dataset ({why})."
    if fix:
        msg += f" {fix}"
    print(msg, flush=True)
