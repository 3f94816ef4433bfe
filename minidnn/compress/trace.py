"""Watching layers during one forward pass: every call's input and output, per module.

Channel pruning's importance score needs what each consumer layer reads, inside a model's
forward, without knowing how its containers route data; wrapping the chosen modules'
``forward`` for the length of a ``with`` block does that for any model, including classes with
a ``forward`` of their own. (``flops`` traces shapes the same way with its own copy, kept as
issue 17's other half carries it.)
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from ..layers.base import Module

Observer = Callable[[int, object, object], None]   # (index of the module, input, output)


@contextmanager
def observing(model: Module, modules: Sequence[Module], observe: Observer) -> Iterator[None]:
    """Inside the block, ``model`` is in eval mode and each call of ``modules[i].forward(x)``
    returning ``y`` also calls ``observe(i, x, y)``. Afterwards every module's mode and
    ``forward`` are as before (also when the block raises)."""
    modes = [(m, m.training) for _, m in model.named_modules()]

    def watched(i: int, m: Module):
        inner = m.forward

        def forward(x):
            y = inner(x)
            observe(i, x, y)
            return y
        return forward

    wrapped = []
    try:
        for i, m in enumerate(modules):
            if "forward" not in m.__dict__:
                object.__setattr__(m, "forward", watched(i, m))
                wrapped.append(m)
        model.eval()
        yield
    finally:
        for m in wrapped:
            del m.__dict__["forward"]
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
