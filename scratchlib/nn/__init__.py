"""From-scratch building blocks, each proven equal to its torch counterpart in tests/test_nn_blocks.py."""

from .conv import Conv2d, conv2d, conv_output_size
from .dropout import Dropout, dropout
from .norm import BatchNorm2d, LocalResponseNorm, batch_norm, local_response_norm
from .pooling import AvgPool2d, MaxPool2d, avg_pool2d, max_pool2d

__all__ = [
    "conv2d",
    "Conv2d",
    "conv_output_size",
    "max_pool2d",
    "avg_pool2d",
    "MaxPool2d",
    "AvgPool2d",
    "batch_norm",
    "BatchNorm2d",
    "local_response_norm",
    "LocalResponseNorm",
    "dropout",
    "Dropout",
]
