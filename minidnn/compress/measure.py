"""What a method's result is measured by: test accuracy and loss, and the compression figures."""
from __future__ import annotations

from ..data import ArrayDataset
from ..layers.base import Module
from ..report import compression_figures
from ..train import Trainer


def evaluate(model: Module, test_ds: ArrayDataset) -> dict:
    """Test loss and accuracy of ``model`` (eval mode)."""
    return Trainer(model, None).evaluate(test_ds)


def measure(model: Module, test_ds: ArrayDataset) -> dict:
    """Accuracy, test loss and compression figures of ``model`` as it is now."""
    result = evaluate(model, test_ds)
    return {"accuracy": result["accuracy"], "loss": result["loss"], **compression_figures(model)}
