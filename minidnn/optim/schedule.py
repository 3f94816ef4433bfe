"""Learning-rate schedules: small callables step -> lr that compose."""
from __future__ import annotations

import math

from ..errors import ConfigError


class Constant:
    """The same lr at every step."""

    def __init__(self, lr: float) -> None:
        self.lr = float(lr)

    def __call__(self, step: int) -> float:
        return self.lr

    def __repr__(self) -> str:
        return f"Constant({self.lr})"


class StepDecay:
    """lr * gamma ** (step // step_size) (Caffe's 'step' policy)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.lr, self.step_size, self.gamma = float(lr), int(step_size), float(gamma)

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def __repr__(self) -> str:
        return f"StepDecay({self.lr}, step_size={self.step_size}, gamma={self.gamma})"


class Cosine:
    """Cosine decay from lr to min_lr over total_steps, then min_lr."""

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0) -> None:
        self.lr, self.total, self.min_lr = float(lr), max(1, int(total_steps)), float(min_lr)

    def __call__(self, step: int) -> float:
        t = min(step, self.total) / self.total
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * t))

    def __repr__(self) -> str:
        return f"Cosine({self.lr}, total_steps={self.total}, min_lr={self.min_lr})"


class Warmup:
    """Linear warm-up over the first ``steps`` steps, then the wrapped schedule."""

    def __init__(self, schedule, steps: int) -> None:
        self.schedule, self.steps = schedule, int(steps)

    def __call__(self, step: int) -> float:
        lr = self.schedule(step)
        return lr * (step + 1) / self.steps if step < self.steps else lr

    def __repr__(self) -> str:
        return f"Warmup({self.schedule!r}, steps={self.steps})"


def as_schedule(lr) -> "Constant | StepDecay | Cosine | Warmup":
    """A float becomes Constant(lr); a callable is used as is."""
    return lr if callable(lr) else Constant(lr)


SCHEDULES = ("constant", "cosine", "step")


def make_schedule(kind: str, lr: float, steps: int) -> "Constant | StepDecay | Cosine":
    """The named schedule over a run of ``steps``: 'constant', 'cosine' (to 0 at the end) or
    'step' (x0.1 after each third of the run)."""
    if kind == "cosine":
        return Cosine(lr, steps)
    if kind == "step":
        return StepDecay(lr, max(1, steps // 3), 0.1)
    if kind != "constant":
        raise ConfigError(f"unknown schedule {kind!r}: choose from {', '.join(SCHEDULES)}")
    return Constant(lr)
