"""Callbacks: small objects the Trainer calls at fixed points of ``fit`` (docs/seams.md, section 3).

Hooks (each optional): ``on_fit_start(trainer, model)``, ``on_train_batch_end(trainer, model,
outputs, batch, batch_idx)``, ``on_validation_end(trainer, model, metrics)``,
``on_epoch_end(trainer, model, row)`` (after each row of the history: an epoch, or a validation
period when training by steps), ``on_fit_end(trainer, model)`` and ``teardown(trainer)`` (always,
even after an error). ``state_dict()`` / ``load_state_dict()`` travel in checkpoints.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from scratchlib.utils import remove_stale_temporaries

from .checkpoint import save_checkpoint, serialize

__all__ = ["Callback", "EMA", "SampleGrid", "EarlyStopping", "Checkpoint", "monitor_mode"]


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_fit_start(self, trainer: Any, model: nn.Module) -> None: ...
    def on_train_batch_end(
        self, trainer: Any, model: nn.Module, outputs: dict, batch: Any, batch_idx: int
    ) -> None: ...
    def on_validation_end(self, trainer: Any, model: nn.Module, metrics: dict) -> None: ...
    def on_epoch_end(self, trainer: Any, model: nn.Module, row: dict) -> None: ...
    def on_fit_end(self, trainer: Any, model: nn.Module) -> None: ...
    def teardown(self, trainer: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def monitor_mode(name: str, mode: str = "auto") -> str:
    """``"max"`` for metrics where higher is better (accuracy, mAP, IoU, Dice, ...), else ``"min"``."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    higher = ("acc", "map", "iou", "dice", "f1", "bleu", "auc", "precision", "recall")
    return "max" if any(h in name.lower() for h in higher) else "min"


