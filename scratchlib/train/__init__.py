"""Training: the :class:`Trainer`, checkpoints and the loop helpers NumPy models share."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .loop import fit_epochs
from .trainer import TensorLoader, Trainer

__all__ = [
    "Trainer",
    "TensorLoader",
    "fit_epochs",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
]
