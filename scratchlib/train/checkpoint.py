"""Checkpoints: written atomically, loaded safely, refused with a reason when they do not fit.

A Trainer checkpoint is a dict of tensors, numbers, strings and lists: model weights, optimizer,
scheduler, scaler and callback states, the loader's position, RNG states, the history, and a
*signature* of what must match to resume (model class and hyper-parameters, data, batch size,
optimizers, schedule). It is loaded with ``torch.load(weights_only=True)``: a file that holds any
other Python object is refused, so loading never runs code from a file.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scratchlib.utils import atomic_write_bytes, jsonable

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "serialize",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
    "load_model_state",
    "model_signature",
    "signature_differences",
    "get_rng_state",
    "set_rng_state",
]

CHECKPOINT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, unsafe or from an incompatible run."""


def serialize(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint (``torch.save`` into memory): a consistent snapshot of ``state``."""
    buf = io.BytesIO()
    torch.save({"checkpoint_version": CHECKPOINT_VERSION, **state}, buf)
    return buf.getvalue()


def save_checkpoint(
    path: str | os.PathLike[str], state: dict[str, Any] | bytes | nn.Module
) -> Path:
    """Write a checkpoint atomically (temp file + rename): an interrupted save never leaves half a
    file. ``state`` is a dict, bytes from :func:`serialize`, or a model (its weights are saved)."""
    if isinstance(state, nn.Module):
        state = {"model": state.state_dict(), "model_class": type(state).__name__}
    data = state if isinstance(state, bytes) else serialize(state)
    return atomic_write_bytes(path, data)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); errors name the file and the fix."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt" if (path / "last.pt").exists() else path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train first, or pass the path of an existing best.pt / last.pt"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged or unsafe file
        text = str(exc)
        if "Unsupported global" in text or "weights_only" in text.lower():
            raise CheckpointError(
                f"refused to load {path}: it holds Python objects other than tensors, numbers and "
                "strings, and unpickling them could run code from the file. scratchlib never loads "
                "such files; use a checkpoint written by scratchlib (Trainer or save_checkpoint)."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({type(exc).__name__}: "
            f"{text.splitlines()[0] if text else ''}). Delete it and resume from the other one "
            "(best.pt / last.pt), or retrain."
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"{path} is not a scratchlib checkpoint (no 'model' entry); it may be a bare state_dict: "
            "load it with load_weights(model, path)"
        )
    state["_path"] = str(path)
    return state


def load_model_state(model: nn.Module, state: dict[str, Any], path: str = "checkpoint") -> None:
    """``model.load_state_dict`` with a message that says which model the checkpoint fits."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__} (saved from "
            f"{state.get('model_class', '?')}): {str(exc).splitlines()[0]}. Build the same model "
            "configuration, or start a new run."
        ) from exc


def load_weights(
    model: nn.Module, source: str | os.PathLike[str] | dict[str, Any], ema: bool = True
) -> nn.Module:
    """Load weights into ``model`` from a checkpoint file (or a loaded checkpoint dict).

    Accepts Trainer checkpoints, :func:`save_checkpoint` files and bare state dicts. With
    ``ema=True`` the exponential moving average of the weights is used when the checkpoint has one
    (an :class:`~scratchlib.train.EMA` callback was on): it is what the run evaluated and sampled.
    """
    if isinstance(source, dict):
        state, where = source, source.get("_path", "checkpoint")
    else:
        where = str(source)
        try:
            state = load_checkpoint(source)
        except CheckpointError as exc:
            if "bare state_dict" not in str(exc):
                raise
            state = {"model": torch.load(source, map_location="cpu", weights_only=True)}
    averaged = state.get("callbacks", {}).get("EMA", {}).get("module") if ema else None
    load_model_state(model, {**state, "model": averaged or state["model"]}, where)
    return model


# --- what must match to resume -----------------------------------------------------------------


def model_signature(model: nn.Module) -> dict[str, Any]:
    """Class, hyper-parameters of every submodule that records them, and a digest of the layout."""
    hparams = {
        name or "<model>": jsonable(m.hparams)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "hparams", None), dict)
    }
    layout = hashlib.sha1(repr(model).encode()).hexdigest()[:12]  # noqa: S324 - a digest, not security
    return {"class": type(model).__qualname__, "hparams": hparams, "layout": layout}


def signature_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human-readable list of what differs between two run signatures (empty when they match)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in signature_differences(a, b)]
        else:
            out.append(f"{key}: checkpoint {a!r}, now {b!r}")
    return out


# --- RNG states in a form weights_only loading accepts ------------------------------------------


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch (CPU and CUDA) RNG states, as tensors and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the legacy global RNG
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- a Trainer's whole state, and continuing from it -------------------------------------------


def callback_keys(callbacks: list[Any]) -> list[str]:
    """A name per callback for its checkpoint state: the class name, numbered when repeated."""
    keys: list[str] = []
    for cb in callbacks:
        name = type(cb).__name__
        keys.append(
            name if name not in keys else f"{name}-{sum(k.startswith(name) for k in keys) + 1}"
        )
    return keys