class _Best:
    """The best value of a monitored metric so far."""

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        self.monitor, self.mode, self.min_delta = monitor, monitor_mode(monitor, mode), min_delta
        self.best: float | None = None

    def update(self, row: dict[str, Any]) -> bool | None:
        """True if ``row`` improves on the best (and records it), False if not, None if absent."""
        value = row.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best = float(value)
            return True
        return False


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` rows (epochs or validations)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        mode: str = "auto",
        min_delta: float = 0.0,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        self.tracker, self.patience, self.stale = _Best(monitor, mode, min_delta), patience, 0

    def on_epoch_end(self, trainer: Any, model: nn.Module, row: dict) -> None:
        improved = self.tracker.update(row)
        if improved is None:
            return
        self.stale = 0 if improved else self.stale + 1
        if self.stale >= self.patience:
            trainer.should_stop = True
            trainer.event(
                "on_early_stop",
                epoch=row["epoch"],
                best=self.tracker.best,
                monitor=self.tracker.monitor,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.best, self.stale = state.get("best"), int(state.get("stale", 0))


class Checkpoint(Callback):
    """``best.pt`` (when ``monitor`` improves) and ``last.pt`` after every row, written atomically by a
    background thread while training goes on; ``fit`` waits for the writes before it returns."""

    def __init__(self, folder: str | Path, monitor: str = "val_loss", mode: str = "auto") -> None:
        self.folder, self.tracker = Path(folder), _Best(monitor, mode)
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    def on_fit_start(self, trainer: Any, model: nn.Module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)  # left by a write a killed process never finished
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")

    def on_epoch_end(self, trainer: Any, model: nn.Module, row: dict) -> None:
        improved = self.tracker.update(row)
        snapshot = trainer.checkpoint_state()  # a CPU copy now; serialised in the background
        targets = [(self.folder / "last.pt", "last" if trainer.finishing else None)]
        if improved:
            targets.insert(0, (self.folder / "best.pt", "best"))
        info = {self.tracker.monitor: self.tracker.best} if improved else {}

        def write() -> None:
            blob = serialize(snapshot)
            for path, kind in targets:
                save_checkpoint(path, blob)
                if kind is not None:
                    trainer.checkpoint_saved(path, kind, epoch=row["epoch"], **info)

        self._surface_errors()
        self._pending.append(self._writer.submit(write))

    def _surface_errors(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()  # a failed write raises here, not silently

    def teardown(self, trainer: Any) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # interrupted or not, finish the last write
            self._writer = None
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.best = state.get("best")


class EMA(Callback):
    """An exponential moving average of the weights, ``θ̄ ← decay·θ̄ + (1 − decay)·θ`` after every
    optimizer step (Polyak & Juditsky 1992; DDPM samples with it, decay 0.9999).

    While on, validation, ``trainer.test``, ``trainer.predict``, :class:`SampleGrid` and checkpoints
    use the averaged weights; ``ema.module`` is the averaged model. Built on
    ``torch.optim.swa_utils.AveragedModel`` (buffers such as batch-norm statistics averaged too).
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged: AveragedModel | None = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def module(self) -> nn.Module:
        if self.averaged is None:
            raise RuntimeError("the EMA has no weights yet: it starts when fit() starts")
        return self.averaged.module

    def on_fit_start(self, trainer: Any, model: nn.Module) -> None:
        if self.averaged is None:
            fn = get_ema_multi_avg_fn(self.decay)
            self.averaged = AveragedModel(model, multi_avg_fn=fn, use_buffers=True)
        if self._pending_state is not None:
            self.averaged.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_batch_end(
        self, trainer: Any, model: nn.Module, outputs: dict, batch: Any, batch_idx: int
    ) -> None:
        if trainer.stepped:
            self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        if self.averaged is None:
            return {}
        return {"module": self.averaged.module.state_dict(), "n_averaged": self.averaged.n_averaged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        full = {f"module.{k}": v for k, v in state["module"].items()}
        full["n_averaged"] = state["n_averaged"]
        if self.averaged is None:
            self._pending_state = full  # applied when fit starts and the copy exists
        else:
            self.averaged.load_state_dict(full)


class SampleGrid(Callback):
    """Every ``every_n_epochs`` epochs (or ``every_n_steps`` steps), draw ``n`` samples with
    ``model.sample(n, **kwargs)`` (images in [0, 1], ``(n, C, H, W)``) from a fixed seed, so grids
    compare across training, and save them as a figure of the run (``figures/<name>-<step>.png``)."""

    def __init__(
        self,
        n: int = 16,
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        seed: int = 0,
        name: str = "samples",
        **sample_kwargs: Any,
    ) -> None:
        self.n, self.every_n_epochs, self.every_n_steps = n, every_n_epochs, every_n_steps
        self.seed, self.name, self.kwargs = seed, name, sample_kwargs
        self.grids: list[tuple[int, torch.Tensor]] = []  # (step, samples) for the notebook to show

    def on_fit_start(self, trainer: Any, model: nn.Module) -> None:
        if not callable(getattr(model, "sample", None)):
            raise TypeError(f"SampleGrid needs {type(model).__name__}.sample(n) returning images")

    def on_train_batch_end(
        self, trainer: Any, model: nn.Module, outputs: dict, batch: Any, batch_idx: int
    ) -> None:
        k = self.every_n_steps
        if k and trainer.stepped and trainer.global_step % k == 0:
            self.draw(trainer, model)

    def on_epoch_end(self, trainer: Any, model: nn.Module, row: dict) -> None:
        k = self.every_n_epochs
        if k and not self.every_n_steps and row["epoch"] % k == 0:
            self.draw(trainer, model)

    @torch.no_grad()
    def draw(self, trainer: Any, model: nn.Module) -> torch.Tensor:
        m = trainer.eval_model(model)
        was = m.training
        m.eval()
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # fixed noise, and training's RNG untouched
            torch.manual_seed(self.seed)
            x = m.sample(self.n, **self.kwargs).detach().float().clamp(0, 1).cpu()
        m.train(was)
        self.grids.append((trainer.global_step, x))
        if trainer.run is not None:
            from scratchlib import plots

            title = f"samples after step {trainer.global_step} (epoch {trainer.epoch})"
            name = f"{self.name}-{trainer.global_step:07d}"
            plots.image_grid(
                x, run=trainer.run, ncols=min(8, self.n), title=title, name=name, show=False
            )
        return x
