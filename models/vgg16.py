"""VGG16 for CIFAR-10 as in the paper's Table A3: 13 3x3 convs + 3 fcs, 16,293,568 weights."""
from __future__ import annotations

import math

import numpy as np

from minidnn.layers import BatchNorm2d, Conv2d, Flatten, MaxPool2d, ReLU, Sequential
from minidnn.layers.model import FeaturesClassifier

from .common import dropout_mlp_head

# channels of each 3x3 conv, block by block; every block ends with a 2x2 max pool (32 -> 1)
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(FeaturesClassifier):
    """3x3 convs 64,64,M,128,128,M,256x3,M,512x3,M,512x3,M (pad 1, BN + ReLU after each), then
    fc 512->1024 -> ReLU -> dropout -> fc 1024->1024 -> ReLU -> dropout -> fc 1024->10."""

    # Table A3 lists only weights; BN (the usual CIFAR VGG16) is on by default and is not counted.
    # With batch_norm=False the convs get biases instead.

    arch = "vgg16"
    input_shape = (3, 32, 32)
    # Paper setting: Prox-Adam lr 1e-3 constant, 60k steps of 128; SpC lambda p=1.02 -> ln(1.02).
    # No augmentation: the paper's reference accuracy (84.9%) is a no-augmentation figure.
    recipe = {"data": "cifar10", "optimizer": "adam", "lr": 0.001, "schedule": "constant",
              "batch_size": 128, "steps": 60_000, "lam": math.log(1.02), "augment": None}

    def __init__(self, num_classes: int = 10, batch_norm: bool = True, dropout: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__(num_classes=num_classes, batch_norm=batch_norm, dropout=dropout,
                         seed=seed)
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        layers = {}
        c_in = 3
        for b, widths in enumerate(BLOCKS, start=1):
            for i, c_out in enumerate(widths, start=1):
                layers[f"conv{b}_{i}"] = Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm,
                                                rng=rng)
                if batch_norm:
                    layers[f"bn{b}_{i}"] = BatchNorm2d(c_out)
                layers[f"relu{b}_{i}"] = ReLU()
                c_in = c_out
            layers[f"pool{b}"] = MaxPool2d(2)
        layers["flatten"] = Flatten()
        self.features = Sequential(**layers)
        self.classifier = dropout_mlp_head(512, 1024, num_classes, dropout, rng)
