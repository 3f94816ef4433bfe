"""Layer names in user terms: short labels ('fc1'), per-layer specs ('fc1=0.5,conv1=0.1')."""
from __future__ import annotations

from typing import Iterable

from .errors import ConfigError
from .layers.base import Module


def short_name(param_name: str) -> str:
    """'classifier.fc1.weight' -> 'fc1' (the name used in specs, tables and CSV columns)."""
    parts = param_name.split(".")
    return parts[-2] if len(parts) > 1 and parts[-1] == "weight" else param_name


def layer_labels(param_names: Iterable[str]) -> list[str]:
    """Short labels for weights: the layer's own name ('fc1') where unique, else its full path."""
    names = list(param_names)
    short = [short_name(n) for n in names]
    return short if len(set(short)) == len(short) else [n.removesuffix(".weight") for n in names]


def parse_layer_spec(spec: str | None, kind=float) -> dict:
    """'fc1=0.5,conv1=0.1' -> {'fc1': 0.5, 'conv1': 0.1}; None or '' -> {}."""
    out: dict = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"per-layer spec item {item!r} is not LAYER=VALUE")
        try:
            out[key.strip()] = kind(value)
        except ValueError:
            raise ConfigError(f"per-layer spec item {item!r}: {value!r} is not a "
                              f"{kind.__name__}") from None
    return out


def resolve_layers(model: Module, spec: dict) -> dict:
    """Map spec keys (full name, name without '.weight', or short name) to prox parameter names."""
    names = [n for n, _ in model.prox_parameters()]
    out = {}
    for key, value in spec.items():
        hits = [n for n in names if key in (n, n.removesuffix(".weight"), short_name(n))]
        if len(hits) != 1:
            what = "matches no" if not hits else f"is ambiguous ({hits}) among the"
            raise ConfigError(f"layer {key!r} {what} compressible layers: "
                              f"{', '.join(short_name(n) for n in names)}")
        out[hits[0]] = value
    return out


def per_layer(model: Module, default, overrides: dict | None) -> dict:
    """{prox parameter name: value}: ``default`` everywhere, except the named layers."""
    resolved = resolve_layers(model, overrides or {})
    return {n: resolved.get(n, default) for n, _ in model.prox_parameters()}
