"""The Trainer: one loop for every torch model in the curriculum.

A model may define ``training_step(batch) -> loss | {"loss": ..., <scalars>}``,
``validation_step(batch) -> {"loss": ..., "accuracy": ...}`` and ``configure_optimizers()`` to
plug in its own loop (GAN, DDPM, detection) without forking the Trainer. Otherwise the default is
classification: logits = model(x), cross-entropy, accuracy.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlib import track
from scratchlib.utils import choose_device, seed_everything

from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    serialize,
)

__all__ = ["Trainer", "TensorLoader"]


class TensorLoader:
    """Batches from tensors that already live on the device: no per-item Python, no copies.

    Shuffling uses its own seeded generator, whose state is saved in checkpoints so a resumed run
    sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]

    @property
    def dataset_size(self) -> int:
        return len(self.x)


def _as_loaders(data: Any, batch_size: int, device: torch.device, seed: int):
    """(train, val) iterables from a DataBundle, a (train, val) pair or a single loader."""
    if hasattr(data, "x_train"):  # DataBundle: keep the tensors on the device

        def t(a, dtype=None):
            return torch.as_tensor(a, dtype=dtype).to(device)

        train = TensorLoader(t(data.x_train), t(data.y_train, torch.long), batch_size, True, seed)
        val = TensorLoader(t(data.x_test), t(data.y_test, torch.long), max(batch_size, 512), False)
        return train, val
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    return data, None


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _loader_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


