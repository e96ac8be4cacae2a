"""Every dataset by name with one call: ``data.load("mnist", smoke=SMOKE)``.

Reads the cache folder (``./data``, or ``$SCRATCHLIB_DATA``), downloads real data when it can, and
otherwise falls back to data that ships with an installed package or is generated — always saying
so on screen and recording ``bundle.source`` in the run's facts. ``$SCRATCHLIB_OFFLINE=1`` skips
the network entirely.
"""

from __future__ import annotations

import importlib
import os

from . import builtin  # noqa: F401  (registers the built-in datasets)
from .core import (
    DATASETS,
    DataBundle,
    DataUnavailableError,
    Request,
    UnknownDatasetError,
    cache_dir,
    dataset,
    names,
)

__all__ = [
    "load",
    "names",
    "describe",
    "DataBundle",
    "DataUnavailableError",
    "UnknownDatasetError",
    "Request",
    "cache_dir",
    "dataset",
]

# Dataset families that live in their own files; imported if present so each registers itself.
for _mod in ("cifar", "augment", "text", "graphs", "detection"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise

# Small datasets are used whole in smoke mode; image sets are cut to this many examples.
SMOKE_SIZES = (1000, 500)


def load(
    name: str,
    smoke: bool = False,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    seed: int = 0,
    **options,
) -> DataBundle:
    """Load dataset ``name``. Unknown names raise ``UnknownDatasetError`` (a KeyError) listing the valid ones.

    smoke: tiny and offline — never touches the network; large sets are subset to
        ``SMOKE_SIZES`` (train, test) examples.
    root: cache folder (default ``$SCRATCHLIB_DATA`` or ``./data``).
    download: allow a real download when the cache is empty.
    options: loader-specific (e.g. ``n=`` and ``noise=`` for the synthetic sets).
    """
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; valid names: {', '.join(names())}")
    loader, _ = DATASETS[key]
    bundle = loader(
        Request(cache_dir(root), smoke=smoke, download=download, seed=seed, options=options)
    )
    if smoke and len(bundle.x_train) > SMOKE_SIZES[0] and bundle.x_train.ndim > 2:
        bundle = bundle.subset(*SMOKE_SIZES, seed=seed)
    return bundle


def describe() -> dict[str, str]:
    """``{name: one-line description}`` for every dataset."""
    return {n: DATASETS[n][1] for n in names()}
