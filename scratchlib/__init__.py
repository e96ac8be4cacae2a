"""scratchlib — the thin, tested library behind *AI From Scratch to Scale*.

``from scratchlib import data, models, plots, track`` and ``from scratchlib.train import Trainer``.
Submodules load on first use, so ``import scratchlib`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "claims",
    "data",
    "models",
    "nn",
    "plots",
    "track",
    "train",
    "metrics",
    "utils",
    "cli",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'scratchlib' has no attribute {name!r}")
