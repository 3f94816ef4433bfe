"""Residual connection: y = main(x) + shortcut(x) (identity shortcut when none is given)."""
from __future__ import annotations

from ..errors import ShapeError
from .base import Module


class Residual(Module):
    """The residual add of ResNet blocks; backward sends dy down both branches and adds."""

    def __init__(self, main: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x):
        y = self.main.forward(x)
        s = self.shortcut.forward(x) if self.shortcut is not None else x
        if tuple(y.shape) != tuple(s.shape):
            raise ShapeError(f"Residual: branch shapes differ {tuple(y.shape)} vs {tuple(s.shape)}")
        return self.backend.add(y, s)

    def backward(self, dy, need_dx=True):
        dmain = self.main.backward(dy, need_dx)
        dshort = self.shortcut.backward(dy, need_dx) if self.shortcut is not None else dy
        return self.backend.add(dmain, dshort) if need_dx else None
