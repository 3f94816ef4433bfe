"""LeNet-5 as in Caffe's MNIST example, the paper's first network: 430,500 weights."""
from __future__ import annotations

import numpy as np

from minidnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from minidnn.layers.model import FeaturesClassifier

from .common import MNIST_RECIPE


class LeNet5(FeaturesClassifier):
    """conv 20@5x5 -> maxpool 2 -> conv 50@5x5 -> maxpool 2 -> fc 800->500 -> ReLU -> fc 500->10.

    No activation after the convolutions, exactly as in Caffe's lenet_train_test.prototxt.
    """

    arch = "lenet5"
    input_shape = (1, 28, 28)
    recipe = dict(MNIST_RECIPE)

    def __init__(self, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__(num_classes=num_classes, seed=seed)
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        self.features = Sequential(
            conv1=Conv2d(1, 20, 5, rng=rng), pool1=MaxPool2d(2),
            conv2=Conv2d(20, 50, 5, rng=rng), pool2=MaxPool2d(2), flatten=Flatten())
        self.classifier = Sequential(
            fc1=Linear(800, 500, rng=rng), relu=ReLU(), fc2=Linear(500, num_classes, rng=rng))
