"""Small pieces the Trainer is made of: per-period sums, device moves, CPU snapshots."""

from __future__ import annotations

from typing import Any

import torch

from .distributed import World, all_reduce_sum

__all__ = [
    "NonFiniteLossError",
    "Sums",
    "StepModule",
    "to_device",
    "cpu_copy",
    "loader_len",
    "describe",
    "check_arguments",
    "Resumable",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch, batch and step."""

    @classmethod
    def at(
        cls, value: float, epoch: int, batch_idx: int, step: int, lr: float
    ) -> NonFiniteLossError:
        return cls(
            f"the training loss became {value} at batch {batch_idx} of epoch {epoch} (step {step}): "
            f"lower the learning rate (lr={lr}), add grad_clip, or check the inputs for NaN/inf. "
            "Training stopped; last.pt keeps the last finite weights."
        )

    @classmethod
    def weights(cls, epoch: int, step: int, lr: float, what: str) -> NonFiniteLossError:
        return cls(
            f"the {what} became NaN/inf during epoch {epoch} (by step {step}): an update diverged "
            f"although every training loss was finite. Lower the learning rate (lr={lr}) or add "
            "grad_clip. Training stopped; last.pt keeps the last finite weights."
        )


class Sums:
    """What a period's steps returned, kept on the device until the period ends (one read then).

    Each batch's loss is kept as a detached device scalar (no copy, no host sync) and stacked when
    the period ends: the mean comes from it, and so does the first non-finite batch, named exactly. Other
    scalars are summed; ``correct``/``count`` become ``accuracy``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._losses: list[torch.Tensor] = []  # one detached scalar per batch, stacked when read
        self.where: list[tuple[int, int, int]] = []  # (epoch, batch_idx, step) of each loss
        self.extras: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.batches = 0

    def add(self, out: dict[str, Any], where: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.batches += 1
        if "loss" in out:
            self._losses.append(out["loss"].detach())
            self.where.append(where)
        for k, v in out.items():
            if k == "loss":
                continue
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.detach().reshape(())
                if k in self.extras:
                    self.extras[k] += v  # in place, on the device
                else:
                    self.extras[k] = v.double().clone()
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                self.extras[k] = self.extras.get(k, 0) + v
            else:
                continue
            self.counts[k] = self.counts.get(k, 0) + 1

    @property
    def losses(self) -> torch.Tensor:
        """This period's batch losses, in order, as one float32 tensor on the device (no host read)."""
        if not self._losses:
            return torch.zeros(0, device=self.device)
        return torch.stack([v.reshape(()).float() for v in self._losses])

    def first_nonfinite(self) -> tuple[int, int, int] | None:
        """Where the first NaN/inf loss of this period was, or None (one host read)."""
        bad = ~torch.isfinite(self.losses)
        if not bool(bad.any()):
            return None
        return self.where[int(bad.nonzero()[0])]

    def means(self, world: World) -> dict[str, float]:
        """Per-batch means (summed over every process under DDP); ``accuracy`` = Σcorrect / Σcount."""
        keys = list(self.extras)
        values = [self.losses.double().sum()] + [
            torch.as_tensor(self.extras[k], dtype=torch.float64, device=self.device) for k in keys
        ]
        counts = [len(self.where)] + [self.counts[k] for k in keys]
        total = torch.stack(
            values
            + [torch.tensor(float(c), dtype=torch.float64, device=self.device) for c in counts]
        )
        total = all_reduce_sum(total, world).tolist()  # the one read of the period
        sums, ns = (
            dict(zip(["loss", *keys], total[: len(counts)], strict=True)),
            total[len(counts) :],
        )
        ns = dict(zip(["loss", *keys], ns, strict=True))
        out = {"loss": sums["loss"] / max(ns["loss"], 1)} if ns["loss"] else {}
        if "correct" in sums and "count" in sums:
            out["accuracy"] = sums.pop("correct") / max(sums.pop("count"), 1)
        out.update(
            {k: sums[k] / max(ns[k], 1) for k in sums if k not in ("loss", "correct", "count")}
        )
        return out


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (tuples, lists, dicts, nested) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU: a snapshot later steps cannot change."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def loader_len(loader: Any) -> int | None:
    """Batches per epoch, or None for a loader without ``len()``."""
    try:
        return len(loader)
    except TypeError:
        return None


def describe(value: Any) -> Any:
    """A JSON-friendly view of a Trainer argument: callables by name, devices and paths as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if callable(value):
        return getattr(value, "__qualname__", None) or type(value).__name__
    return str(value)


class StepModule(torch.nn.Module):
    """A training step as a module's forward, so DDP sees it and syncs gradients (as Lightning does)."""

    def __init__(self, step: Any, model: torch.nn.Module) -> None:
        super().__init__()
        self.step, self.model = step, model

    def forward(self, batch: Any, batch_idx: int) -> Any:
        return self.step(batch, batch_idx)


def check_arguments(lr: Any, grad_clip: Any, monitor: Any, **positive_ints: Any) -> None:
    """Refuse Trainer arguments that would train wrongly, naming the argument and what it takes."""
    for name, value in positive_ints.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if grad_clip is not None and (
        isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or not grad_clip > 0
    ):
        raise ValueError(
            f"grad_clip must be a positive number (a max gradient norm) or None, got {grad_clip!r}"
        )
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 < lr < float("inf")):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not isinstance(monitor, str) or not monitor.startswith(("val_", "train_")):
        raise ValueError(
            f"monitor must name a history column such as 'val_loss', 'val_accuracy' or 'train_loss', got {monitor!r}"
        )


class Resumable:
    """A loader without ``state_dict`` (a torch DataLoader) made resumable: the state of its seeded
    ``generator`` when each epoch starts and the batches yielded since are saved, so a resumed run
    draws the same order and skips what it already trained on. Without a generator the order comes
    from torch's global RNG, which checkpoints restore: exact between epochs."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.generator = loader, getattr(loader, "generator", None)
        self._start: torch.Tensor | None = None
        self._position = self._skip = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        skip, self._skip = self._skip, 0
        self._start = self.generator.get_state() if self.generator is not None else None
        for i, batch in enumerate(self.loader):
            if i >= skip:
                self._position = i + 1
                yield batch
        self._start, self._position = None, 0

    def state_dict(self) -> dict[str, Any]:
        state = self._start if self._start is not None else None
        if state is None and self.generator is not None:
            state = self.generator.get_state()
        return {"generator": state, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is not None and self.generator is not None:
            self.generator.set_state(state["generator"])
        self._skip = int(state.get("position", 0))
