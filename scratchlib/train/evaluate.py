"""Evaluating a model: the device, mixed precision and the steps every loop shares.

:class:`Evaluator` measures a model on data (``evaluate``, ``test``, ``predict``); the
:class:`~scratchlib.train.Trainer` is an Evaluator that can also ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scratchlib import track, utils

from . import callbacks as cb
from . import distributed
from .parts import Sums, cpu_copy, to_device

__all__ = ["Evaluator"]


class Evaluator:
    """Run a model's steps on a device, under autocast on CUDA, and average what they return.

    Args:
        device: "auto" (CUDA, then Apple MPS, then the CPU) or a device name; under torchrun each
            process takes its own GPU.
        amp: mixed precision on CUDA (bf16 where supported, else fp16).
        batch_size: for the loaders a DataModule is asked for.
        loss_fn, label_smoothing: the default (classification) step's loss.
        callbacks: an :class:`~scratchlib.train.EMA` among them means its averaged weights are
            the ones evaluated.
        run: where ``test`` records its result (default: the active run).
    """

    def __init__(
        self,
        device: str | torch.device = "auto",
        amp: bool = True,
        batch_size: int = 128,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        label_smoothing: float = 0.0,
        callbacks: Iterable[cb.Callback] = (),
        run: track.Run | None = None,
    ) -> None:
        self.world, self.device = distributed.setup(utils.choose_device(device))
        if self.device.type == "cuda" and self.device.index is None:  # "cuda" -> "cuda:0": compares
            self.device = torch.device("cuda", torch.cuda.current_device())  # equal to loaders'
        self.amp = amp and self.device.type == "cuda"
        bf16 = self.amp and torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.batch_size, self.loss_fn, self.label_smoothing = batch_size, loss_fn, label_smoothing
        self.callbacks, self.run = list(callbacks), run
        self._logged: dict[str, Any] = {}

    # --- steps ------------------------------------------------------------------------------------
    def _forward(self, step: Callable[..., Any], batch: Any, batch_idx: int) -> dict[str, Any]:
        if self.amp:
            with torch.autocast("cuda", dtype=self.amp_dtype):
                out = step(batch, batch_idx)
        else:  # no context manager at all on the plain path: this runs every batch
            out = step(batch, batch_idx)
        out = out if isinstance(out, dict) else ({} if out is None else {"loss": out})
        if self._logged:  # what the step recorded with self.log(...)
            out, self._logged = {**out, **self._logged}, {}
        return out

    def _step_fn(self, model: nn.Module, hook: str) -> Callable[[Any, int], Any]:
        """The model's own ``training_step``/``validation_step``, else the classification step."""
        own = getattr(model, hook, None)
        return own if callable(own) else lambda batch, batch_idx: self._classify(model, batch)

    def _classify(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        """The default step: logits = model(x), cross-entropy, and the counts for accuracy."""
        x, y = batch[0], batch[1]
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

    def log(self, name: str, value: torch.Tensor | float) -> None:
        """Record a scalar from inside a step (what ``Module.log`` calls)."""
        self._logged[name] = value.detach() if isinstance(value, torch.Tensor) else value

    def event(self, name: str, **payload: Any) -> None:
        """Append an event to the run's facts (when there is a run)."""
        if self.run is not None:
            self.run.event(name, **payload)

    def checkpoint_saved(self, path: Any, kind: str, **info: Any) -> None:
        if self.run is not None:
            self.run.checkpoint_saved(path, kind, **info)

    # --- evaluation -------------------------------------------------------------------------------
    def eval_model(self, model: nn.Module) -> nn.Module:
        """The weights that are evaluated: the EMA's average when an :class:`EMA` callback is on."""
        ema = next(
            (c for c in self.callbacks if isinstance(c, cb.EMA) and c.averaged is not None), None
        )
        return ema.module if ema is not None else model

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Any, split: str = "val") -> dict[str, float]:
        """Mean loss and metrics of ``model`` on ``data`` (a DataModule's ``split``, or a loader)."""
        loader = self._split_loader(data, split)
        model = self.eval_model(model.to(self.device))
        was_training = model.training
        model.eval()
        step, sums = self._step_fn(model, "validation_step"), Sums(self.device)
        for batch_idx, batch in enumerate(loader):
            if getattr(loader, "device", None) != self.device:
                batch = to_device(batch, self.device)
            sums.add(self._forward(step, batch, batch_idx))
        model.train(was_training)
        if sums.batches == 0 and not self.world.distributed:
            raise ValueError(f"the {split} loader yielded no batches")
        return sums.means(self.world)

    def test(self, model: nn.Module, data: Any) -> dict[str, float]:
        """Evaluate on the test split — once, at the end — and record it (``on_eval``, split test)."""
        metrics = self.evaluate(model, data, split="test")
        run = self.run or track.active()
        if run is not None and self.world.main:
            run.log_eval(split="test", **metrics)
        return metrics

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Any, split: str = "test") -> Any:
        """The model's outputs over ``data`` (``predict_step(batch, i)`` if it has one, else
        ``model(x)``), concatenated on the CPU."""
        loader = self._split_loader(data, split)
        model = self.eval_model(model.to(self.device))
        was_training = model.training
        model.eval()
        outs = []
        for i, batch in enumerate(loader):
            batch = to_device(batch, self.device)
            own = getattr(model, "predict_step", None)
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            out = cpu_copy(own(batch, i) if callable(own) else model(x))
            if isinstance(out, list):  # per-image outputs (detections): one flat list
                outs.extend(out)
            else:
                outs.append(out)
        model.train(was_training)
        return torch.cat(outs) if outs and isinstance(outs[0], torch.Tensor) else outs

    def _split_loader(self, data: Any, split: str) -> Iterable:
        get = getattr(data, f"{split}_loader", None)
        if callable(get):
            loader = get(
                self.batch_size,
                device=self.device,
                rank=self.world.rank,
                world_size=self.world.size,
            )
            if loader is None:
                raise ValueError(f"{type(data).__name__} has no {split} split")
            return loader
        if isinstance(data, torch.utils.data.Dataset):
            return torch.utils.data.DataLoader(data, batch_size=self.batch_size)
        return data
