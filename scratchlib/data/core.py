"""The data protocol, the dataset registry, the cache folder and the never-silent fallback notice.

A **DataModule** (docs/seams.md, section 2) is anything with ``train_loader(...)``,
``val_loader(...)``, ``test_loader(...)`` and ``facts()``; :class:`DataModule` is an optional base
class with the defaults. :class:`DataBundle` (arrays for classification or regression) is one
implementation: train / val / test, where ``val`` is carved from the training data.

Every dataset is a function registered under a name with ``@dataset("name")``. It receives a
:class:`Request` (cache folder, smoke flag, whether downloading is allowed, seed, validation size)
and returns a DataModule. ``scratchlib.data.load(name)`` is the one call learners use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from .loaders import TensorLoader

__all__ = [
    "DataModule",
    "DataBundle",
    "Request",
    "DataUnavailableError",
    "UnknownDatasetError",
    "dataset",
    "cache_dir",
    "names",
    "announce_fallback",
    "choose",
    "carve",
    "split_size",
    "to_tensor",
    "DATASETS",
]

CACHE_ENV = "SCRATCHLIB_DATA"
OFFLINE_ENV = "SCRATCHLIB_OFFLINE"


class DataUnavailableError(RuntimeError):
    """A dataset is neither cached, downloadable nor bundled, or a cached file is damaged; the
    message names the file and what to do."""


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


def announce_fallback(name: str, source: str, why: str, fix: str = "") -> None:
    """Say on screen that ``name`` is being substituted — every time, never silently.

    (A ``warnings.warn`` would be shown once per session and then hidden, so this prints.)
    :func:`scratchlib.data.fetch` also records the substitute as the module's ``source``.
    """
    msg = f"[scratchlib.data] NOTICE {name}: using {source} instead of the real dataset ({why})."
    if fix:
        msg += f" {fix}"
    print(msg, flush=True)


# --- seeded, stratified choices ------------------------------------------------------------------


def split_size(n: int, fraction: float = 0.1, count: int | None = None, what: str = "val") -> int:
    """How many of ``n`` examples a split takes: ``count`` if given, else ``round(fraction * n)``
    (at least one when ``fraction > 0``). Bad values raise, naming the option to fix."""
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"n_{what} must be a non-negative integer, got {count!r}")
        k = int(count)
    else:
        if not 0.0 <= float(fraction) < 1.0:
            raise ValueError(f"{what}_fraction must be in [0, 1), got {fraction!r}")
        k = round(float(fraction) * n)
        if fraction > 0 and n > 1:
            k = max(k, 1)
    if k >= n and k > 0:
        raise ValueError(
            f"a {what} split of {k} leaves nothing of the {n} examples to train on; "
            f"use a smaller n_{what} / {what}_fraction"
        )
    return k


def choose(n_or_labels: int | np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded choice of ``k`` examples: ``(chosen, rest)`` index arrays, each in original order.

    Given integer class labels the choice is stratified: every class gives its share (rounded),
    so a 10% validation split of a balanced set is itself balanced. Given a count or float targets
    (regression), the choice is uniformly random.
    """
    rng = np.random.default_rng(seed)
    labels = None if isinstance(n_or_labels, (int, np.integer)) else np.asarray(n_or_labels)
    n = int(n_or_labels) if labels is None else len(labels)
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} examples")
    order = rng.permutation(n)
    if labels is not None and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        # Rank each example within its class (in the shuffled order); sorting by
        # (rank + 0.5) / class size interleaves the classes in proportion to their sizes.
        _, cls, counts = np.unique(labels[order], return_inverse=True, return_counts=True)
        by_class = np.argsort(cls, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(n, dtype=np.int64)
        rank[by_class] = np.arange(n) - starts[cls[by_class]]
        order = order[np.argsort((rank + 0.5) / counts[cls], kind="stable")]
    return np.sort(order[:k]), np.sort(order[k:])


def carve(
    n_or_labels: int | np.ndarray,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded ``{"train", "val", "test"}`` index arrays over a whole set (stratified when given
    integer class labels): ``test`` first, then ``val`` from what is left, the rest trains."""
    labels = None if isinstance(n_or_labels, (int, np.integer)) else np.asarray(n_or_labels)
    n = int(n_or_labels) if labels is None else len(labels)
    test, rest = choose(n_or_labels, split_size(n, test_fraction, n_test, "test"), seed)
    k_val = split_size(len(rest), val_fraction, n_val, "val")
    val, train = choose(len(rest) if labels is None else labels[rest], k_val, seed + 1)
    return {"train": rest[train], "val": rest[val], "test": test}


def to_tensor(a: Any, device: Any = None) -> torch.Tensor:
    """A numpy array as a torch tensor on ``device``, moved once: float64 -> float32 (what models
    expect), integer and bool labels -> long, float targets stay float."""
    import torch

    if isinstance(a, np.ndarray) and not a.flags.writeable:
        a = a.copy()  # torch refuses to share read-only memory
    t = torch.as_tensor(a)
    if t.dtype == torch.float64:
        t = t.float()
    elif t.dtype == torch.bool or not (t.is_floating_point() or t.is_complex()):
        t = t.long()
    return t.to(device) if device is not None else t


# --- the protocol ---------------------------------------------------------------------------------


class DataModule:
    """Optional base class for the data protocol (docs/seams.md, section 2).

    Subclasses define ``train_loader`` and, where they have those splits, ``val_loader`` and
    ``test_loader``; ``facts()`` should at least name the dataset, its source and split sizes.
    ``batch_size=None`` means the module's own default.
    """

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterable[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define train_loader(...)")

    def val_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterable[Any] | None:
        """The validation batches, or None when this module has no validation split."""
        return None

    def test_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterable[Any] | None:
        """The test batches (touched once, at the end), or None when there is no test split."""
        return None

    def facts(self) -> dict[str, Any]:
        """What a run records about the data: at least ``dataset`` and ``data_source``."""
        return {
            "dataset": getattr(self, "name", type(self).__name__),
            "data_source": getattr(self, "source", "unknown"),
        }

    @property
    def is_fallback(self) -> bool:
        """True when this is an (announced) substitute for the real dataset."""
        return str(getattr(self, "source", "")).startswith("fallback")


@dataclass
class Request:
    """What a dataset function is asked for."""

    root: Path
    smoke: bool = False
    download: bool = True
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    n_val: int | None = None


@dataclass(repr=False)
class DataBundle(DataModule):
    """A dataset of arrays in three splits — train, val (carved from the training data), test —
    with where it came from.

    ``source`` is recorded in every run's facts: ``"real"`` data from the cache or a download,
    ``"real:<variant>"`` for a variant of it, ``"fallback:<what>"`` for a substitute (always
    announced), ``"synthetic"`` for generated toys. Images are ``float32`` arrays ``(N, C, H, W)``
    in [0, 1]; tabular data ``(N, D)``. Labels are integer classes, or floats for regression.
    ``data.load`` carves the validation split; a hand-built bundle gets one with :meth:`split_val`.
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
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    batch_size: int = 128

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if (x is None) != (y is None):
                raise ValueError(f"give both x_{split} and y_{split}, or neither")
            if x is not None and len(x) != len(y):
                raise ValueError(f"x_{split} and y_{split} differ in length: {len(x)} vs {len(y)}")

    @property
    def classification(self) -> bool:
        """True when the labels are integer classes (not regression targets)."""
        return np.issubdtype(np.asarray(self.y_train).dtype, np.integer)

    @property
    def num_classes(self) -> int:
        if self.classes:
            return len(self.classes)
        if not self.classification:
            raise ValueError(f"{self.name} has float targets (regression): it has no classes")
        return int(np.max(self.y_train)) + 1

    # torch Datasets of each split, for code that wants a map-style dataset
    @property
    def train(self):  # -> torch.utils.data.TensorDataset
        return _tensor_dataset(self.x_train, self.y_train)

    @property
    def val(self):  # -> torch.utils.data.TensorDataset | None
        return None if self.x_val is None else _tensor_dataset(self.x_val, self.y_val)

    @property
    def test(self):  # -> torch.utils.data.TensorDataset
        return _tensor_dataset(self.x_test, self.y_test)

    # --- the DataModule protocol ---------------------------------------------------------------

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorLoader:
        """Shuffled (seeded) batches ``(x, y)`` of the training split, tensors on ``device``."""
        return self._loader(
            "train", batch_size or self.batch_size, True, device, seed, rank, world_size
        )

    def val_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorLoader | None:
        """Batches of the validation split in order; None when the bundle has none."""
        if self.x_val is None or len(self.x_val) == 0:
            return None
        return self._loader(
            "val", batch_size or self._eval_batch, False, device, 0, rank, world_size
        )

    def test_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> TensorLoader:
        """Batches of the test split in order (for ``trainer.test``: once, at the end)."""
        return self._loader(
            "test", batch_size or self._eval_batch, False, device, 0, rank, world_size
        )

    def loaders(
        self, batch_size: int | None = None, *, device: Any = None, seed: int = 0
    ) -> tuple[TensorLoader, TensorLoader | None]:
        """``(train_loader, val_loader)``: a convenience for ``trainer.fit(model, (train, val))``."""
        return (
            self.train_loader(batch_size, device=device, seed=seed),
            self.val_loader(batch_size, device=device),
        )

    @property
    def _eval_batch(self) -> int:
        return max(self.batch_size, 512)  # no gradients: bigger batches are cheap

    def _loader(self, split, batch_size, shuffle, device, seed, rank, world_size):
        from .loaders import TensorLoader

        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        return TensorLoader(
            to_tensor(x, device),
            to_tensor(y, device),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def facts(self) -> dict[str, Any]:
        """What tracking records about the data: source, the three split sizes, shapes."""
        facts = {
            "dataset": self.name,
            "data_source": self.source,
            "n_train": len(self.x_train),
            "n_val": 0 if self.x_val is None else len(self.x_val),
            "n_test": len(self.x_test),
            "input_shape": list(self.x_train.shape[1:]),
        }
        if self.classification:
            facts["num_classes"] = self.num_classes
        return facts

    # --- making new bundles ---------------------------------------------------------------------

    def split_val(
        self, val_fraction: float = 0.1, n_val: int | None = None, seed: int = 0
    ) -> DataBundle:
        """A bundle whose validation split is carved from this one's training data (seeded;
        stratified when the labels are classes). ``n_val`` beats ``val_fraction``."""
        if self.x_val is not None:
            raise ValueError(
                f"{self.name} already has a validation split ({len(self.x_val)} examples)"
            )
        k = split_size(len(self.x_train), val_fraction, n_val, "val")
        val, train = choose(self.y_train, k, seed)
        return replace(
            self,
            x_train=self.x_train[train],
            y_train=self.y_train[train],
            x_val=self.x_train[val],
            y_val=self.y_train[val],
            classes=list(self.classes),
            info=dict(self.info),
        )

    def subset(
        self,
        n_train: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
        n_val: int | None = None,
    ) -> DataBundle:
        """A smaller bundle with the same classes: seeded, stratified picks from each split.

        A validation split is kept; unless ``n_val`` is given it shrinks in proportion to train.
        """

        def pick(x, y, n):
            if n is None or n >= len(x):
                return x.copy(), y.copy()
            idx, _ = choose(y, int(n), seed)
            return x[idx], y[idx]

        x_tr, y_tr = pick(self.x_train, self.y_train, n_train)
        x_te, y_te = pick(self.x_test, self.y_test, n_test)
        x_va = y_va = None
        if self.x_val is not None:
            if n_val is None and n_train is not None and len(self.x_train):
                n_val = max(1, round(len(self.x_val) * len(x_tr) / len(self.x_train)))
            x_va, y_va = pick(self.x_val, self.y_val, n_val)
        was = [len(self.x_train), len(self.x_test)]
        if self.x_val is not None:
            was.append(len(self.x_val))
        return replace(
            self,
            x_train=x_tr,
            y_train=y_tr,
            x_test=x_te,
            y_test=y_te,
            x_val=x_va,
            y_val=y_va,
            classes=list(self.classes),
            info={**self.info, "subset_of": was},
        )

    def __repr__(self) -> str:
        val = None if self.x_val is None else self.x_val.shape
        kind = (
            f"classes={len(self.classes) or self.num_classes}"
            if self.classification
            else "regression"
        )
        return (
            f"DataBundle({self.name!r}, source={self.source!r}, train={self.x_train.shape}, "
            f"val={val}, test={self.x_test.shape}, {kind})"
        )


def _tensor_dataset(x: np.ndarray, y: np.ndarray):
    from torch.utils.data import TensorDataset

    return TensorDataset(to_tensor(x), to_tensor(y))


# --- the registry -----------------------------------------------------------------------------------

Loader = Callable[[Request], DataModule]
DATASETS: dict[str, tuple[Loader, str]] = {}


def dataset(name: str, description: str = "") -> Callable[[Loader], Loader]:
    """Register a dataset function under ``name`` (decorator)."""

    def deco(fn: Loader) -> Loader:
        DATASETS[name] = (fn, description or (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return deco


def names() -> list[str]:
    """Every dataset name ``load`` accepts."""
    return sorted(DATASETS)
