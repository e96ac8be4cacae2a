"""An optional base class for models with their own training loop: Lightning's helpers, nothing more.

Any ``nn.Module`` trains with the Trainer; subclass :class:`Module` when a step wants to log a
value (``self.log``), reach its optimizers (``self.optimizers()``) or do its own backward pass
(``self.manual_backward``) — for example a GAN that alternates two optimizers.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

__all__ = ["Module"]


class Module(nn.Module):
    """``nn.Module`` plus ``log``, ``optimizers`` and ``manual_backward`` (docs/seams.md, section 1).

    Set ``automatic_optimization = False`` to step the optimizers yourself in ``training_step``.
    """

    automatic_optimization: bool = True

    @property
    def trainer(self) -> Any:
        """The Trainer fitting this model (``None`` outside ``fit``)."""
        ref = self.__dict__.get("_trainer_ref")  # a weak reference: copies of the model share it
        return ref() if ref is not None else None

    def attach(self, trainer: Any) -> None:
        """Called by the Trainer at the start (``trainer``) and end (``None``) of ``fit``."""
        self.__dict__["_trainer_ref"] = weakref.ref(trainer) if trainer is not None else None

    def log(self, name: str, value: torch.Tensor | float) -> None:
        """Record a scalar from inside a step: averaged per epoch into ``scalars.csv`` as
        ``train_<name>`` / ``val_<name>`` and written per step to ``steps.csv``."""
        if self.trainer is not None:
            self.trainer.log(name, value)

    def optimizers(self) -> Any:
        """The optimizer, or the list of optimizers, ``configure_optimizers`` returned."""
        if self.trainer is None:
            raise RuntimeError(
                "optimizers() is only available while a Trainer is fitting the model"
            )
        opts = self.trainer.optimizers
        return opts[0] if len(opts) == 1 else opts

    def manual_backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` as the Trainer would do it (gradient sync under DDP included)."""
        loss.backward()
