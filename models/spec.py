"""Your own network classes by spec, and the training defaults of any model class.

A spec names a ``Model`` subclass as ``path/to/nets.py:TinyNet`` (a Python file) or
``package.module:TinyNet`` (an importable module; the current folder is searched first, as with
``python -m``). This imports code the user asked for on the command line; model files never do
(they name only registered layer types, see ``minidnn.io.architecture``).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path
from types import ModuleType

from minidnn.errors import ConfigError
from minidnn.layers.model import Model

# lam for a class without a recipe, by dataset: the zoo's tested setting for that data
DEFAULT_LAM_BY_DATA = {
    "mnist": (0.3, "the MNIST default (LeNet-5's setting: about 97% zeros in 2 epochs, ~99% "
                   "accuracy after debiasing; docs/results.md)"),
    "cifar10": (math.log(1.02), "the CIFAR-10 default (ln 1.02, the paper's VGG16 setting, the "
                                "middle of the zoo's CIFAR recipes)"),
}
DATA_BY_INPUT_SHAPE = {(1, 28, 28): "mnist", (3, 32, 32): "cifar10"}


def is_spec(name: str) -> bool:
    """Whether ``name`` is a ``module:Class`` spec rather than a zoo name."""
    return ":" in name


def _file_module(path: Path) -> ModuleType:
    """Import a Python file once per absolute path (under a private module name)."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"model spec: no such file {path}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"minidnn_user_models.{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"model spec: cannot import {path} (not a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _named_module(name: str) -> ModuleType:
    """``importlib.import_module`` with the current folder searched first (as ``python -m``)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"model spec: cannot import module {name!r} ({exc})") from None


def load_model_class(spec: str) -> type[Model]:
    """The ``Model`` subclass a ``file.py:Class`` or ``package.module:Class`` spec names."""
    where, _, class_name = spec.rpartition(":")
    if not where or not class_name.isidentifier():
        raise ConfigError(f"model spec {spec!r}: expected path/to/file.py:Class or "
                          f"package.module:Class")
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    module = _file_module(Path(where)) if is_file else _named_module(where)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"model spec {spec!r}: {where} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ConfigError(f"model spec {spec!r}: {class_name} is not a subclass of minidnn.Model")
    return cls


def _class_of(model: Model | type[Model]) -> type[Model]:
    return model if isinstance(model, type) else type(model)


def default_data(model: Model | type[Model]) -> str:
    """The dataset a model trains on by default: its recipe's, else the one its input shape
    fits (1x28x28: mnist, 3x32x32: cifar10); ConfigError if neither says."""
    data = getattr(_class_of(model), "recipe", {}).get("data")
    if data:
        return data
    shape = tuple(getattr(model, "input_shape", ()) or ())
    if shape in DATA_BY_INPUT_SHAPE:
        return DATA_BY_INPUT_SHAPE[shape]
    raise ConfigError(f"cannot tell which dataset {_class_of(model).__name__} takes (no recipe, "
                      f"input_shape {shape or 'not declared'}): pass --data mnist or cifar10")


def default_lam(model: Model | type[Model], data: str) -> tuple[float, str]:
    """(lam, why) for proximal training: the class recipe's ``lam``, else the zoo's tested
    setting for ``data`` (DEFAULT_LAM_BY_DATA)."""
    cls = _class_of(model)
    recipe = getattr(cls, "recipe", {})
    if "lam" in recipe:
        return float(recipe["lam"]), f"the recipe of {cls.__name__}"
    key = str(data).lower().replace("-", "").replace("_", "")
    if key not in DEFAULT_LAM_BY_DATA:
        raise ConfigError(f"no default lam for dataset {data!r}: pass --lam")
    lam, why = DEFAULT_LAM_BY_DATA[key]
    return lam, f"{cls.__name__} has no recipe: {why}"