class Trainer:
    """Fit a torch model with progress bars, mixed precision, clipping, schedules, early stopping,
    atomic best/last checkpoints, exact resume, seeding and tracking.

    Args:
        epochs: passes over the training data.
        lr, weight_decay, momentum: optimiser settings (ignored if the model configures its own).
        optimizer: "adam", "adamw", "sgd" or ``callable(params) -> Optimizer``.
        scheduler: None, "cosine", "onecycle" or ``callable(optimizer, total_steps)``; stepped
            every batch.
        device: "auto" (CUDA, MPS, CPU), or a device name.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler).
        grad_clip: max global gradient norm (None: no clipping).
        patience: early stopping after this many epochs without improving ``monitor``.
        monitor: "val_loss" (lower is better) or "val_accuracy" (higher is better).
        run: a :class:`~scratchlib.track.Run`; default: the active run (if any).
        checkpoint_dir: where best.pt / last.pt go; default the run's checkpoints/ (none if no run).
        resume: True (last.pt in checkpoint_dir) or a path: continue an interrupted run exactly.
        augment: ``callable(x) -> x`` applied to training inputs on the device.
        loss_fn: for the default step (default: cross-entropy with ``label_smoothing``).
    """

    def __init__(
        self,
        epochs: int = 10,
        lr: float = 1e-3,
        optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
        scheduler: str | Callable[..., Any] | None = None,
        device: str | torch.device = "auto",
        amp: bool = True,
        grad_clip: float | None = None,
        patience: int | None = None,
        monitor: str = "val_loss",
        batch_size: int = 128,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        label_smoothing: float = 0.0,
        seed: int = 0,
        run: track.Run | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        progress: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        eval_every: int = 1,
    ) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if monitor not in {"val_loss", "val_accuracy", "train_loss"}:
            raise ValueError(
                f"monitor must be 'val_loss', 'val_accuracy' or 'train_loss', got {monitor!r}"
            )
        self.epochs, self.lr, self.optimizer_spec, self.scheduler_spec = (
            epochs,
            lr,
            optimizer,
            scheduler,
        )
        self.device = choose_device(device)
        self.amp = amp and self.device.type == "cuda"
        self.amp_dtype = (
            torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.grad_clip, self.patience, self.monitor = grad_clip, patience, monitor
        self.batch_size, self.weight_decay, self.momentum = batch_size, weight_decay, momentum
        self.label_smoothing, self.seed = label_smoothing, seed
        self.run = run
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resume, self.augment, self.loss_fn, self.progress = resume, augment, loss_fn, progress
        # channels-last speeds up convolutions on CUDA tensor cores; on CPUs it often slows them
        self.channels_last = channels_last and self.device.type == "cuda"
        self.compile, self.eval_every = compile, eval_every
        self.history: dict[str, list[Any]] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None

    # --- set-up -----------------------------------------------------------------------------
    def _make_optimizer(self, model: nn.Module, total_steps: int) -> None:
        configured = (
            model.configure_optimizers() if hasattr(model, "configure_optimizers") else None
        )
        if isinstance(configured, (tuple, list)):
            self.optimizer, self.scheduler = configured[0], configured[1]
            return
        if configured is not None:
            self.optimizer = configured
        else:
            params = [p for p in model.parameters() if p.requires_grad]
            spec = self.optimizer_spec
            if callable(spec):
                self.optimizer = spec(params)
            elif spec == "adam":
                self.optimizer = torch.optim.Adam(
                    params, lr=self.lr, weight_decay=self.weight_decay
                )
            elif spec == "adamw":
                self.optimizer = torch.optim.AdamW(
                    params, lr=self.lr, weight_decay=self.weight_decay
                )
            elif spec == "sgd":
                self.optimizer = torch.optim.SGD(
                    params,
                    lr=self.lr,
                    momentum=self.momentum,
                    weight_decay=self.weight_decay,
                    nesterov=self.momentum > 0,
                )
            else:
                raise ValueError(
                    f"unknown optimizer {spec!r}; use 'adam', 'adamw', 'sgd' or a callable"
                )
        sched = self.scheduler_spec
        if sched is None:
            self.scheduler = None
        elif callable(sched):
            self.scheduler = sched(self.optimizer, total_steps)
        elif sched == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, max(total_steps, 1)
            )
        elif sched == "onecycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=self.lr, total_steps=max(total_steps, 1), pct_start=0.25
            )
        else:
            raise ValueError(
                f"unknown scheduler {sched!r}; use None, 'cosine', 'onecycle' or a callable"
            )

    # --- the default step (classification) ----------------------------------------------------
    def _default_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1]
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        if self.loss_fn is not None:
            loss = self.loss_fn(logits, y)
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        out = {"loss": loss}
        if logits.dim() == 2 and y.dim() == 1:
            out["correct"] = (logits.argmax(1) == y).sum()
            out["count"] = y.numel()  # a Python int: no host-to-device copy per batch
        return out

    def _step(
        self, model: nn.Module, batch: Any, custom: Callable[..., Any] | None
    ) -> dict[str, Any]:
        """One step's outputs: the model's own ``training_step``/``validation_step`` if it has one
        (looked up once per epoch by the caller), else the default classification step."""
        if self.amp:
            with torch.autocast("cuda", dtype=self.amp_dtype):
                out = custom(batch) if custom is not None else self._default_step(model, batch)
        else:  # no context manager at all on the plain path: this runs every batch
            out = custom(batch) if custom is not None else self._default_step(model, batch)
        return out if isinstance(out, dict) else {"loss": out}

    # --- fit -----------------------------------------------------------------------------------
    def fit(self, model: nn.Module, data: Any) -> dict[str, list[Any]]:
        """Train ``model`` on ``data`` (a DataBundle, ``(train_loader, val_loader)`` or a loader).

        Returns the history: ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy``, ``lr``, ``epoch_time`` (lists, one entry per epoch).
        """
        run = self.run if self.run is not None else track.active()
        ckpt_dir = self.checkpoint_dir or (run.checkpoints_dir if run is not None else None)
        start_epoch, best, stale = 1, None, 0
        resume_state = self._resume_state(ckpt_dir)
        if resume_state is None:
            seed_everything(self.seed)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        train_loader, val_loader = _as_loaders(data, self.batch_size, self.device, self.seed)
        steps = _loader_len(train_loader) or 1
        self._make_optimizer(model, steps * self.epochs)
        self.scaler = (
            torch.amp.GradScaler("cuda") if self.amp and self.amp_dtype == torch.float16 else None
        )
        self.history = {}
        if resume_state is not None:
            self._check_resume(resume_state)
            load_model_state(model, resume_state, resume_state["_path"])
            self.optimizer.load_state_dict(resume_state["optimizer"])
            if self.scheduler is not None and resume_state.get("scheduler") is not None:
                self.scheduler.load_state_dict(resume_state["scheduler"])
            if self.scaler is not None and resume_state.get("scaler") is not None:
                self.scaler.load_state_dict(resume_state["scaler"])
            self.history = resume_state["history"]
            best, stale = resume_state.get("best"), resume_state.get("stale", 0)
            start_epoch = resume_state["epoch"] + 1
            _set_rng(resume_state["rng"], train_loader)
            if run is not None:
                run.event("on_resume", from_epoch=resume_state["epoch"])
        step_model = torch.compile(model) if self.compile else model
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: list[Future[None]] = []

        try:
            bar = _progress(
                range(start_epoch, self.epochs + 1),
                self.progress,
                desc=type(model).__name__,
                initial=start_epoch - 1,
                total=self.epochs,
            )
            for epoch in bar:
                t0 = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                train_stats = self._train_epoch(step_model, train_loader, epoch)
                row: dict[str, Any] = {
                    "epoch": epoch,
                    **{f"train_{k}": v for k, v in train_stats.items()},
                }
                if val_loader is not None and (
                    epoch % self.eval_every == 0 or epoch == self.epochs
                ):
                    val_stats = self.evaluate(
                        step_model, val_loader, device=self.device, _trainer=self
                    )
                    row.update({f"val_{k}": v for k, v in val_stats.items()})
                row["lr"], row["epoch_time"] = lr, time.perf_counter() - t0
                for k, v in row.items():
                    self.history.setdefault(k, []).append(v)
                if run is not None:
                    run.log_epoch(epoch, **{k: v for k, v in row.items() if k != "epoch"})
                if self.progress and hasattr(bar, "set_postfix"):
                    bar.set_postfix(
                        {
                            k: f"{v:.4g}"
                            for k, v in row.items()
                            if k in ("train_loss", "val_loss", "val_accuracy")
                        }
                    )

                score = row.get(self.monitor)
                improved = score is not None and (
                    best is None
                    or (score > best if self.monitor == "val_accuracy" else score < best)
                )
                if improved:
                    best, stale = score, 0
                elif score is not None:
                    stale += 1
                if ckpt_dir is not None:
                    # Snapshot now (a CPU copy of every tensor), serialise and write in the background
                    # while the next epoch trains; writes are atomic and in order, and fit() waits for
                    # them before returning.
                    snapshot = _cpu_copy(self._state(model, epoch, best, stale, train_loader))
                    final = epoch == self.epochs or (
                        self.patience is not None and stale >= self.patience
                    )
                    targets = [(Path(ckpt_dir) / "last.pt", "last" if final else None, {})]
                    if improved:
                        targets.insert(
                            0, (Path(ckpt_dir) / "best.pt", "best", {self.monitor: score})
                        )
                    self._write(writer, snapshot, targets, run, epoch)
                if self.patience is not None and stale >= self.patience:
                    if run is not None:
                        run.event("on_early_stop", epoch=epoch, best=best, monitor=self.monitor)
                    break
        finally:
            # Interrupted or not, let the last completed epoch's checkpoint finish writing.
            writer.shutdown(wait=True)
        for f in self._pending:
            f.result()  # surface any write error here, not silently
        if run is not None:
            run.train_end(
                epochs=len(self.history.get("epoch", [])), best=best, monitor=self.monitor
            )
        return self.history

    def _write(
        self,
        writer: ThreadPoolExecutor,
        snapshot: dict[str, Any],
        targets: list[tuple[Path, str | None, dict[str, Any]]],
        run: Any,
        epoch: int,
    ) -> None:
        """In the background: serialise the snapshot once, write it atomically to every target."""

        def job() -> None:
            blob = serialize(snapshot)
            for path, kind, info in targets:
                save_checkpoint(path, blob)
                if run is not None and kind is not None:
                    run.checkpoint_saved(path, kind, epoch=epoch, **info)

        self._pending = [f for f in self._pending if not f.done() or f.result() is None]
        self._pending.append(writer.submit(job))

    def _train_epoch(self, model: nn.Module, loader: Any, epoch: int) -> dict[str, float]:
        model.train()
        custom = getattr(model, "training_step", None)
        total_loss = torch.zeros((), device=self.device)
        extras: dict[str, Any] = {}
        n_batches = 0
        inner = _progress(
            loader, self.progress, desc=f"epoch {epoch}", leave=False, total=_loader_len(loader)
        )
        on_device = isinstance(loader, TensorLoader)  # its batches already live on the device
        for batch in inner:
            if not on_device:
                batch = _to(batch, self.device)
            if self.augment is not None:
                batch = (self.augment(batch[0]), *batch[1:])
            out = self._step(model, batch, custom)
            loss = out["loss"]
            if n_batches == 0 and not torch.isfinite(loss.detach()).all():  # one sync per epoch
                raise FloatingPointError(
                    f"loss is {loss.item()} on the first batch of epoch {epoch}: lower the learning "
                    f"rate (lr={self.lr}) or check the inputs for NaN/inf."
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                if self.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                if self.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            total_loss += loss.detach().float()
            _accumulate(extras, out)
            n_batches += 1
        stats = {"loss": (total_loss / max(n_batches, 1)).item()}
        stats.update(_summarise(extras, n_batches))
        return stats

    # --- evaluation ----------------------------------------------------------------------------
    @staticmethod
    @torch.no_grad()
    def evaluate(
        model: nn.Module,
        data: Any,
        device: str | torch.device | None = None,
        batch_size: int = 512,
        run: track.Run | None = None,
        split: str = "test",
        _trainer: Trainer | None = None,
    ) -> dict[str, float]:
        """Mean loss and accuracy of ``model`` on ``data`` (a DataBundle's test split, a loader or
        a TensorDataset). Logged as ``on_eval`` to ``run`` (or the active run) when called directly.
        """
        trainer = _trainer or Trainer(
            epochs=1, device=device or _model_device(model), progress=False
        )
        dev = trainer.device
        if hasattr(data, "x_test"):
            loader = TensorLoader(
                torch.as_tensor(data.x_test).to(dev),
                torch.as_tensor(data.y_test, dtype=torch.long).to(dev),
                batch_size,
                False,
            )
        elif isinstance(data, torch.utils.data.Dataset):
            loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
        else:
            loader = data
        was_training = model.training
        model.eval()
        custom = getattr(model, "validation_step", None)
        total, extras, n = torch.zeros((), device=dev), {}, 0
        for batch in loader:
            batch = _to(batch, dev)
            out = trainer._step(model, batch, custom)
            total += out["loss"].detach().float()
            _accumulate(extras, out)
            n += 1
        model.train(was_training)
        result = {"loss": (total / max(n, 1)).item(), **_summarise(extras, n)}
        if _trainer is None:
            target = run if run is not None else track.active()
            if target is not None:
                target.log_eval(split=split, **result)
        return result

    # --- checkpoints -----------------------------------------------------------------------------
    def _state(
        self, model: nn.Module, epoch: int, best: Any, stale: int, loader: Any
    ) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "model_class": type(model).__name__,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "history": self.history,
            "best": best,
            "stale": stale,
            "monitor": self.monitor,
            "epochs": self.epochs,  # the plan: a resumed run must keep it (schedules depend on it)
            "optimizer_class": type(self.optimizer).__name__,
            "rng": _get_rng(loader),
        }

    def _resume_state(self, ckpt_dir: Path | None) -> dict[str, Any] | None:
        if not self.resume:
            return None
        path = (
            Path(self.resume)
            if not isinstance(self.resume, bool)
            else (Path(ckpt_dir) / "last.pt" if ckpt_dir else None)
        )
        if path is None:
            raise CheckpointError(
                "resume=True needs a run or checkpoint_dir to find last.pt in; "
                "pass resume='path/to/last.pt'"
            )
        state = load_checkpoint(path)
        state["_path"] = str(path)
        return state

    def _check_resume(self, state: dict[str, Any]) -> None:
        """Refuse a resume that could not continue the saved run exactly; nothing is overwritten."""
        path = state["_path"]
        planned = state.get("epochs")
        if planned is not None and planned != self.epochs and (self.scheduler is not None):
            raise CheckpointError(
                f"{path} was saved by a run planned for {planned} epochs with a learning-rate schedule; "
                f"resuming it as {self.epochs} epochs would change the schedule. Resume with "
                f"epochs={planned}, or start a new run."
            )
        saved_opt = state.get("optimizer_class")
        if saved_opt is not None and saved_opt != type(self.optimizer).__name__:
            raise CheckpointError(
                f"{path} holds {saved_opt} optimizer state, but this Trainer uses "
                f"{type(self.optimizer).__name__}; resume with the same optimizer, or start a new run."
            )


