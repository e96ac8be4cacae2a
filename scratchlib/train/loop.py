"""The epoch loop NumPy models share with the Trainer: progress bar, history, tracking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scratchlib import track, utils

__all__ = ["fit_epochs"]


def fit_epochs(
    epoch_fn: Callable[[int], dict[str, Any]],
    epochs: int,
    run: track.Run | None | bool = None,
    progress: bool = True,
    desc: str = "epochs",
    stop: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, list[Any]]:
    """Call ``epoch_fn(epoch)`` for epochs 1..``epochs``; each returns that epoch's scalars.

    Rows go to the history (a dict of lists, like the Trainer's) and to ``run`` (default: the
    active run; ``False``: no tracking) as ``on_epoch_end`` facts. ``stop(row)`` returning True ends training early (for
    example a perceptron that made no mistakes: it has converged); an ``on_train_end`` event
    records why training ended.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    run = None if run is False else (run if run is not None else track.active())
    history: dict[str, list[Any]] = {}
    it: Any = utils.progress(range(1, epochs + 1), progress, desc=desc)
    reason = "epochs"
    for epoch in it:
        row = {"epoch": epoch, **epoch_fn(epoch)}
        for k, v in row.items():
            history.setdefault(k, []).append(v)
        if run is not None:
            run.log_epoch(epoch, **{k: v for k, v in row.items() if k != "epoch"})
        if progress and hasattr(it, "set_postfix"):
            it.set_postfix({k: v for k, v in row.items() if k != "epoch"}, refresh=False)
        if stop is not None and stop(row):
            reason = "stop condition"
            break
    if run is not None:
        run.train_end(epochs=len(history.get("epoch", [])), reason=reason)
    return history
