"""Optimizers and schedulers: built from the Trainer's arguments or taken from the model's own
``configure_optimizers()``, in PyTorch Lightning's return forms (docs/seams.md, section 1)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = [
    "Scheduled",
    "build_optimizer",
    "build_scheduler",
    "parse_configured",
    "configure",
    "planned_steps",
]

FORMS = (
    "configure_optimizers() may return: an optimizer; a list of optimizers; "
    "([optimizers], [schedulers]); {'optimizer': opt, 'lr_scheduler': sched or "
    "{'scheduler': sched, 'interval': 'step' | 'epoch'}}; or a list of such dicts"
)


@dataclass
class Scheduled:
    """A learning-rate scheduler and when the Trainer steps it."""

    scheduler: Any
    interval: str = "epoch"  # "step": after every optimizer step; "epoch": after every epoch


def build_optimizer(
    spec: str | Callable[..., Optimizer],
    model: nn.Module,
    lr: float,
    weight_decay: float,
    momentum: float,
) -> Optimizer:
    """``"adam"``, ``"adamw"``, ``"sgd"`` (Nesterov when momentum > 0) or ``callable(params)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if callable(spec):
        return spec(params)
    if spec == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if spec == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if spec == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
        )
    raise ValueError(f"unknown optimizer {spec!r}; use 'adam', 'adamw', 'sgd' or a callable")


def build_scheduler(
    spec: str | Callable[..., Any], optimizer: Optimizer, total_steps: int, lr: float
) -> Scheduled:
    """``"cosine"``, ``"onecycle"`` or ``callable(optimizer, total_steps)``; stepped every step."""
    total_steps = max(int(total_steps), 1)
    if callable(spec):
        return Scheduled(spec(optimizer, total_steps), "step")
    if spec == "cosine":
        return Scheduled(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps), "step")
    if spec == "onecycle":
        one = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.25
        )
        return Scheduled(one, "step")
    raise ValueError(f"unknown scheduler {spec!r}; use None, 'cosine', 'onecycle' or a callable")


def _scheduled(item: Any) -> Scheduled:
    if isinstance(item, dict):
        if "scheduler" not in item:
            raise TypeError(f"an lr_scheduler dict needs a 'scheduler' key. {FORMS}")
        interval = item.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise ValueError(f"lr_scheduler interval must be 'step' or 'epoch', got {interval!r}")
        return Scheduled(item["scheduler"], interval)
    if isinstance(item, Optimizer) or not hasattr(item, "step"):
        raise TypeError(f"{type(item).__name__} is not a learning-rate scheduler. {FORMS}")
    return Scheduled(item)


def parse_configured(configured: Any) -> tuple[list[Optimizer], list[Scheduled]]:
    """The optimizers and schedulers of any of Lightning's forms; anything else is a clear error."""
    if isinstance(configured, Optimizer):
        return [configured], []
    if isinstance(configured, dict):
        if "optimizer" not in configured:
            raise TypeError(f"a configure_optimizers dict needs an 'optimizer' key. {FORMS}")
        sched = configured.get("lr_scheduler")
        return [configured["optimizer"]], ([] if sched is None else [_scheduled(sched)])
    if isinstance(configured, (list, tuple)) and configured:
        if all(isinstance(o, Optimizer) for o in configured):
            return list(configured), []
        if all(isinstance(d, dict) for d in configured):
            opts, scheds = [], []
            for d in configured:
                o, s = parse_configured(d)
                opts += o
                scheds += s
            return opts, scheds
        if len(configured) == 2 and all(isinstance(p, (list, tuple)) for p in configured):
            opts, scheds = configured
            if opts and all(isinstance(o, Optimizer) for o in opts):
                return list(opts), [_scheduled(s) for s in scheds]
    raise TypeError(f"configure_optimizers() returned {type(configured).__name__}. {FORMS}")


def configure(trainer: Any, model: nn.Module) -> tuple[list[Optimizer], list[Scheduled]]:
    """The model's ``configure_optimizers()`` if it has one, else the Trainer's optimizer (and its
    scheduler, planned over the whole run)."""
    own = getattr(model, "configure_optimizers", None)
    if own is not None:
        optimizers, schedulers = parse_configured(own())
    else:
        t = trainer
        optimizers = [build_optimizer(t.optimizer_spec, model, t.lr, t.weight_decay, t.momentum)]
        schedulers = []
    if len(optimizers) > 1 and getattr(model, "automatic_optimization", True):
        raise TypeError(
            f"{type(model).__name__} configures {len(optimizers)} optimizers: a model with several "
            "optimizers steps them itself. Set automatic_optimization = False and call "
            "self.manual_backward(loss) and opt.step() in training_step (docs/seams.md)."
        )
    if trainer.scheduler_spec is not None and not schedulers:
        total = planned_steps(trainer)
        schedulers = [
            build_scheduler(trainer.scheduler_spec, o, total, trainer.lr) for o in optimizers
        ]
    return optimizers, schedulers


def planned_steps(trainer: Any) -> int:
    """Optimizer steps the run will take: ``max_steps``, or epochs × steps per epoch."""
    try:
        n = len(trainer.train_loader)
    except TypeError:
        n = None
    if n is None and trainer.max_steps is None:
        raise ValueError(
            "a scheduler needs a known length: give max_steps for a loader without len()"
        )
    per_epoch = math.ceil(n / trainer.accumulate) if n else None
    by_epochs = per_epoch * trainer.epochs if per_epoch and trainer.epochs else None
    return min(s for s in (trainer.max_steps, by_epochs) if s is not None)
