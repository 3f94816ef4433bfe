"""Biases that cannot change a model's output: set them to exactly 0 (so they compress).

In a chain of layers, a unit (a channel of a convolution, an output of a linear layer) whose
every outgoing weight in the next conv/linear layer is zero contributes nothing downstream:
its output, ``act(w·x + b)``, only ever meets zero weights. Its bias can then be anything;
setting it to 0 changes no output for any input, and a pool of biases that is mostly zeros
costs a quarter of its float16 bytes once compressed. After ℓ1 training and quantization
LeNet-5's fc1 keeps ~60 of its 500 outputs in use, so ~85% of its biases are such.

Only chains the architecture record describes exactly are touched: the model is a tree of
Sequentials whose leaves are conv/linear layers and channel-wise modules (ReLU, pooling,
dropout, batch norm, flatten); anything else (a residual block, a grouped next convolution, a
hand-written forward) leaves the model as it is.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelFileError
from ..layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                      MaxPool2d, ReLU)
from ..layers.base import Module

CHANNELWISE = (ReLU, MaxPool2d, AvgPool2d, Dropout, BatchNorm1d, BatchNorm2d, Flatten)


def _chain(model: Module) -> list[Module] | None:
    """The leaf modules in forward order, or None when the model is not a plain chain."""
    from ..io.architecture import record_architecture
    try:
        record = record_architecture(model, "try")
    except ModelFileError:
        return None
    if record is None or record.get("module") is None:
        return None
    modules = dict(model.named_modules())
    leaves: list[Module] = []
    stack = [("", record["module"])]
    while stack:
        path, node = stack.pop()
        if node["type"] == "Sequential":
            stack.extend((f"{path}.{c['name']}" if path else c["name"], c)
                         for c in reversed(node["children"]))
            continue
        m = modules.get(path)
        if m is None or not isinstance(m, (Conv2d, Linear) + CHANNELWISE):
            return None
        leaves.append(m)
    return leaves


def _used_units(layer: Module, nxt: Module) -> np.ndarray | None:
    """Per output unit of ``layer``: whether ``nxt`` reads it through any nonzero weight."""
    units = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
    w = np.asarray(nxt.weight.host_dense())
    if isinstance(nxt, Conv2d):
        if nxt.groups != 1 or w.shape[1] != units:
            return None
        return np.any(w != 0, axis=(0, 2, 3))
    if w.shape[1] % units:
        return None
    return np.any(w.reshape(w.shape[0], units, -1) != 0, axis=(0, 2))


def zero_unused_biases(model: Module) -> int:
    """Set to 0 the biases of units no later weight reads; returns how many were nonzero.
    The model's outputs do not change (see the module docstring)."""
    chain = _chain(model)
    if chain is None:
        return 0
    layers = [m for m in chain if isinstance(m, (Conv2d, Linear))]
    changed = 0
    for layer, nxt in zip(layers, layers[1:]):
        if getattr(layer, "bias", None) is None:
            continue
        used = _used_units(layer, nxt)
        if used is None:
            continue
        b = layer.bias
        host = np.asarray(b.host_dense(), np.float32).copy()
        changed += int(np.count_nonzero(host[~used]))
        host[~used] = 0
        b.backend.copy_into(b.data, b.backend.from_host(host))
    return changed
