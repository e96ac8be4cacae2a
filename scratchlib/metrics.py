"""Metrics shared by notebooks and the CLI (NumPy in, floats out)."""

from __future__ import annotations

from typing import Any

import numpy as np

from scratchlib.plots.core import to_numpy

__all__ = ["accuracy", "error_rate", "confusion_counts"]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the labels (``y_pred`` may be class scores)."""
    yt, yp = to_numpy(y_true).ravel(), to_numpy(y_pred)
    if yp.ndim == 2:
        yp = yp.argmax(1)
    yp = yp.ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape} vs {yp.shape}")
    return float(np.mean(yt == yp))


def error_rate(y_true: Any, y_pred: Any) -> float:
    """``1 - accuracy``: papers of the era report test *error*."""
    return 1.0 - accuracy(y_true, y_pred)


def confusion_counts(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = examples of true class i predicted as j."""
    yt, yp = to_numpy(y_true).astype(int).ravel(), to_numpy(y_pred).astype(int).ravel()
    k = num_classes or int(max(yt.max(), yp.max())) + 1
    if min(yt.min(), yp.min()) < 0 or max(yt.max(), yp.max()) >= k:
        raise ValueError(
            f"confusion_counts: labels must be class indices 0..{k - 1} (map ±1 labels to 0/1 first)"
        )
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    return cm
