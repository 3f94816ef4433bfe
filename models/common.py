"""Pieces the CIFAR zoo models share."""
from __future__ import annotations

import numpy as np

from minidnn.layers import Dropout, Linear, ReLU, Sequential


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
