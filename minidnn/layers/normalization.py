"""Batch normalization over channels (2-D: per (N, H, W); 1-D: per N)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError, StateError
from ..parameter import Parameter
from .base import Module, check_input
from .simple import ReLU


class _BatchNorm(Module):
    ndim = 4

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ConfigError(f"{type(self).__name__}: num_features must be a positive integer")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"{type(self).__name__}: momentum must be in [0, 1]")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(num_features, np.float32))    # gamma: no prox
        self.bias = Parameter(np.zeros(num_features, np.float32))     # beta: no prox
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))

    def layer_config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x):
        b = self.backend
        self._check(x)
        object.__setattr__(self, "fused_next", None)
        if not self.training:
            return b.batchnorm_eval(x, self.weight.data, self.bias.data, self.running_mean,
                                    self.running_var, self.eps)
        y, self._xhat, self._inv_std = b.batchnorm_train(
            x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            self.momentum, self.eps)
        return y

    def _check(self, x) -> None:
        check_input(x, self.backend, self.ndim, type(self).__name__)
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}({self.num_features}) got {x.shape[1]} "
                             f"channels (shape {tuple(x.shape)})")
        if self.training and x.size // x.shape[1] < 2:
            raise ShapeError(f"{type(self).__name__} in training mode needs more than one value "
                             f"per channel, got shape {tuple(x.shape)}")

    def fuses_with(self, layer: Module) -> bool:
        """In training, a ReLU right after this layer runs inside it (batchnorm_relu_train:
        the ReLU's own pass over the tensor, forward and backward, is saved). Not while
        either forward is wrapped on the instance (a tracer or observer must see its call)."""
        return (self.training and type(layer) is ReLU and "forward" not in self.__dict__
                and "forward" not in layer.__dict__)

    def forward_fused(self, x, layer: Module):
        """relu(forward(x)) in one backend call; ``layer`` (the ReLU) keeps its output as its
        own forward would, and backward_fused covers both layers."""
        self._check(x)
        y, self._xhat, self._inv_std = self.backend.batchnorm_relu_train(
            x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            self.momentum, self.eps)
        layer._y = y
        object.__setattr__(self, "fused_next", layer)
        return y

    def backward_fused(self, dy):
        """Backward through the fused ReLU, then this layer."""
        return self.backend.batchnorm_relu_backward(
            dy, self.fused_next._y, self._xhat, self._inv_std, self.weight.data,
            self.weight.grad_buffer(), self.bias.grad_buffer())

    def backward(self, dy, need_dx=True):
        if not self.training:
            raise StateError("backward through BatchNorm in eval mode is not supported")
        return self.backend.batchnorm_backward(dy, self._xhat, self._inv_std, self.weight.data,
                                               self.weight.grad_buffer(), self.bias.grad_buffer())


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) feature maps."""
    ndim = 4


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) features."""
    ndim = 2
