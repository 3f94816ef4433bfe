"""The model zoo: networks of the paper as Python classes, looked up by name; and your own
classes by spec (``path/to/nets.py:TinyNet``, ``package.module:TinyNet``) wherever a zoo name
is accepted."""
from __future__ import annotations

import inspect
from typing import Callable

if __name__ != "minidnn.models":  # one import path, so one MODELS registry
    raise ImportError("the model zoo is the package minidnn.models (setup.cfg maps models/ to "
                      "it): import minidnn.models, not models")

from minidnn.errors import ConfigError

from .alexnet import AlexNet
from .lenet5 import LeNet5
from .lenet300 import LeNet300
from .resnet32 import BasicBlock, ResNet32
from .spec import default_data, default_lam, is_spec, load_model_class
from .vgg16 import VGG16

MODELS = {cls.arch: cls for cls in (LeNet5, LeNet300, AlexNet, VGG16, ResNet32)}


def model_class(name: str):
    """The class of zoo model ``name`` or of a spec (nets.py:TinyNet); ConfigError if unknown."""
    if is_spec(name):
        return load_model_class(name)
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: choose from {sorted(MODELS)}, or name your "
                          f"own class as path/to/file.py:Class or package.module:Class") from None


def build_model(name: str, **config):
    """Instantiate a zoo model by its registered name (e.g. 'lenet5') or a class by spec
    ('nets.py:TinyNet'); ``seed`` is passed only to constructors that take one."""
    cls = model_class(name)
    if "seed" in config and "seed" not in inspect.signature(cls).parameters:
        config.pop("seed")
    return cls(**config)


def training_recipe(name: str) -> dict:
    """A zoo model's training defaults (data, optimizer, lr, schedule, lam, augment); {} if none."""
    return dict(getattr(model_class(name), "recipe", {}))


def training_augment(name: str) -> Callable | None:
    """The augmentation function of a model's recipe, for ``Trainer.fit(augment=...)``; or None."""
    return augment_by_name(training_recipe(name).get("augment"), name)


def augment_by_name(kind: str | None, owner: str = "--augment") -> Callable | None:
    """The augmentation called ``kind`` (None or "none": no augmentation)."""
    from minidnn.data import AUGMENTS
    if kind is None or kind == "none":
        return None
    if kind not in AUGMENTS:
        raise ConfigError(f"{owner}: unknown augmentation {kind!r}: choose from {sorted(AUGMENTS)}")
    return AUGMENTS[kind]


__all__ = ["MODELS", "build_model", "model_class", "training_recipe", "training_augment", "augment_by_name",
           "load_model_class",
           "default_data", "default_lam", "LeNet5", "LeNet300", "AlexNet", "VGG16", "ResNet32", "BasicBlock"]
