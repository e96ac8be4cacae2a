"""Checkpoints: written atomically, read back with a clear error when something is wrong."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from scratchlib.utils import atomic_write_bytes

__all__ = [
    "CheckpointError",
    "serialize",
    "save_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_VERSION",
]

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or from an incompatible model."""


def serialize(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint (``torch.save`` into memory): a consistent snapshot of ``state``."""
    import torch

    buf = io.BytesIO()
    torch.save({"checkpoint_version": CHECKPOINT_VERSION, **state}, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any] | bytes) -> Path:
    """Write a checkpoint atomically (temp file + rename): an interrupted save never leaves half a
    file. ``state`` may be already-serialised bytes (see :func:`serialize`)."""
    data = state if isinstance(state, bytes) else serialize(state)
    return atomic_write_bytes(path, data)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; errors name the file and the fix."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}; train first, or pass the path of an existing best.pt / last.pt"
        )
    try:
        # weights_only=False: our checkpoints also hold RNG states and history (our own files).
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({type(exc).__name__}: {exc}). "
            "Delete it and resume from the other one (best.pt / last.pt), or retrain."
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"{path} is not a scratchlib checkpoint (no 'model' entry); it may be a bare state_dict"
        )
    return state


def load_model_state(model: Any, state: dict[str, Any], path: str = "checkpoint") -> None:
    """``model.load_state_dict`` with a message that says which model the checkpoint fits."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__} (saved from {state.get('model_class', '?')}): "
            f"{str(exc).splitlines()[0]}. Build the same model configuration, or start a new run."
        ) from exc
