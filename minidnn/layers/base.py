"""Module and Sequential: networks as Python classes with named parameters, buffers and children.

A module registers ``Parameter``s and sub-modules by attribute assignment (as in PyTorch) and
buffers (e.g. BN running stats) with ``register_buffer``. ``forward(x)`` keeps what ``backward``
needs; ``backward(dy, need_dx)`` accumulates parameter gradients and returns dx (or None when the
caller does not need it, which saves e.g. the first layer's col2im).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from ..backend.base import Array, Backend
from ..errors import ShapeError, StateDictError, StateError
from ..parameter import Parameter


class Module:
    """Base of every layer and network."""

    def __init__(self) -> None:
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "backend", None)

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A non-trainable tensor that is saved with the model (e.g. running statistics)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for mname, m in self.named_modules():
            for pname, p in m._params.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Array]]:
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def prox_parameters(self) -> list[tuple[str, Parameter]]:
        """The (name, parameter) pairs the l1 prox applies to: conv and linear weights."""
        return [(n, p) for n, p in self.named_parameters() if p.prox]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Every parameter (dense, on the host) and buffer, by dotted name."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.host_dense()
        for name, b in self.named_buffers():
            out[name] = self.backend.to_host(b) if self.backend is not None else np.asarray(b)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Copy host arrays into parameters and buffers by name; names and shapes must match."""
        params = dict(self.named_parameters())
        buffers = {n: None for n, _ in self.named_buffers()}
        expected = set(params) | set(buffers)
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise StateDictError(f"state mismatch: missing {sorted(missing)}, unexpected "
                           f"{sorted(unexpected)}")
        for name, p in params.items():
            value = np.asarray(state[name], dtype=np.float32)
            if value.shape != p.shape:
                raise ShapeError(f"{name}: shape {value.shape} != expected {p.shape}")
            p.csr = p.blockdiag = None
            p.data = value
            p.grad = None
            b, p.backend = p.backend, None
            if b is not None:
                p.to(b)
        self.load_buffers(state)

    def load_buffers(self, values: dict) -> None:
        """Copy host arrays into every buffer by dotted name (on the module's backend, if any);
        ShapeError when one does not fit. The one place buffers are loaded (state dicts, files)."""
        for mname, m in self.named_modules():
            for bname in list(m._buffers):
                full = f"{mname}.{bname}" if mname else bname
                old = m._buffers[bname]
                value = np.array(values[full], dtype=np.dtype(old.dtype))
                if value.shape != tuple(old.shape):
                    raise ShapeError(f"{full}: shape {value.shape} != expected {tuple(old.shape)}")
                setattr(m, bname, value if m.backend is None else m.backend.from_host(value))

    # ------------------------------------------------------------------ placement and mode
    def to(self, backend: Backend) -> "Module":
        """Move every parameter and buffer to ``backend`` (returns self)."""
        for _, m in self.named_modules():
            for p in m._params.values():
                p.to(backend)
            for bname, b in list(m._buffers.items()):
                host = b if m.backend is None else m.backend.to_host(b)
                setattr(m, bname, backend.from_host(np.asarray(host)))
            object.__setattr__(m, "backend", backend)
        return self

    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    # ------------------------------------------------------------------ computation
    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array, need_dx: bool = True) -> Array | None:
        raise NotImplementedError

    # A layer may run itself and the layer after it in one backend call when both sit in a
    # container that applies its children in order (forward_in_order): a BatchNorm then ReLU
    # in training (batchnorm_relu_train). fuses_with says whether it can; forward_fused then
    # replaces both forwards, sets ``fused_next`` to the layer it took in, and
    # backward_fused replaces both backwards.
    fused_next: "Module | None" = None

    def fuses_with(self, layer: "Module") -> bool:
        """Whether ``forward_fused(x, layer)`` may replace this forward and ``layer``'s."""
        return False

    def forward_fused(self, x: Array, layer: "Module") -> Array:
        raise NotImplementedError

    def backward_fused(self, dy: Array) -> Array:
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        """``forward(x)``; the module must have been placed with ``to(backend)`` first."""
        if self.backend is None:
            raise StateError(f"{type(self).__name__} is on no backend: call "
                             ".to(backend) before running it")
        return self.forward(x)

    def layer_config(self) -> dict:
        """The constructor arguments that rebuild this layer (JSON-friendly; weights excluded).

        Layers with arguments override this; the layer-type registry (``layers.registry``) says
        which classes a model file may name.
        """
        return {}

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            lines.append(f"  ({name}): " + repr(m).replace("\n", "\n  "))
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")


def runs_children_in_order(forward):
    """Mark a ``forward`` that only applies the children in order (Sequential, Model): an
    inference plan may then expand the container. A subclass that writes its own forward loses
    the mark."""
    forward.runs_children_in_order = True
    return forward


class Sequential(Module):
    """Children applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Module, **named: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)
        for name, layer in named.items():
            setattr(self, name, layer)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)

    @runs_children_in_order
    def forward(self, x):
        return forward_in_order(self, x)

    def backward(self, dy, need_dx=True):
        return backward_in_order(self, dy, need_dx)


def forward_in_order(module: Module, x: Array) -> Array:
    """Apply ``module``'s children in the order they were assigned (Sequential, Model); a
    child that fuses with the next one (``Module.fuses_with``) runs both in one call."""
    layers = list(module._modules.values())
    i = 0
    while i < len(layers):
        if i + 1 < len(layers) and layers[i].fuses_with(layers[i + 1]):
            x = layers[i].forward_fused(x, layers[i + 1])
            i += 2
        else:
            x = layers[i].forward(x)
            i += 1
    return x


def backward_in_order(module: Module, dy: Array, need_dx: bool) -> Array | None:
    """Backward of ``forward_in_order``: children in reverse (a pair fused in forward as one);
    the first one's dx only if asked."""
    layers = list(module._modules.values())
    i = len(layers) - 1
    while i >= 0:
        if i > 0 and layers[i - 1].fused_next is layers[i]:
            dy = layers[i - 1].backward_fused(dy)
            i -= 2
        else:
            dy = layers[i].backward(dy, need_dx=need_dx or i > 0)
            i -= 1
    return dy


def check_input(x: Array, backend: Backend, ndim: int, what: str) -> None:
    """Raise ShapeError unless x is a ``ndim``-D array of the backend's float dtype."""
    if len(x.shape) != ndim:
        raise ShapeError(f"{what} expects a {ndim}-D input, got shape {tuple(x.shape)}")
    if np.dtype(x.dtype) != backend.dtype:
        raise ShapeError(f"{what} expects {backend.dtype.name} input, got {np.dtype(x.dtype).name}")
