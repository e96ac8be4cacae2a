"""Training: the :class:`Trainer`, checkpoints and the loop helpers NumPy models share."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .trainer import TensorLoader, Trainer

__all__ = ["Trainer", "TensorLoader", "CheckpointError", "save_checkpoint", "load_checkpoint"]
