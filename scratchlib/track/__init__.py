"""Tracking: every run leaves facts on disk (and in wandb when asked).

``run = track.start(model, experiment="mnist", config={...}, data=bundle, wandb=USE_WANDB)``
creates ``outputs/runs/run_<timestamp>_<model>_<experiment>/`` and makes the run *active*, so the
Trainer and the plots write into it. ``track.resume(run_dir_or_checkpoint)`` reopens one to carry
on. Readers (:func:`load_runs`, :func:`load_scalars`, :func:`load_steps`, :func:`load_events`) turn
many runs into pandas tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scratchlib.utils import remove_stale_temporaries

from .readers import (
    MalformedRunError,
    MalformedRunWarning,
    find_runs,
    load_config,
    load_events,
    load_runs,
    load_scalars,
    load_steps,
)
from .run import SCHEMA_VERSION, Run, active, runs_root, set_active
from .wandb_bridge import WandbBridge, resolve_mode

__all__ = [
    "start",
    "resume",
    "Run",
    "active",
    "find_runs",
    "find_run_dir",
    "load_config",
    "load_events",
    "load_runs",
    "load_scalars",
    "load_steps",
    "runs_root",
    "SCHEMA_VERSION",
    "model_identity",
    "MalformedRunError",
    "MalformedRunWarning",
]


def model_identity(model: Any) -> tuple[str, dict[str, Any]]:
    """``(short_name, model_info_dict)`` for a model instance, class or registered name.

    Only a name needs the model registry, and only then is ``scratchlib.models`` imported."""
    if isinstance(model, str):
        from scratchlib import models  # lazily: tracking does not depend on the models

        try:
            cls = models.get(model)
        except KeyError:
            return model, {}
    else:
        cls = model if isinstance(model, type) else type(model)
    info = getattr(cls, "MODEL_INFO", None)
    return cls.__name__.lower(), (info.as_dict() if hasattr(info, "as_dict") else {})


def _attach_wandb(run: Run, wandb_mode: str | None) -> None:
    if wandb_mode is None:
        return
    info, facts = run.model_info, run.data_facts
    tags = [
        t
        for t in (
            run.model_name,
            info.get("module"),
            info.get("category"),
            run.experiment,
            facts.get("data_source"),
        )
        if t
    ]
    bridge = WandbBridge(
        run,
        wandb_mode,
        tags=[str(t)[:64] for t in tags],
        project=f"ai-from-scratch-{run.model_name}",
    )
    run.wandb = bridge if bridge.active else None
    run.event("on_wandb", mode=bridge.mode, active=bridge.active)


def _supersede(keep: Path | None = None) -> None:
    previous = active()
    if previous is not None and previous.status == "running" and previous.dir != keep:
        previous.finish("superseded")


def start(
    model: Any,
    experiment: str = "default",
    config: dict[str, Any] | None = None,
    data: Any = None,
    wandb: bool | str | None = False,
    root: str | os.PathLike[str] | None = None,
) -> Run:
    """Start a run and make it the active one.

    model: a model instance, class or name (its ``MODEL_INFO`` is recorded, and an instance's
        ``hparams`` when it has them).
    data: a DataModule / :class:`scratchlib.data.DataBundle` (its ``facts()`` are recorded — a
        fallback never hides) or a dict of facts.
    wandb: ``False`` (default), ``True`` (mode from ``$WANDB_MODE``, else online), or
        ``"online"`` / ``"offline"`` / ``"disabled"``.
    """
    mode = resolve_mode(wandb)  # a bad mode fails here, before any folder is made
    name, info = model_identity(model)
    hparams = getattr(model, "hparams", None) if not isinstance(model, (str, type)) else None
    data_facts = data.facts() if hasattr(data, "facts") else dict(data or {})
    _supersede()
    run = Run(
        name,
        experiment,
        config=config,
        root=root,
        model_info=info,
        data_facts=data_facts,
        hparams=dict(hparams) if isinstance(hparams, dict) else None,
    )
    _attach_wandb(run, mode)
    set_active(run)
    return run


def find_run_dir(path: str | os.PathLike[str]) -> Path:
    """The run folder ``path`` is, or is inside (e.g. ``<run>/checkpoints/last.pt``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"nothing to resume at {p}: pass a run folder (outputs/runs/run_...) "
            "or the checkpoints/last.pt inside one"
        )
    for d in (p, *p.parents) if p.is_dir() else p.parents:
        if (d / "config.json").is_file() and (d / "facts").is_dir():
            return d
    raise FileNotFoundError(
        f"{p} is not inside a run folder (no config.json beside a facts/ folder); "
        "pass a run folder made by track.start or `scratch train`"
    )


def resume(path: str | os.PathLike[str], wandb: bool | str | None = False) -> Run:
    """Reopen a run folder to continue it, and make it the active run.

    ``path``: the run folder or a checkpoint inside it. The run's status is ``running`` again; an
    ``on_resume`` event records the checkpoint; temporary files an interrupted write left in
    ``facts/``, ``checkpoints/`` and the folder itself are removed. Pass the checkpoint on to
    ``Trainer(resume=..., run=run)`` to continue training.
    """
    mode = resolve_mode(wandb)
    folder = find_run_dir(path)
    run = Run.open(folder)  # a malformed config.json raises MalformedRunError here
    _supersede(keep=folder)
    removed = [
        str(p.relative_to(folder))
        for d in (folder, run.facts_dir, run.checkpoints_dir)
        for p in remove_stale_temporaries(d)
    ]
    checkpoint = Path(path).expanduser()
    run.event(
        "on_resume",
        checkpoint=str(checkpoint.resolve().relative_to(folder.resolve()))
        if checkpoint.is_file()
        else None,
        removed_temporaries=removed,
    )
    _attach_wandb(run, mode)
    set_active(run)
    return run
