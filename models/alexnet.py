"""AlexNet for CIFAR-10 as in the paper's Table A2: 7,558,176 weights, grouped conv2/conv4/conv5."""
from __future__ import annotations

import math

import numpy as np

from minidnn.layers import Conv2d, Flatten, MaxPool2d, ReLU, Sequential
from minidnn.layers.model import FeaturesClassifier

from .common import dropout_mlp_head


class AlexNet(FeaturesClassifier):
    """conv1 3->96 5x5, pool, conv2 96->256 5x5 (2 groups), pool, conv3 256->384 3x3, conv4 384->384
    3x3 (2 groups), conv5 384->256 3x3 (2 groups), pool, fc 4096->1024->1024->10."""

    # 'Same' paddings and 2x2 max pools take 32x32 to 4x4 (256*4*4 = 4096 = fc1's input). ReLU
    # after every conv and hidden fc, dropout on the two hidden fcs; no LRN (it has no weights).

    arch = "alexnet"
    input_shape = (3, 32, 32)
    # Paper setting: Prox-Adam lr 1e-3 constant, 60k steps of 128; SpC lambda p=1.03 -> ln(1.03).
    # No augmentation: the paper's reference accuracy (78.6%) is a no-augmentation figure.
    recipe = {"data": "cifar10", "optimizer": "adam", "lr": 0.001, "schedule": "constant",
              "batch_size": 128, "steps": 60_000, "lam": math.log(1.03), "augment": None}

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, seed: int = 0) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout, seed=seed)
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        self.features = Sequential(
            conv1=Conv2d(3, 96, 5, padding=2, rng=rng), relu1=ReLU(), pool1=MaxPool2d(2),
            conv2=Conv2d(96, 256, 5, padding=2, groups=2, rng=rng), relu2=ReLU(),
            pool2=MaxPool2d(2),
            conv3=Conv2d(256, 384, 3, padding=1, rng=rng), relu3=ReLU(),
            conv4=Conv2d(384, 384, 3, padding=1, groups=2, rng=rng), relu4=ReLU(),
            conv5=Conv2d(384, 256, 3, padding=1, groups=2, rng=rng), relu5=ReLU(),
            pool5=MaxPool2d(2), flatten=Flatten())
        self.classifier = dropout_mlp_head(4096, 1024, num_classes, dropout, rng)