def run_signature(trainer: Any, model: nn.Module) -> dict[str, Any]:
    """What must match for a checkpoint to continue a run: model, data, batch, optimizer, schedule."""
    from .optim import planned_steps

    scheduled = trainer.scheduler_spec is not None or bool(trainer.schedulers)
    scheduler = [type(s.scheduler).__name__ for s in trainer.schedulers]
    return {
        "model": model_signature(model),
        "data": jsonable(trainer.data_facts),
        "batch_size": trainer.batch_size,
        "accumulate": trainer.accumulate,
        "optimizers": [type(o).__name__ for o in trainer.optimizers],
        "schedule": {
            "scheduler": scheduler,
            "length": planned_steps(trainer) if scheduled else None,
        },
    }


def trainer_state(trainer: Any) -> dict[str, Any]:
    """Everything needed to continue the run exactly, copied to the CPU (a consistent snapshot)."""
    from .parts import cpu_copy

    callbacks = trainer.all_callbacks()
    loader_state = getattr(trainer.train_loader, "state_dict", None)
    return cpu_copy({
        "model": trainer.model.state_dict(),
        "model_class": type(trainer.model).__name__,
        "optimizers": [o.state_dict() for o in trainer.optimizers],
        "schedulers": [s.scheduler.state_dict() for s in trainer.schedulers],
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "callbacks": {k: cb.state_dict() for k, cb in zip(callback_keys(callbacks), callbacks, strict=True)},
        "loader": loader_state() if callable(loader_state) else None,
        "rng": get_rng_state(),
        "progress": {"epoch": trainer.epoch, "step": trainer.global_step, "in_epoch": trainer.in_epoch},
        "history": trainer.history,
        "signature": trainer.signature,
        "trainer": trainer.hparams,
    })  # fmt: skip


def resume_state(trainer: Any) -> dict[str, Any] | None:
    """The checkpoint ``Trainer(resume=...)`` asks for: True means last.pt of the run's folder."""
    if not trainer.resume:
        return None
    if not isinstance(trainer.resume, bool):
        return load_checkpoint(trainer.resume)
    folder = trainer.checkpoint_dir or (
        trainer.run.checkpoints_dir if trainer.run is not None else None
    )
    if folder is None:
        raise CheckpointError(
            "resume=True needs a run or checkpoint_dir to find last.pt in; pass resume='path/to/last.pt'"
        )
    return load_checkpoint(Path(folder) / "last.pt")


def restore(trainer: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Continue ``trainer`` from ``state``. Refuses (naming every difference) what would change the
    run — model class or hyper-parameters, data, batch size, optimizer, schedule — and applies what
    may change: more epochs or steps, a new learning rate when no schedule sets it. Returns the
    changes applied."""
    path = state["_path"]
    if "signature" not in state:
        raise CheckpointError(
            f"{path} holds weights only (no training state): load them with load_weights(model, "
            "path) into a new run instead of resuming"
        )
    diffs = signature_differences(state["signature"], trainer.signature)
    if state["signature"]["model"]["hparams"]:  # the layout digest only matters without hparams
        diffs = [d for d in diffs if not d.startswith("model.layout")]
    if diffs:
        raise CheckpointError(
            f"{path} cannot continue this run; what differs: {'; '.join(diffs)}. Use the same "
            "model, data, batch size, optimizer and schedule, or start a new run."
        )
    done = state["progress"]
    if trainer.max_steps is None and not done["in_epoch"] and done["epoch"] >= trainer.epochs:
        raise CheckpointError(
            f"{path} has already trained {done['epoch']} epochs; ask for more than "
            f"{trainer.epochs} epochs to continue it"
        )
    load_model_state(trainer.model, state, path)
    for opt, s in zip(trainer.optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(s)
    for sched, s in zip(trainer.schedulers, state["schedulers"], strict=True):
        sched.scheduler.load_state_dict(s)
    if trainer.scaler is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    callbacks = trainer.all_callbacks()
    for key, cb in zip(callback_keys(callbacks), callbacks, strict=True):
        cb.load_state_dict(state["callbacks"].get(key, {}))
    changed: dict[str, Any] = {}
    if not trainer.schedulers and getattr(trainer.model, "configure_optimizers", None) is None:
        for group in trainer.optimizers[0].param_groups:  # a new learning rate takes effect
            if group["lr"] != trainer.lr:
                changed["lr"] = [group["lr"], trainer.lr]
                group["lr"] = trainer.lr
    trainer.history, trainer.epoch, trainer.global_step = (
        state["history"],
        done["epoch"],
        done["step"],
    )
    set_rng_state(state["rng"])
    load = getattr(trainer.train_loader, "load_state_dict", None)
    if state.get("loader") is not None and callable(load):
        load(state["loader"])
    if done["in_epoch"]:  # continue the interrupted epoch where it stopped
        trainer.resume_epoch(state["loader"]["position"] if state.get("loader") else 0)
    trainer.event(
        "on_resume", checkpoint=path, epoch=done["epoch"], step=done["step"], changed=changed
    )
    return changed
