"""Per-layer cost of a model: weights, nonzero weights, multiply-accumulates and FLOPs.

Shapes come from one eval-mode forward pass of a single zero sample on the model's backend,
with every costed layer's ``forward`` wrapped to note its input and output shapes; so any
model that runs (zoo, user classes, Residual blocks, a ``forward`` of its own) is counted
without a shape-inference rule per container. Costs are per sample:

- a conv/linear layer does one multiply-accumulate (MAC) per weight per output position:
  ``MACs = weights * OH * OW`` (Linear: ``= weights``); grouped convolutions included, since
  every weight of a group still meets every output position once;
- "nonzero" MACs count only the nonzero weights (what a sparse kernel has to do);
- FLOPs = 2 * MACs (a multiply and an add), the usual convention;
- batch norm, activations, pooling and bias adds are not counted (they are a small share and
  fold into the convolutions at inference, see docs/design.md "Inference plans").

Extending: ``register_cost(LayerClass, rule)`` where ``rule(layer, in_shape, out_shape)``
returns the layer's own ``(kind, weights, nonzero weights, MACs, nonzero MACs)``. A layer
type without a rule is looked into: its children are counted, so a composite layer (one
made of sub-layers) costs the sum of its parts; a leaf with conv/linear-style (prox) weights
and no rule is a ``ConfigError`` rather than a silent zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError, ShapeError
from ..layers.base import Module
from ..layers.linear import Conv2d, Linear
from ..report import Column, format_columns

Shape = tuple[int, ...]
CostRule = Callable[[Module, Shape, Shape], tuple[str, int, int, int, int]]


@dataclass
class LayerCost:
    """One layer's figures per sample (``name``: its dotted module name)."""

    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    weights: int
    nnz: int
    macs: int
    nnz_macs: int

    @property
    def flops(self) -> int:
        """Dense FLOPs: 2 per MAC."""
        return 2 * self.macs

    @property
    def nnz_flops(self) -> int:
        """FLOPs counting only the nonzero weights."""
        return 2 * self.nnz_macs


def _conv_cost(layer: Conv2d, in_shape: Shape, out_shape: Shape):
    positions = int(np.prod(out_shape[2:]))
    w = layer.weight
    kind = f"conv{layer.kh}x{layer.kw}" + (
        f"/g{layer.groups}" if layer.groups > 1 else "")
    nnz = w.count_nonzero()
    return kind, w.numel, nnz, w.numel * positions, nnz * positions


def _linear_cost(layer: Linear, in_shape: Shape, out_shape: Shape):
    w = layer.weight
    nnz = w.count_nonzero()
    return "linear", w.numel, nnz, w.numel, nnz


COST_RULES: dict[type, CostRule] = {Conv2d: _conv_cost, Linear: _linear_cost}


def register_cost(cls: type, rule: CostRule) -> None:
    """Count layers of ``cls`` (and subclasses without a rule of their own) with ``rule``."""
    COST_RULES[cls] = rule


def _rule_for(module: Module) -> CostRule | None:
    for cls in type(module).__mro__:
        if cls in COST_RULES:
            return COST_RULES[cls]
    return None


def _costed_modules(model: Module) -> list[tuple[str, Module, CostRule]]:
    """(name, module, rule) of every module with a cost rule, not looking inside those."""
    found: list[tuple[str, Module, CostRule]] = []

    def walk(m: Module, name: str) -> None:
        rule = _rule_for(m)
        if rule is not None:
            found.append((name, m, rule))
            return
        if not m._modules and any(p.prox for p in m._params.values()):
            raise ConfigError(f"no FLOP rule for layer {name!r} ({type(m).__name__}): register "
                              f"one with minidnn.compress.flops.register_cost")
        for child_name, child in m._modules.items():
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(model, "")
    return found


