"""Pieces the zoo models share: the MNIST recipe, the CIFAR classifier head."""
from __future__ import annotations

import numpy as np

from minidnn.layers import Dropout, Linear, ReLU, Sequential

# The MNIST nets' training defaults (LeNet-5, LeNet-300-100): Prox-Adam at the paper's lr,
# batch 128, 60k updates; lam 0.3 gives ~97.5% zeros on LeNet-5 in 2 epochs and ~99% accuracy
# after debiasing in longer runs (docs/results.md); --target-sparsity steers it from there.
MNIST_RECIPE = {"data": "mnist", "optimizer": "adam", "lr": 0.001, "schedule": "constant",
                "batch_size": 128, "steps": 60_000, "lam": 0.3, "augment": None}


def dropout_mlp_head(in_features: int, hidden: int, num_classes: int, dropout: float,
                     rng: np.random.Generator) -> Sequential:
    """fc in->hidden -> ReLU -> dropout -> fc hidden->hidden -> ReLU -> dropout -> fc ->classes,
    the classifier of the paper's AlexNet and VGG16 (dropout seeds drawn from ``rng`` first)."""
    drop_seeds = rng.integers(0, 2**31, size=2)
    return Sequential(
        fc1=Linear(in_features, hidden, rng=rng), relu1=ReLU(),
        drop1=Dropout(dropout, int(drop_seeds[0])),
        fc2=Linear(hidden, hidden, rng=rng), relu2=ReLU(),
        drop2=Dropout(dropout, int(drop_seeds[1])),
        fc3=Linear(hidden, num_classes, rng=rng))
