"""Training: the :class:`Trainer`, its callbacks, checkpoints and the loop NumPy models share."""

from scratchlib.data.loaders import TensorLoader

from .callbacks import EMA, Callback, Checkpoint, EarlyStopping, SampleGrid
from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from .loop import fit_epochs
from .module import Module
from .parts import NonFiniteLossError
from .trainer import Trainer

__all__ = [
    "Trainer",
    "Module",
    "Callback",
    "EMA",
    "SampleGrid",
    "EarlyStopping",
    "Checkpoint",
    "TensorLoader",
    "fit_epochs",
    "CheckpointError",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
]
