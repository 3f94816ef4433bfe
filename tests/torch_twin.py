"""A PyTorch copy of a zoo model (same layers, shapes and weights), for tests and benchmarks.

PyTorch is optional: it is imported only when ``torch_twin`` is called. Containers (Sequential,
a Model, a Residual) are assumed to apply their children in registration order, which holds for
every zoo model; a Residual's children other than ``main``/``shortcut`` run after the add.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minidnn.backend.base import hash_uniform
from minidnn.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
                            Linear, MaxPool2d, Module, ReLU, Residual)


def torch_twin(model: Module, dtype=None, exact_dropout: bool = False):
    """(torch module, {our parameter name: torch parameter}) computing what ``model`` computes;
    ``exact_dropout`` draws minidnn's own dropout masks, so train-mode outputs match exactly."""
    import torch
    dtype = torch.float32 if dtype is None else dtype
    params: dict[str, torch.nn.Parameter] = {}
    net = _convert(model, "", params, torch, dtype, exact_dropout)
    return net.to(dtype), params


def _host(p) -> np.ndarray:
    return np.array(p.host_dense(), dtype=np.float64)


def _copy_params(ours: Module, theirs, prefix: str, params: dict, torch) -> None:
    for name, p in ours._params.items():
        if p is None:
            continue
        target = getattr(theirs, name)
        with torch.no_grad():
            target.copy_(torch.from_numpy(_host(p)).reshape(target.shape))
        params[f"{prefix}.{name}" if prefix else name] = target


def _convert(m: Module, prefix: str, params: dict, torch, dtype, exact_dropout: bool):
    nn = torch.nn
    if isinstance(m, Conv2d):
        t = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                      groups=m.groups, bias=m.bias is not None, dtype=dtype)
    elif isinstance(m, Linear):
        t = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
    elif isinstance(m, (BatchNorm2d, BatchNorm1d)):
        cls = nn.BatchNorm2d if isinstance(m, BatchNorm2d) else nn.BatchNorm1d
        t = cls(m.num_features, eps=m.eps, momentum=m.momentum, dtype=dtype)
        host = (lambda b: b) if m.backend is None else m.backend.to_host
        with torch.no_grad():
            t.running_mean.copy_(torch.from_numpy(np.asarray(host(m.running_mean), np.float64)))
            t.running_var.copy_(torch.from_numpy(np.asarray(host(m.running_var), np.float64)))
    elif isinstance(m, ReLU):
        return nn.ReLU()
    elif isinstance(m, MaxPool2d):
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    elif isinstance(m, AvgPool2d):
        return nn.AdaptiveAvgPool2d(1) if m.kernel_size is None else \
            nn.AvgPool2d(m.kernel_size, m.stride, m.padding)
    elif isinstance(m, Flatten):
        return nn.Flatten()
    elif isinstance(m, Dropout):
        return _HashDropout(m.p, m.seed, m.counter, torch) if exact_dropout else nn.Dropout(m.p)
    else:
        children = OrderedDict(
            (name, _convert(c, f"{prefix}.{name}" if prefix else name, params, torch, dtype,
                            exact_dropout))
            for name, c in m._modules.items() if c is not None)
        if isinstance(m, Residual):
            return _Residual(children, torch)
        if m._params:
            raise TypeError(f"torch_twin: no PyTorch equivalent for {type(m).__name__}")
        return nn.Sequential(children)
    _copy_params(m, t, prefix, params, torch)
    return t


def _Residual(children: OrderedDict, torch):
    """y = post(main(x) + shortcut(x)); shortcut is the identity when absent."""

    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.main = children.pop("main")
            self.shortcut = children.pop("shortcut", None)
            self.post = torch.nn.Sequential(children)

        def forward(self, x):
            s = x if self.shortcut is None else self.shortcut(x)
            return self.post(self.main(x) + s)

    return Residual()


def _HashDropout(p: float, seed: int, counter: int, torch):
    """Inverted dropout drawing minidnn's counter-based masks (``hash_uniform``)."""

    class HashDropout(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p, self.seed, self.counter = p, seed, counter

        def forward(self, x):
            if not self.training or self.p == 0.0:
                return x
            keep = hash_uniform(self.seed, self.counter, x.numel()) >= np.float32(self.p)
            self.counter += 1
            mask = torch.from_numpy(keep.astype(np.float64) * (1.0 / (1.0 - self.p)))
            return x * mask.to(x.dtype).reshape(x.shape)

    return HashDropout()