def _input_shape(model: Module, input_shape: Sequence[int] | None) -> Shape:
    shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
    if not shape:
        raise ConfigError(f"cannot count the FLOPs of {type(model).__name__}: it declares no "
                          f"input_shape; pass one, e.g. (1, 28, 28)")
    if any(not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ShapeError(f"input shape must be positive integers, got {shape}")
    return tuple(int(s) for s in shape)


def _traced_shapes(model: Module, modules, shape: Shape) -> list[list[tuple[Shape, Shape]]]:
    """Run one zero sample through ``model`` in eval mode; per module, the (input, output)
    shapes of each of its calls. Modes and forwards are restored afterwards."""
    if model.backend is None:
        raise ConfigError("count FLOPs of a model placed on a backend (model.to(backend))")
    seen: list[list[tuple[Shape, Shape]]] = [[] for _ in modules]
    modes = [(m, m.training) for _, m in model.named_modules()]

    def traced(m: Module, calls: list):
        inner = m.forward

        def forward(x):
            y = inner(x)
            calls.append((tuple(int(s) for s in x.shape), tuple(int(s) for s in y.shape)))
            return y
        return forward

    for (_, m, _), calls in zip(modules, seen):
        object.__setattr__(m, "forward", traced(m, calls))
    try:
        model.eval()
        backend = model.backend
        model.forward(backend.from_host(np.zeros((1,) + shape, dtype=backend.dtype)))
    finally:
        for _, m, _ in modules:
            del m.__dict__["forward"]
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return seen


def layer_costs(model: Module, input_shape: Sequence[int] | None = None) -> list[LayerCost]:
    """One ``LayerCost`` per costed layer (per sample; a layer called twice counts twice),
    in module order. ``input_shape`` (C, H, W): default the model's ``input_shape``."""
    shape = _input_shape(model, input_shape)
    modules = _costed_modules(model)
    rows = []
    for (name, m, rule), calls in zip(modules, _traced_shapes(model, modules, shape)):
        for x_shape, y_shape in calls:
            kind, weights, nnz, macs, nnz_macs = rule(m, x_shape, y_shape)
            rows.append(LayerCost(name, kind, x_shape[1:], y_shape[1:], weights, nnz, macs,
                                  nnz_macs))
    return rows


def total_cost(rows: Sequence[LayerCost], name: str = "total") -> LayerCost:
    """The rows summed (a composite layer's cost: the rows under its name, see ``cost_of``)."""
    return LayerCost(name, "", (), (), sum(r.weights for r in rows), sum(r.nnz for r in rows),
                     sum(r.macs for r in rows), sum(r.nnz_macs for r in rows))


def cost_of(rows: Sequence[LayerCost], prefix: str) -> LayerCost:
    """The summed cost of the module ``prefix`` (e.g. 'stage1.block2'): all rows inside it."""
    inside = [r for r in rows if r.name == prefix or r.name.startswith(prefix + ".")]
    if not inside:
        raise ConfigError(f"no costed layer under {prefix!r}")
    return total_cost(inside, prefix)


def cost_figures(model: Module, input_shape: Sequence[int] | None = None) -> dict:
    """The totals and per-layer rows as a JSON-friendly record (for results files)."""
    rows = layer_costs(model, input_shape)
    t = total_cost(rows)
    return {"macs": t.macs, "nnz_macs": t.nnz_macs, "flops": t.flops, "nnz_flops": t.nnz_flops,
            "layers": [{"name": r.name, "kind": r.kind, "out_shape": list(r.out_shape),
                        "weights": r.weights, "nnz": r.nnz, "macs": r.macs,
                        "nnz_macs": r.nnz_macs} for r in rows]}


def _mega(n: int) -> str:
    return f"{n / 1e6:,.3f}"


FLOPS_COLUMNS = (
    Column("layer", 28, lambda r: r.name, "<"),
    Column("kind", 10, lambda r: r.kind, "<"),
    Column("output", 12, lambda r: "x".join(map(str, r.out_shape))),
    Column("weights", 11, lambda r: f"{r.weights:,}"),
    Column("nonzero", 11, lambda r: f"{r.nnz:,}"),
    Column("MFLOPs", 10, lambda r: _mega(r.flops)),
    Column("nz MFLOPs", 10, lambda r: _mega(r.nnz_flops)))


def format_costs(rows: Sequence[LayerCost]) -> str:
    """The per-layer table (FLOPs per sample, 2 per MAC) with its total row."""
    return format_columns(FLOPS_COLUMNS, rows, total_cost(rows))


def flops_report(model: Module, input_shape: Sequence[int] | None = None) -> str:
    """``format_costs`` of the model, or one line saying why it cannot be counted (a report
    never fails over its FLOPs table)."""
    try:
        return "FLOPs per sample:\n" + format_costs(layer_costs(model, input_shape))
    except (ConfigError, ShapeError) as exc:
        return f"FLOPs not counted: {exc}"
