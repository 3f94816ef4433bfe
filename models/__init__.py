"""The model zoo: networks of the paper as Python classes, looked up by name."""
from __future__ import annotations

from typing import Callable

if __name__ != "minidnn.models":  # one import path, so one MODELS registry
    raise ImportError("the model zoo is the package minidnn.models (setup.cfg maps models/ to "
                      "it): import minidnn.models, not models")

from minidnn.errors import ConfigError

from .alexnet import AlexNet
from .lenet5 import LeNet5
from .resnet32 import BasicBlock, ResNet32
from .vgg16 import VGG16

MODELS = {cls.arch: cls for cls in (LeNet5, AlexNet, VGG16, ResNet32)}


def _model_class(name: str):
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: choose from {sorted(MODELS)}") from None


def build_model(name: str, **config):
    """Instantiate a zoo model by its registered name (e.g. 'lenet5')."""
    return _model_class(name)(**config)


def training_recipe(name: str) -> dict:
    """A zoo model's training defaults (data, optimizer, lr, schedule, lam, augment); {} if none."""
    return dict(getattr(_model_class(name), "recipe", {}))


def training_augment(name: str) -> Callable | None:
    """The augmentation function of a model's recipe, for ``Trainer.fit(augment=...)``; or None."""
    from minidnn.data import random_crop_flip
    kind = training_recipe(name).get("augment")
    augments = {"crop_flip": random_crop_flip}
    if kind is None:
        return None
    if kind not in augments:
        raise ConfigError(f"{name}: unknown augmentation {kind!r}: choose from {sorted(augments)}")
    return augments[kind]


__all__ = ["MODELS", "build_model", "training_recipe", "training_augment", "LeNet5", "AlexNet",
           "VGG16", "ResNet32", "BasicBlock"]
