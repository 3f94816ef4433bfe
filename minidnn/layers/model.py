"""Model: the base class of networks, zoo and user-written alike.

A subclass only assigns its layers: the default ``forward`` applies the children in the order
they were assigned (and ``backward`` in reverse), which is also what a model file records, so a
saved file can rebuild the network without its class (docs/format.md). A subclass may write its
own ``forward``/``backward`` instead; its files then load into an instance of the class.
"""
from __future__ import annotations

import numpy as np

from ..backend.base import Array
from .base import Module, backward_in_order, forward_in_order, runs_children_in_order


class Model(Module):
    """Base of every network: subclass it, assign layers in ``__init__``, train, save.

    ``arch`` is the model's name in files and reports (zoo models: their registered name; other
    classes: the class name unless they set one). ``config`` holds the constructor arguments a
    subclass passes to ``super().__init__(**config)`` (JSON-friendly). ``input_shape`` (C, H, W)
    may be declared as a class attribute; otherwise the first batch a default ``forward`` sees
    sets it.
    """

    arch: str = ""
    input_shape: tuple[int, ...] = ()
    num_classes: int = 10
    # Training defaults, the only source of them: data, optimizer, lr, schedule, batch_size,
    # steps, lam, augment (see minidnn.train_config); zoo models set their paper's values.
    recipe: dict = {}

    def __init__(self, **config) -> None:
        super().__init__()
        object.__setattr__(self, "config", dict(config))
        object.__setattr__(self, "arch", type(self).arch or type(self).__name__)

    @runs_children_in_order
    def forward(self, x: Array) -> Array:
        """The children in the order they were assigned (the input shape is noted on first use)."""
        if not self.input_shape:
            object.__setattr__(self, "input_shape", tuple(int(s) for s in x.shape[1:]))
        return forward_in_order(self, x)

    def backward(self, dy: Array, need_dx: bool = False) -> Array | None:
        return backward_in_order(self, dy, need_dx)

    def weight_count(self) -> int:
        """Number of weights the l1 prox applies to (the paper's count; biases excluded)."""
        return sum(p.numel for _, p in self.prox_parameters())

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class predictions for host images (N, C, H, W), in eval mode: ``minidnn.predict``
        (a prepared inference plan, or the regular forward when the model cannot be planned)."""
        from ..inference import predict  # the plan builds on the layers: imported late
        return predict(self, images, batch_size)


class FeaturesClassifier(Model):
    """A Model made of two Sequentials, ``features`` then ``classifier`` (LeNet, AlexNet, VGG),
    assigned in that order (the default ``forward`` runs children in assignment order)."""
