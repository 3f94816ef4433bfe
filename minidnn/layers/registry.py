"""The layer types a model file may name: minidnn's own layer classes, nothing else.

Each entry gives the class, its constructor arguments (each with a strict type and range) and
the shapes of the parameters and buffers a layer with a given config has. A file's module tree
is checked against this table, and every tensor's shape computed from it, before a single layer
is constructed (``minidnn.io.architecture``). The containers (Sequential, Residual) are not
layers: the architecture record describes them by their children.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError
from .base import Module
from .linear import Conv2d, Linear
from .normalization import BatchNorm1d, BatchNorm2d
from .simple import AvgPool2d, Dropout, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU

INT_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class Arg:
    """One constructor argument: ``kind`` 'int', 'int?' (int or None), 'bool' or 'float'."""

    kind: str
    low: float = 0
    high: float = INT_MAX

    def check(self, value: Any) -> Any:
        """``value`` if it has this argument's type and range; ConfigError otherwise."""
        if self.kind == "int?" and value is None:
            return None
        if self.kind in ("int", "int?"):
            ok = isinstance(value, int) and not isinstance(value, bool)
            want = "an integer"
        elif self.kind == "bool":
            ok, want = isinstance(value, bool), "true or false"
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value)
            want = "a finite number"
        if not ok or not self.low <= value <= self.high:
            raise ConfigError(f"must be {want} in [{self.low:g}, {self.high:g}], got {value!r}")
        return value


@dataclass(frozen=True)
class TensorShape:
    """The shape of one parameter as the file stores it (``groups``, ``prox`` as Parameter)."""

    shape: tuple[int, ...]
    groups: int = 1
    prox: bool = False
    floating: bool = True          # buffers: float (BN statistics) or integer

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


Shapes = Callable[[dict], dict[str, TensorShape]]


def _none(config: dict) -> dict[str, TensorShape]:
    return {}


@dataclass(frozen=True)
class LayerType:
    """A registered layer class, its arguments, and its parameter and buffer shapes."""

    cls: type[Module]
    args: dict[str, Arg] = field(default_factory=dict)
    params: Shapes = _none
    buffers: Shapes = _none

    def check_config(self, config: Any) -> dict:
        """The config if it names exactly this type's arguments with valid values."""
        if not isinstance(config, dict):
            raise ConfigError(f"config must be an object, got {type(config).__name__}")
        if set(config) != set(self.args):
            missing = sorted(set(self.args) - set(config))
            unknown = sorted(map(str, set(config) - set(self.args)))
            raise ConfigError(f"{self.cls.__name__} config: missing {missing}, unknown {unknown}")
        out = {}
        for name, arg in self.args.items():
            try:
                out[name] = arg.check(config[name])
            except ConfigError as exc:
                raise ConfigError(f"{self.cls.__name__} argument {name!r} {exc}") from None
        return out


def _with_bias(weight: TensorShape, config: dict, out: int) -> dict[str, TensorShape]:
    shapes = {"weight": weight}
    if config["bias"]:
        shapes["bias"] = TensorShape((out,))
    return shapes


def _linear(c: dict) -> dict[str, TensorShape]:
    return _with_bias(TensorShape((c["out_features"], c["in_features"]), prox=True), c,
                      c["out_features"])


def _conv(c: dict) -> dict[str, TensorShape]:
    k, out = c["kernel_size"], c["out_channels"]
    weight = TensorShape((out, c["in_channels"] // c["groups"], k, k), c["groups"], prox=True)
    return _with_bias(weight, c, out)


def _bn_params(c: dict) -> dict[str, TensorShape]:
    return {"weight": TensorShape((c["num_features"],)), "bias": TensorShape((c["num_features"],))}


def _bn_buffers(c: dict) -> dict[str, TensorShape]:
    n = c["num_features"]
    return {"running_mean": TensorShape((n,)), "running_var": TensorShape((n,))}


_POSITIVE = Arg("int", 1)
_BN_ARGS = {"num_features": _POSITIVE, "eps": Arg("float", 0, 1), "momentum": Arg("float", 0, 1)}
_POOL_ARGS = {"kernel_size": Arg("int?", 1), "stride": Arg("int?", 1), "padding": Arg("int", 0)}

LAYER_TYPES: dict[str, LayerType] = {
    "Linear": LayerType(Linear, {"in_features": _POSITIVE, "out_features": _POSITIVE,
                                 "bias": Arg("bool")}, _linear),
    "Conv2d": LayerType(Conv2d, {"in_channels": _POSITIVE, "out_channels": _POSITIVE,
                                 "kernel_size": _POSITIVE, "stride": _POSITIVE,
                                 "padding": Arg("int", 0), "groups": _POSITIVE,
                                 "bias": Arg("bool")}, _conv),
    "BatchNorm1d": LayerType(BatchNorm1d, _BN_ARGS, _bn_params, _bn_buffers),
    "BatchNorm2d": LayerType(BatchNorm2d, _BN_ARGS, _bn_params, _bn_buffers),
    "ReLU": LayerType(ReLU),
    "Flatten": LayerType(Flatten),
    "MaxPool2d": LayerType(MaxPool2d, _POOL_ARGS),
    "AvgPool2d": LayerType(AvgPool2d, _POOL_ARGS),
    "GlobalAvgPool2d": LayerType(GlobalAvgPool2d),
    "Dropout": LayerType(Dropout, {"p": Arg("float", 0, 0.999999),
                                   "seed": Arg("int", -2 ** 63, 2 ** 63 - 1)}),
}
_BY_CLASS = {entry.cls: name for name, entry in LAYER_TYPES.items()}


def layer_type_name(module: Module) -> str | None:
    """The registered name of ``module``'s exact class (subclasses are not the same layer)."""
    return _BY_CLASS.get(type(module))