def _accumulate(extras: dict[str, Any], out: dict[str, Any]) -> None:
    """Sum a step's extra scalars (tensors stay on the device: no sync per batch)."""
    for k, v in out.items():
        if k == "loss":
            continue
        if isinstance(v, torch.Tensor) and v.dim() == 0:
            if k in extras:
                extras[k] += v.detach()  # in place, on the device
            else:
                extras[k] = v.detach().double().clone()
        elif isinstance(v, (int, float)):
            extras[k] = extras.get(k, 0) + v


def _cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU: a snapshot later steps cannot change."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _summarise(extras: dict[str, Any], n_batches: int) -> dict[str, float]:
    """Per-epoch values: accuracy = correct / count; other extras are averaged over batches."""
    out: dict[str, float] = {}
    if "correct" in extras and "count" in extras:
        out["accuracy"] = float(extras.pop("correct") / extras.pop("count"))
    for k, v in extras.items():
        out[k] = float(v / max(n_batches, 1))
    return out


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _get_rng(loader: Any) -> dict[str, Any]:
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global RNG, restored on resume
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        rng["loader"] = gen.get_state()
    return rng


def _set_rng(rng: dict[str, Any], loader: Any) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])  # noqa: NPY002
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    gen = getattr(loader, "generator", None)
    if "loader" in rng and isinstance(gen, torch.Generator):
        gen.set_state(rng["loader"])


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    """tqdm that renders as a widget in notebooks and as text in terminals; off when disabled."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, mininterval=0.5, **kwargs)
