"""Optimizers (plain and proximal) and learning-rate schedules."""
from .base import Optimizer
from .optimizers import (SGD, Adam, ProxAdam, ProxRMSProp, ProxSGD, RMSProp,
                         make_optimizer)
from .schedule import Constant, Cosine, StepDecay, Warmup

__all__ = ["Optimizer", "SGD", "Adam", "RMSProp", "ProxSGD", "ProxAdam", "ProxRMSProp",
           "make_optimizer", "Constant", "Cosine", "StepDecay", "Warmup"]
