"""Every dataset by name with one call: ``data.load("mnist", smoke=SMOKE)``.

``load`` returns a DataModule (docs/seams.md, section 2): ``train_loader()``, ``val_loader()``,
``test_loader()`` and ``facts()``. Where the data comes from is one walk, :func:`fetch`: the cache
folder (``./data``, or ``$SCRATCHLIB_DATA``), a download when it can, and otherwise data that ships
with an installed package or is generated — always saying so on screen and recording the source in
the run's facts. ``$SCRATCHLIB_OFFLINE=1`` skips the network entirely.

Generic modules for the other batch shapes: :class:`DetectionData`, :class:`TokenStreamData`,
:class:`SequencePairData`, :class:`GraphData`, :class:`MaskedLMData`; their loaders are in
:mod:`scratchlib.data.loaders`, batch-level augmentation in :mod:`scratchlib.data.augment`.
"""

from __future__ import annotations

import importlib
import os

from . import builtin  # noqa: F401  (registers the built-in datasets)
from .core import (
    DATASETS,
    DataBundle,
    DataModule,
    DataUnavailableError,
    Request,
    UnknownDatasetError,
    announce_fallback,
    cache_dir,
    carve,
    choose,
    dataset,
    names,
)
from .fetch import Fallback, extract_archive, fetch, load_pickle
from .loaders import (
    DetectionLoader,
    GraphLoader,
    MaskedLMLoader,
    SequencePairLoader,
    TensorLoader,
    WindowLoader,
    collate_targets,
    pad_sequences,
)
from .modules import DetectionData, GraphData, MaskedLMData, SequencePairData, TokenStreamData

__all__ = [
    "load",
    "names",
    "describe",
    "fetch",
    "Fallback",
    "DataModule",
    "DataBundle",
    "DetectionData",
    "TokenStreamData",
    "SequencePairData",
    "GraphData",
    "MaskedLMData",
    "TensorLoader",
    "DetectionLoader",
    "WindowLoader",
    "SequencePairLoader",
    "GraphLoader",
    "MaskedLMLoader",
    "collate_targets",
    "pad_sequences",
    "DataUnavailableError",
    "UnknownDatasetError",
    "Request",
    "announce_fallback",
    "cache_dir",
    "carve",
    "choose",
    "dataset",
    "extract_archive",
    "load_pickle",
]

# Dataset families that live in their own files; imported if present so each registers itself.
for _mod in ("cifar", "augment", "text", "sequence_tasks", "graphs", "detection"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise

# Small datasets are used whole in smoke mode; image sets are cut to this many examples
# (train, including the validation split carved from it, and test).
SMOKE_SIZES = (1000, 500)


def load(
    name: str,
    smoke: bool = False,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    seed: int = 0,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    **options,
) -> DataModule:
    """Load dataset ``name`` as a DataModule. Unknown names raise ``UnknownDatasetError`` (a
    KeyError) listing the valid ones.

    smoke: tiny and offline — never touches the network; large image sets are subset to
        ``SMOKE_SIZES`` (train, test) examples.
    root: cache folder (default ``$SCRATCHLIB_DATA`` or ``./data``).
    download: allow a real download when the cache is empty.
    seed: the seed of every split and generated example.
    val_fraction, n_val: the validation split carved from the training data (seeded, stratified
        by class); ``n_val`` (a count) beats ``val_fraction``.
    options: dataset-specific (e.g. ``n=`` and ``noise=`` for the synthetic sets).
    """
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; valid names: {', '.join(names())}")
    fn, _ = DATASETS[key]
    request = Request(
        cache_dir(root),
        smoke=smoke,
        download=download,
        seed=seed,
        options=options,
        val_fraction=val_fraction,
        n_val=n_val,
    )
    module = fn(request)
    if isinstance(module, DataBundle):
        if smoke and len(module.x_train) > SMOKE_SIZES[0] and module.x_train.ndim > 2:
            module = module.subset(*SMOKE_SIZES, seed=seed)
        if module.x_val is None:
            module = module.split_val(val_fraction, n_val=n_val, seed=seed)
    return module


def describe() -> dict[str, str]:
    """``{name: one-line description}`` for every dataset."""
    return {n: DATASETS[n][1] for n in names()}
