"""Plots: each saves under the active run's figures/, shows in a notebook, and goes to wandb when on."""

from __future__ import annotations

import importlib

from .basic import confusion_matrix, decision_boundary, image_grid, learning_curves
from .core import finish

__all__ = ["learning_curves", "decision_boundary", "confusion_matrix", "image_grid", "finish"]

# Plot families in their own files (added by later modules) are exported here when present.
for _mod in ("diagnostics", "vision", "detection", "sequence", "generative", "graphs"):
    try:
        _m = importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise
        continue
    for _name in getattr(_m, "__all__", []):
        globals()[_name] = getattr(_m, _name)
        __all__.append(_name)
