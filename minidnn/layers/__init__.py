"""Layers written once against the backend primitives."""
from .base import Module, Sequential
from .linear import Conv2d, Linear
from .lowrank import CPConv2d, LowRankLinear, Tucker2Conv2d
from .loss import SoftmaxCrossEntropy
from .normalization import BatchNorm1d, BatchNorm2d
from .residual import Residual
from .simple import AvgPool2d, Dropout, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU

__all__ = ["Module", "Sequential", "Conv2d", "Linear", "SoftmaxCrossEntropy", "BatchNorm1d",
           "BatchNorm2d", "Residual", "AvgPool2d", "Dropout", "Flatten", "GlobalAvgPool2d",
           "MaxPool2d", "ReLU", "LowRankLinear", "Tucker2Conv2d", "CPConv2d"]
