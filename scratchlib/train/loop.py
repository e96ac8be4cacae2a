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
    stop_reason: str = "stop condition",
) -> dict[str, list[Any]]:
    """Call ``epoch_fn(epoch)`` for epochs 1..``epochs``; each returns that epoch's scalars.

    Rows go to the history (a dict of lists, like the Trainer's) and to ``run`` (default: the
    active run; ``False``: no tracking) as ``on_epoch_end`` facts. ``stop(row)`` returning True
    ends training early (for example a perceptron that made no mistakes: it has converged); an
    ``on_train_end`` event records why training ended (``stop_reason``).

    The progress bar counts epochs. Stopping early is an outcome, not an error: the bar is closed
    complete (green in a notebook, not red) and its label says why it stopped. Only an exception
    leaves it short of its total, which a notebook shows in red.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    run = None if run is False else (run if run is not None else track.active())
    history: dict[str, list[Any]] = {}
    bar: Any = utils.progress(None, progress, total=epochs, desc=desc) if progress else None
    reason = "epochs"
    try:
        for epoch in range(1, epochs + 1):
            row = {"epoch": epoch, **epoch_fn(epoch)}
            for k, v in row.items():
                history.setdefault(k, []).append(v)
            if run is not None:
                run.log_epoch(epoch, **{k: v for k, v in row.items() if k != "epoch"})
            stopping = stop is not None and stop(row)
            if bar is not None:
                if stopping:  # a finished run, not a failed one: the bar ends at its new total
                    bar.total = epoch
                    bar.set_description(f"{desc} ({stop_reason} after {epoch} of {epochs} epochs)")
                bar.set_postfix({k: v for k, v in row.items() if k != "epoch"}, refresh=False)
                bar.update(1)
            if stopping:
                reason = stop_reason
                break
    finally:
        if bar is not None:
            bar.close()
    if run is not None:
        run.train_end(epochs=len(history.get("epoch", [])), reason=reason)
    return history
