"""Optimizers (plain and proximal) and learning-rate schedules."""
from .base import Optimizer
from .hooks import FixedMask, L1Prox, UpdateHook
from .optimizers import (SGD, Adam, ProxAdam, ProxRMSProp, ProxSGD, RMSProp,
                         make_optimizer)
from .schedule import SCHEDULES, Constant, Cosine, StepDecay, Warmup, make_schedule
from .target import ControlSettings, FreezeSupport, TargetSparsity

__all__ = ["Optimizer", "SGD", "Adam", "RMSProp", "ProxSGD", "ProxAdam", "ProxRMSProp",
           "make_optimizer", "Constant", "Cosine", "StepDecay", "Warmup",
           "SCHEDULES", "make_schedule", "UpdateHook", "L1Prox", "FixedMask",
           "TargetSparsity", "ControlSettings", "FreezeSupport"]
