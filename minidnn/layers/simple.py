"""Parameter-free layers: ReLU, pooling, Flatten, Dropout."""
from __future__ import annotations

import numpy as np

from ..backend.base import conv_output_size
from ..errors import ConfigError, ShapeError
from .base import Module, check_input


class ReLU(Module):
    """max(x, 0); backward passes dy where the output was positive."""

    def forward(self, x):
        self._y = self.backend.relu(x)
        return self._y

    def backward(self, dy, need_dx=True):
        return self.backend.relu_backward(dy, self._y) if need_dx else None


class _Pool2d(Module):
    def __init__(self, kernel_size: int | None, stride: int | None = None, padding: int = 0):
        super().__init__()
        if kernel_size is not None and (not isinstance(kernel_size, (int, np.integer))
                                        or kernel_size < 1):
            raise ConfigError(f"{type(self).__name__}: kernel_size must be a positive integer")
        if stride is not None and (not isinstance(stride, (int, np.integer)) or stride < 1):
            raise ConfigError(f"{type(self).__name__}: stride must be a positive integer")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = int(padding)
        if kernel_size is not None and self.padding * 2 > kernel_size:
            raise ConfigError(f"{type(self).__name__}: padding {padding} must be at most half "
                              f"the kernel size {kernel_size}")

    def layer_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _window(self, x) -> tuple[int, int, int]:
        check_input(x, self.backend, 4, type(self).__name__)
        k, s, p = self.kernel_size, self.stride, self.padding
        if k is None:  # global pooling
            if x.shape[2] != x.shape[3]:
                raise ShapeError(f"global pooling needs a square input, got {tuple(x.shape)}")
            k, s, p = x.shape[2], x.shape[2], 0
        if conv_output_size(min(x.shape[2], x.shape[3]), k, s, p) < 1:
            raise ShapeError(f"{type(self).__name__}: input {tuple(x.shape)} is smaller than "
                             f"the {k}x{k} window")
        return k, s, p


class MaxPool2d(_Pool2d):
    """Max pooling; remembers the argmax of each window for backward."""

    def forward(self, x):
        k, s, p = self._window(x)
        self._x_shape = tuple(x.shape)
        y, self._argmax = self.backend.maxpool2d(x, k, s, p)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return self.backend.maxpool2d_backward(dy, self._argmax, self._x_shape)


class AvgPool2d(_Pool2d):
    """Average pooling; ``kernel_size=None`` pools the whole (square) plane (global pooling)."""

    def forward(self, x):
        self._k = self._window(x)
        self._x_shape = tuple(x.shape)
        return self.backend.avgpool2d(x, *self._k)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return self.backend.avgpool2d_backward(dy, self._x_shape, *self._k)


class GlobalAvgPool2d(AvgPool2d):
    """Mean over each (square) channel plane: (N, C, H, H) -> (N, C, 1, 1)."""

    def __init__(self) -> None:
        super().__init__(None)

    def layer_config(self) -> dict:
        return {}


class Flatten(Module):
    """(N, ...) -> (N, prod(...)) as a view."""

    def forward(self, x):
        self._shape = tuple(x.shape)
        return x.reshape((x.shape[0], int(np.prod(x.shape[1:]))))

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._shape) if need_dx else None


class Dropout(Module):
    """Inverted dropout with a counter-based device RNG: same masks on every backend per seed."""

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = int(seed)
        self.counter = 0

    def layer_config(self) -> dict:
        return {"p": self.p, "seed": self.seed}

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        self._mask = self.backend.dropout_mask(x.shape, self.p, self.seed, self.counter)
        self.counter += 1
        return self.backend.mul(x, self._mask)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        return dy if self._mask is None else self.backend.mul(dy, self._mask)
