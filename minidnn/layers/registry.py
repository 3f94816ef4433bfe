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
from .lowrank import CPConv2d, LowRankLinear, Tucker2Conv2d
from .normalization import BatchNorm1d, BatchNorm2d
from .simple import AvgPool2d, Dropout, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU

INT_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class Arg:
    """One constructor argument: ``kind`` 'int', 'int?' (int or None), 'size' (int or a
    [height, width] pair of ints), 'bool' or 'float'."""

    kind: str
    low: float = 0
    high: float = INT_MAX

    def check(self, value: Any) -> Any:
        """``value`` if it has this argument's type and range; ConfigError otherwise."""
        if self.kind == "int?" and value is None:
            return None
        if self.kind == "size" and isinstance(value, list) and len(value) == 2:
            return [Arg("int", self.low, self.high).check(v) for v in value]
        if self.kind in ("int", "int?", "size"):
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
    kh, kw = k if isinstance(k, list) else (k, k)
    weight = TensorShape((out, c["in_channels"] // c["groups"], kh, kw), c["groups"], prox=True)
    return _with_bias(weight, c, out)


def _chain(pieces: list[tuple[str, tuple[int, ...], int]], bias: int | None
           ) -> dict[str, TensorShape]:
    """Shapes of a factorized layer: each piece's weight (name, shape, groups), the last
    piece's bias."""
    shapes = {f"{name}.weight": TensorShape(shape, groups, prox=True)
              for name, shape, groups in pieces}
    if bias is not None:
        shapes[f"{pieces[-1][0]}.bias"] = TensorShape((bias,))
    return shapes


def _lowrank_linear(c: dict) -> dict[str, TensorShape]:
    r = c["rank"]
    return _chain([("first", (r, c["in_features"]), 1), ("second", (c["out_features"], r), 1)],
                  c["out_features"] if c["bias"] else None)


def _tucker2(c: dict) -> dict[str, TensorShape]:
    k, r1, r2, out = c["kernel_size"], c["rank_in"], c["rank_out"], c["out_channels"]
    return _chain([("first", (r1, c["in_channels"], 1, 1), 1), ("core", (r2, r1, k, k), 1),
                   ("last", (out, r2, 1, 1), 1)], out if c["bias"] else None)


def _cp(c: dict) -> dict[str, TensorShape]:
    k, r, out = c["kernel_size"], c["rank"], c["out_channels"]
    return _chain([("first", (r, c["in_channels"], 1, 1), 1), ("vertical", (r, 1, k, 1), r),
                   ("horizontal", (r, 1, 1, k), r), ("last", (out, r, 1, 1), 1)],
                  out if c["bias"] else None)


def _bn_params(c: dict) -> dict[str, TensorShape]:
    return {"weight": TensorShape((c["num_features"],)), "bias": TensorShape((c["num_features"],))}


def _bn_buffers(c: dict) -> dict[str, TensorShape]:
    n = c["num_features"]
    return {"running_mean": TensorShape((n,)), "running_var": TensorShape((n,))}


_POSITIVE = Arg("int", 1)
_BN_ARGS = {"num_features": _POSITIVE, "eps": Arg("float", 0, 1), "momentum": Arg("float", 0, 1)}
_CONV_ARGS = {"in_channels": _POSITIVE, "out_channels": _POSITIVE, "kernel_size": _POSITIVE,
              "stride": _POSITIVE, "padding": Arg("int", 0)}
_POOL_ARGS = {"kernel_size": Arg("int?", 1), "stride": Arg("int?", 1), "padding": Arg("int", 0)}

LAYER_TYPES: dict[str, LayerType] = {
    "Linear": LayerType(Linear, {"in_features": _POSITIVE, "out_features": _POSITIVE,
                                 "bias": Arg("bool")}, _linear),
    "Conv2d": LayerType(Conv2d, {"in_channels": _POSITIVE, "out_channels": _POSITIVE,
                                 "kernel_size": Arg("size", 1), "stride": _POSITIVE,
                                 "padding": Arg("int", 0), "groups": _POSITIVE,
                                 "bias": Arg("bool")}, _conv),
    "LowRankLinear": LayerType(LowRankLinear, {"in_features": _POSITIVE,
                                               "out_features": _POSITIVE, "rank": _POSITIVE,
                                               "bias": Arg("bool")}, _lowrank_linear),
    "Tucker2Conv2d": LayerType(Tucker2Conv2d, {**_CONV_ARGS, "rank_in": _POSITIVE,
                                               "rank_out": _POSITIVE, "bias": Arg("bool")},
                               _tucker2),
    "CPConv2d": LayerType(CPConv2d, {**_CONV_ARGS, "rank": _POSITIVE, "bias": Arg("bool")}, _cp),
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
