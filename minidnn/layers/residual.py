"""Residual connection: y = post(main(x) + shortcut(x)) (identity shortcut / no post if absent)."""
from __future__ import annotations

from ..errors import ShapeError
from .base import Module
from .simple import ReLU


class Residual(Module):
    """The residual add of ResNet blocks; backward sends dy down both branches and adds.

    ``post`` (optional) runs after the add, e.g. the ReLU that ends a ResNet basic block.
    """

    def __init__(self, main: Module, shortcut: Module | None = None,
                 post: Module | None = None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut
        self.post = post

    def forward(self, x):
        y = self.main.forward(x)
        s = self.shortcut.forward(x) if self.shortcut is not None else x
        if tuple(y.shape) != tuple(s.shape):
            raise ShapeError(f"Residual: branch shapes differ {tuple(y.shape)} vs {tuple(s.shape)}")
        if type(self.post) is ReLU:  # the add and the ReLU in one pass (add_relu)
            self.post._y = self.backend.add_relu(y, s)
            return self.post._y
        y = self.backend.add(y, s)
        return self.post.forward(y) if self.post is not None else y

    def backward(self, dy, need_dx=True):
        if self.post is not None:
            dy = self.post.backward(dy)
        dmain = self.main.backward(dy, need_dx)
        dshort = self.shortcut.backward(dy, need_dx) if self.shortcut is not None else dy
        return self.backend.add(dmain, dshort) if need_dx else None
