"""What every workflow starts with: a backend, a zoo model and its dataset."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import data as datasets  # looked up at call time (tests substitute load_dataset)
from ..backend import Backend, resolve_backend
from ..data import ArrayDataset
from ..errors import ConfigError
from ..io import save
from ..io.architecture import record_architecture
from ..layers.model import Model
from ..models import build_model, default_data
from ..outputs import write_or_rescue


def check_input_shape(model: Model, dataset: ArrayDataset) -> None:
    """ConfigError when the dataset's images do not fit the model (e.g. LeNet-5 on CIFAR-10)."""
    got = tuple(dataset.images.shape[1:])
    want = tuple(model.input_shape)
    if want and got != want:
        raise ConfigError(f"{model.arch} takes images of shape {want}, but {dataset.name} has "
                          f"{got}: pick the model's dataset (--data) or another model")


@dataclass
class Setup:
    """A zoo model on its backend, with the training and test data it runs on."""

    model: Model
    backend: Backend
    data: str
    train_ds: ArrayDataset
    test_ds: ArrayDataset


def set_up(model: str, data: str | None = None, data_root: str | None = None,
           backend: str = "auto", device: str | None = None, seed: int = 0) -> Setup:
    """Build ``model`` (a zoo name or a class spec; an unknown name, or a class whose file could
    not rebuild it, fails first, before any work), pick the backend, load ``data`` (default: the
    recipe's, else the one the input shape fits) and check that its images fit the model."""
    net = build_model(model, seed=seed)
    record_architecture(net)  # raises for a hand-written forward: refused before training
    chosen = resolve_backend(backend, device)
    data = data or default_data(net)
    train_ds, test_ds = datasets.load_dataset(data, data_root)
    check_input_shape(net, train_ds)
    return Setup(net.to(chosen), chosen, data, train_ds, test_ds)


def save_model_file(model: Model, path: str | os.PathLike, metadata: dict,
                    values: str = "float32") -> int:
    """Save with ``minidnn.io.save`` (creating the folder); returns the file size in bytes.
    If that write fails, the model is saved in the temp folder and FileWriteError says where."""
    def write(target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        save(model, target, metadata=metadata, values_dtype=values)
    return os.path.getsize(write_or_rescue(write, path, "model"))
