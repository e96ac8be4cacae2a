"""The Trainer: one loop for every torch model in the curriculum (docs/seams.md, section 3).

A model plugs in its own ``training_step(batch, batch_idx)``, ``validation_step(batch, batch_idx)``
and ``configure_optimizers()`` (PyTorch Lightning's conventions), or steps its own optimizers with
``automatic_optimization = False``; otherwise the default step is classification (logits, cross-
entropy, accuracy). Callbacks add EMA weights, sample grids, early stopping and checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scratchlib import track, utils

from . import callbacks as cb
from . import checkpoint, optim
from .evaluate import Evaluator
from .parts import (
    NonFiniteLossError,
    Resumable,
    StepModule,
    Sums,
    check_arguments,
    describe,
    loader_len,
    to_device,
)

__all__ = ["Trainer", "NonFiniteLossError"]


class Trainer(Evaluator):
    """Fit a torch model: progress bars, mixed precision, clipping, accumulation, schedules,
    callbacks, atomic best/last checkpoints, exact resume, seeding, tracking and DDP.

    Args:
        epochs: passes over the training data (default 10 unless ``max_steps`` is given).
        max_steps: optimizer steps to train for (iteration-trained models); with ``epochs`` too,
            whichever comes first. val_every_n_steps: validate, write a history row and a
            checkpoint every that many steps (default: at the end of every epoch).
        lr, optimizer, weight_decay, momentum: the optimizer the Trainer builds ("adam", "adamw",
            "sgd" or ``callable(params)``) unless the model has ``configure_optimizers``.
        scheduler: None, "cosine", "onecycle" or ``callable(optimizer, total_steps)``, stepped
            after every optimizer step and planned over the whole run.
        batch_size: the global batch (under DDP each of N processes takes batch_size / N).
        accumulate: gradient accumulation: one optimizer step every ``accumulate`` batches.
        grad_clip: max global gradient norm (> 0), or None.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler).
        compile: ``torch.compile`` the model's forward (also when a custom step calls it); a dict
            is passed on (e.g. ``{"mode": "max-autotune"}``).
        patience, monitor, monitor_mode: early stopping on a history column ("val_loss", ...).
        callbacks: extra :class:`~scratchlib.train.Callback` objects (``EMA``, ``SampleGrid``).
        seed: seeds Python, NumPy and torch when ``fit`` starts: data order, dropout and
            augmentation. The initial weights are made when the model is built: call
            ``utils.seed_everything(seed)`` before building it for identical runs.
        run: a :class:`~scratchlib.track.Run` (default: the active run); checkpoint_dir: where
            best.pt / last.pt go (default: the run's checkpoints/).
        resume: True (last.pt in the checkpoint folder) or a path: continue an interrupted run.
        augment: ``fn(batch) -> batch`` applied to training batches on the device.
        loss_fn: the default step's loss (default: cross-entropy with ``label_smoothing``).
        eval_every: validate every that many epochs. log_every_n_steps: rows of ``steps.csv``.
    """

    def __init__(
        self,
        epochs: int | None = None,
        *,
        max_steps: int | None = None,
        val_every_n_steps: int | None = None,
        lr: float = 1e-3,
        optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
        scheduler: str | Callable[..., Any] | None = None,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        label_smoothing: float = 0.0,
        accumulate: int = 1,
        grad_clip: float | None = None,
        device: str | torch.device = "auto",
        amp: bool = True,
        compile: bool | dict[str, Any] = False,
        channels_last: bool = False,
        patience: int | None = None,
        monitor: str = "val_loss",
        monitor_mode: str = "auto",
        callbacks: Iterable[cb.Callback] = (),
        seed: int = 0,
        run: track.Run | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        augment: Callable[[Any], Any] | None = None,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        progress: bool = True,
        eval_every: int = 1,
        log_every_n_steps: int = 50,
    ) -> None:
        args = {
            k: describe(v) for k, v in locals().items() if k not in ("self", "run", "callbacks")
        }
        epochs = 10 if epochs is None and max_steps is None else epochs
        check_arguments(lr, grad_clip, monitor, epochs=epochs, max_steps=max_steps, patience=patience,
                        val_every_n_steps=val_every_n_steps, batch_size=batch_size, accumulate=accumulate,
                        eval_every=eval_every, log_every_n_steps=log_every_n_steps)  # fmt: skip
        super().__init__(device, amp, batch_size, loss_fn, label_smoothing, callbacks, run)
        self._given_run = run  # else each fit writes into the run active when it starts
        self.epochs, self.max_steps, self.val_every_n_steps = epochs, max_steps, val_every_n_steps
        self.lr, self.optimizer_spec, self.scheduler_spec = lr, optimizer, scheduler
        self.weight_decay, self.momentum, self.seed = weight_decay, momentum, seed
        self.accumulate, self.grad_clip, self.compile = accumulate, grad_clip, compile
        self.channels_last = channels_last and self.device.type == "cuda"
        self.monitor, self.monitor_mode = monitor, cb.monitor_mode(monitor, monitor_mode)
        self.patience, self.checkpoint_dir, self.resume = patience, checkpoint_dir, resume
        self.augment, self.progress = augment, progress and self.world.main
        self.eval_every, self.log_every_n_steps = eval_every, log_every_n_steps
        self.hparams = {**args, "callbacks": [type(c).__name__ for c in self.callbacks]}
        self.hparams["world_size"] = self.world.size
        self.history: dict[str, list[Any]] = {}
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[optim.Scheduled] = []
        self.scaler: torch.amp.GradScaler | None = None
        self.epoch = self.global_step = 0
        self.should_stop = self.stepped = self.finishing = False
        self._internal: list[cb.Callback] = []

    # --- fit: the whole loop ---------------------------------------------------------------------
    def fit(self, model: nn.Module, data: Any) -> dict[str, list[Any]]:
        """Train ``model`` on ``data`` (a DataModule, ``(train_loader, val_loader)`` or a loader).

        Returns the history: one entry per epoch (or per validation when training by steps) of
        ``epoch``, ``step``, ``train_<metric>``, ``val_<metric>``, ``lr`` and ``time``.
        """
        self._setup(model, data)
        try:
            while not self._finished():
                train = self._train_period()  # to the end of an epoch, or the next validation
                self._end_period(train)  # check finite, validate, record, callbacks, checkpoint
        except NonFiniteLossError as exc:
            if self.run is not None:
                self.run.finish("failed", error=str(exc))
            raise
        finally:
            self._teardown()
        self._callback("on_fit_end")
        if self.run is not None:
            self.run.train_end(
                epochs=self.epoch, steps=self.global_step, stopped_early=self.should_stop
            )
        return self.history

    def _setup(self, model: nn.Module, data: Any) -> None:
        self.run = (self._given_run or track.active()) if self.world.main else None
        state = checkpoint.resume_state(self)
        if state is None:
            utils.seed_everything(self.seed)
        self.model = model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.automatic = getattr(model, "automatic_optimization", True)
        if self.amp and self.amp_dtype == torch.float16 and not self.automatic:
            self.amp = False  # fp16 needs a scaler per optimizer: manual models run in fp32 there
        self.train_loader, self.val_loader = self._loaders(data)
        self.data_facts = data.facts() if callable(getattr(data, "facts", None)) else {}
        self.optimizers, self.schedulers = optim.configure(self, model)
        self.scaler = (
            torch.amp.GradScaler("cuda") if self.amp and self.amp_dtype == torch.float16 else None
        )
        self.signature = checkpoint.run_signature(self, model)
        own = getattr(model, "configure_optimizers", None) is not None
        self._schedule_end = optim.planned_steps(self) if self.schedulers and not own else math.inf
        if self.compile:  # model(...) calls compiled, also those inside a custom step
            model.compile(**(self.compile if isinstance(self.compile, dict) else {}))
            what = f"{type(model).__name__}.forward"
            self.event("on_compile", compiled=what, options=describe(self.compile))
        self._train_step = self._step_fn(model, "training_step")
        if self.world.distributed:  # the step runs inside DDP's forward, so gradients sync
            self._ddp = nn.parallel.DistributedDataParallel(StepModule(self._train_step, model))
            self._train_step = self._ddp
        self.history, self.epoch, self.global_step, self._micro = {}, 0, 0, 0
        self.should_stop, self._epoch_iter, self._logged, self._step_rows = False, None, {}, []
        stop = (
            cb.EarlyStopping(self.monitor, self.patience, self.monitor_mode)
            if self.patience
            else None
        )
        self._internal = [stop] if stop is not None else []
        folder = self.checkpoint_dir or (self.run.checkpoints_dir if self.run is not None else None)
        if folder is not None and self.world.main:
            self._internal.append(cb.Checkpoint(folder, self.monitor, self.monitor_mode))
        if hasattr(model, "attach"):
            model.attach(self)
        self._callback("on_fit_start")
        if state is not None:
            checkpoint.restore(self, state)  # records on_resume with what changed
        elif self.run is not None:
            self.run.update_config(trainer=self.hparams)
            init = sum(float(p.detach().double().sum()) for p in model.parameters())
            self.event("on_fit_start", init_checksum=init, data=self.data_facts)
        self._t0, self._bar = time.perf_counter(), self._outer_bar()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def _loaders(self, data: Any) -> tuple[Iterable, Iterable | None]:
        if callable(getattr(data, "train_loader", None)):  # a DataModule: sharded under DDP
            shard = dict(device=self.device, rank=self.world.rank, world_size=self.world.size)
            train = data.train_loader(self.batch_size, seed=self.seed, **shard)
            return train, data.val_loader(self.batch_size, **shard)
        train, val = (
            (data[0], data[1])
            if isinstance(data, (tuple, list)) and len(data) == 2
            else (data, None)
        )
        has_state = callable(getattr(train, "state_dict", None))
        return (train if has_state or not hasattr(train, "__len__") else Resumable(train)), val

    # --- training: batches until the end of an epoch or the next validation -------------------------
    @property
    def in_epoch(self) -> bool:
        """True between the batches of an epoch (a checkpoint then resumes mid-epoch)."""
        return self._epoch_iter is not None

    def resume_epoch(self, position: int) -> None:
        """Continue an interrupted epoch: the loader was restored to skip ``position`` batches."""
        self._epoch_iter, self._in_epoch = iter(self.train_loader), position

    def _train_period(self) -> Sums:
        sums = Sums(self.device)
        self.model.train()
        self._lr = self.optimizers[0].param_groups[0]["lr"]  # what this period trains with
        while True:
            if self._epoch_iter is None:  # a new epoch
                self.epoch, self._in_epoch = self.epoch + 1, 0
                bar = self.progress and self.max_steps is None
                inner = utils.progress(
                    self.train_loader, bar, desc=f"epoch {self.epoch}", leave=False
                )
                self._epoch_iter = iter(inner)
            batch = next(self._epoch_iter, None)
            if batch is None:  # the epoch is over
                if self._in_epoch == 0:
                    raise ValueError("the training loader yielded no batches (empty dataset?)")
                self._epoch_iter, self._epoch_ended = None, True
                if self.val_every_n_steps is None or self._steps_done():
                    return sums
                continue
            self._train_batch(batch, self._in_epoch, sums)
            self._in_epoch += 1
            every = self.val_every_n_steps
            if self._steps_done() or (every and self.stepped and self.global_step % every == 0):
                self._epoch_ended = False
                return sums

    def _train_batch(self, batch: Any, batch_idx: int, sums: Sums) -> None:
        batch = self._prepare(batch)
        if not self.automatic:  # the model steps its own optimizers
            out = self._forward(self._train_step, batch, batch_idx)
            self.stepped = True
        else:
            n = loader_len(self.train_loader)
            self.stepped = (self._micro + 1) % self.accumulate == 0 or batch_idx + 1 == n
            no_sync = self.world.distributed and not self.stepped  # accumulate locally, sync once
            with self._ddp.no_sync() if no_sync else contextlib.nullcontext():
                out = self._forward(self._train_step, batch, batch_idx)
                self._cpu_finite(out["loss"], batch_idx)
                loss = out["loss"] / self.accumulate if self.accumulate > 1 else out["loss"]
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            self._micro = 0 if self.stepped else self._micro + 1
            if self.stepped:
                self._optimizer_step()
        if not self.automatic and "loss" in out:  # a manual step may return nothing
            self._cpu_finite(out["loss"], batch_idx)
        sums.add(out, (self.epoch, batch_idx, self.global_step))
        if self.stepped:
            self.global_step += 1
            for s in self.schedulers:  # not past the planned end: the lr would rise again
                if s.interval == "step" and self.global_step < self._schedule_end:
                    s.scheduler.step()
            if self.global_step % self.log_every_n_steps == 0 and self.run is not None:
                values = {
                    k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()
                }
                self._step_rows.append({"step": self.global_step, "epoch": self.epoch, **values})
            if self._bar is not None and self.max_steps is not None:
                self._bar.update(1)
        self._callback("on_train_batch_end", out, batch, batch_idx)

    def _optimizer_step(self) -> None:
        opt, clip = self.optimizers[0], self.grad_clip
        if self.scaler is not None and clip is not None:
            self.scaler.unscale_(opt)
        if clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    # --- the end of a period: one row of the history ---------------------------------------------------
    def _end_period(self, train: Sums) -> None:
        bad = train.first_nonfinite()  # checked before anything is written: last.pt stays finite
        if bad is not None:
            raise NonFiniteLossError.at(float("nan"), *bad, self.lr)
        params = [p.detach() for p in self.model.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            raise NonFiniteLossError.weights(self.epoch, self.global_step, self.lr, "weights")
        self.finishing = self._finished(ignore_stop=True)
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        row.update({f"train_{k}": v for k, v in train.means(self.world).items()})
        periodic = self.max_steps is not None or self.epoch % self.eval_every == 0
        if self.val_loader is not None and (periodic or self.finishing):
            metrics = self.evaluate(self.model, self.val_loader)
            if not math.isfinite(metrics.get("loss", 0.0)):  # finite updates, broken weights
                raise NonFiniteLossError.weights(
                    self.epoch, self.global_step, self.lr, "validation loss"
                )
            row.update({f"val_{k}": v for k, v in metrics.items()})
            self._callback("on_validation_end", metrics)
        row["lr"], row["time"] = self._lr, time.perf_counter() - self._t0
        self._t0 = time.perf_counter()
        for k, v in row.items():
            self.history.setdefault(k, []).append(v)
        for s in self.schedulers:
            if s.interval == "epoch" and self._epoch_ended:
                s.scheduler.step()
        if self.run is not None:
            self.run.log_epoch(self.epoch, **{k: v for k, v in row.items() if k != "epoch"})
            if self._step_rows:
                self.run.log_steps([utils.jsonable(r) for r in self._step_rows])
                self._step_rows = []
        if self._bar is not None:
            self._bar.update(0 if self.max_steps is not None else 1)
            self._bar.set_postfix(
                {k: f"{row[k]:.4g}" for k in ("train_loss", "val_loss", "val_accuracy") if k in row}
            )
        self._callback("on_epoch_end", row)

    def _finished(self, ignore_stop: bool = False) -> bool:
        epochs_done = self.epochs is not None and self.epoch >= self.epochs
        epochs_done = epochs_done and self._epoch_iter is None
        return (self.should_stop and not ignore_stop) or epochs_done or self._steps_done()

    def _steps_done(self) -> bool:
        return self.max_steps is not None and self.global_step >= self.max_steps

    def _teardown(self) -> None:
        for c in self.all_callbacks():
            c.teardown(self)
        if self._bar is not None:
            if self.should_stop:  # stopped on purpose: a finished bar, not a failed one
                self._bar.total = self._bar.n
            self._bar.close()
        if hasattr(self.model, "attach"):
            self.model.attach(None)

    # --- steps ---------------------------------------------------------------------------------
    def _prepare(self, batch: Any) -> Any:
        if getattr(self.train_loader, "device", None) != self.device:
            batch = to_device(batch, self.device)
        images = batch[0] if isinstance(batch, (tuple, list)) else None
        if self.channels_last and getattr(images, "ndim", 0) == 4:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        return self.augment(batch) if self.augment is not None else batch

    def _cpu_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """On the CPU the check costs nothing: stop at the very batch, before its update."""
        if self.device.type != "cpu":
            return
        value = loss.item() if loss.numel() == 1 else float(loss.detach().float().sum())
        if not math.isfinite(value):
            raise NonFiniteLossError.at(value, self.epoch, batch_idx, self.global_step, self.lr)

    # --- callbacks and what they call back ---------------------------------------------------------------------
    def all_callbacks(self) -> list[cb.Callback]:
        """The user's callbacks, then early stopping and checkpointing (they run last)."""
        return self.callbacks + self._internal

    def _callback(self, hook: str, *args: Any) -> None:
        for c in self.all_callbacks():
            getattr(c, hook)(self, self.model, *args)

    def checkpoint_state(self) -> dict[str, Any]:
        return checkpoint.trainer_state(self)

    def _outer_bar(self) -> Any:
        by_steps = self.max_steps is not None
        total, done = (self.max_steps, self.global_step) if by_steps else (self.epochs, self.epoch)
        return utils.progress(
            None, self.progress, total=total, initial=done, desc=type(self.model).__name__
        )
