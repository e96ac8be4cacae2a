"""Tracking: every run leaves facts on disk (and in wandb when asked).

``run = track.start(model, experiment="mnist", config={...}, data=bundle, wandb=USE_WANDB)``
creates ``outputs/runs/run_<timestamp>_<model>_<experiment>/`` and makes the run *active*, so the
Trainer and the plots write into it. Readers (:func:`load_runs`, :func:`load_scalars`,
:func:`load_events`) turn many runs into pandas tables.
"""

from __future__ import annotations

import os
from typing import Any

from .readers import find_runs, load_config, load_events, load_runs, load_scalars
from .run import SCHEMA_VERSION, Run, active, runs_root, set_active
from .wandb_bridge import WandbBridge, resolve_mode

__all__ = [
    "start",
    "Run",
    "active",
    "find_runs",
    "load_config",
    "load_events",
    "load_runs",
    "load_scalars",
    "runs_root",
    "SCHEMA_VERSION",
    "model_identity",
]


def model_identity(model: Any) -> tuple[str, dict[str, Any]]:
    """``(short_name, model_info_dict)`` for a model instance, class or name."""
    if isinstance(model, str):
        try:
            from scratchlib import models

            cls = models.get(model)
        except KeyError:
            return model, {}
    else:
        cls = model if isinstance(model, type) else type(model)
    info = getattr(cls, "MODEL_INFO", None)
    return cls.__name__.lower(), (info.as_dict() if info is not None else {})


def start(
    model: Any,
    experiment: str = "default",
    config: dict[str, Any] | None = None,
    data: Any = None,
    wandb: bool | str | None = False,
    root: str | os.PathLike[str] | None = None,
) -> Run:
    """Start a run and make it the active one.

    model: a model instance, class or name (its ``MODEL_INFO`` is recorded).
    data: a :class:`scratchlib.data.DataBundle` (its source is recorded — a fallback never hides).
    wandb: ``False`` (default), ``True`` (mode from ``$WANDB_MODE``, else online), or
        ``"online"`` / ``"offline"`` / ``"disabled"``.
    """
    mode = resolve_mode(wandb)  # a bad mode fails here, before any folder is made
    name, info = model_identity(model)
    data_facts = data.facts() if hasattr(data, "facts") else dict(data or {})
    previous = active()
    if previous is not None and previous.status == "running":
        previous.finish("superseded")
    run = Run(name, experiment, config=config, root=root, model_info=info, data_facts=data_facts)
    if mode is not None:
        tags = [
            t
            for t in (
                name,
                info.get("module"),
                info.get("category"),
                experiment,
                data_facts.get("data_source"),
            )
            if t
        ]
        bridge = WandbBridge(
            run, mode, tags=[str(t)[:64] for t in tags], project=f"ai-from-scratch-{name}"
        )
        run.wandb = bridge if bridge.active else None
        run.event("on_wandb", mode=bridge.mode, active=bridge.active)
    set_active(run)
    return run
