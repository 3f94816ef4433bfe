"""Model: a Module that remembers how it was built, so a saved file can rebuild it."""
from __future__ import annotations

import numpy as np

from .base import Module


class Model(Module):
    """Base of zoo networks: subclasses call ``super().__init__(**their_args)``.

    ``arch`` (a registered name) and ``config`` (the constructor arguments, JSON-friendly) are
    what ``minidnn.save`` writes and ``minidnn.load`` uses to rebuild the network.
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

    def weight_count(self) -> int:
        """Number of weights the l1 prox applies to (the paper's count; biases excluded)."""
        return sum(p.numel for _, p in self.prox_parameters())

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class predictions for host images (N, C, H, W), in eval mode."""
        was_training = self.training
        self.eval()
        b = self.backend
        out = []
        for i in range(0, len(images), batch_size):
            logits = self.forward(b.from_host(images[i:i + batch_size]))
            out.append(b.to_host(logits).argmax(axis=1))
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0, np.int64)


class FeaturesClassifier(Model):
    """A Model made of two Sequentials, ``features`` then ``classifier`` (LeNet, AlexNet, VGG)."""

    def forward(self, x):
        return self.classifier.forward(self.features.forward(x))

    def backward(self, dy, need_dx: bool = False):
        return self.features.backward(self.classifier.backward(dy), need_dx)
