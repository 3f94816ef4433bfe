"""The model zoo: networks of the paper as Python classes, looked up by name."""
from __future__ import annotations

from minidnn.errors import ConfigError

from .lenet5 import LeNet5

MODELS = {cls.arch: cls for cls in (LeNet5,)}


def build_model(name: str, **config):
    """Instantiate a zoo model by its registered name (e.g. 'lenet5')."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: choose from {sorted(MODELS)}") from None
    return cls(**config)


__all__ = ["MODELS", "build_model", "LeNet5"]
