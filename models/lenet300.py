"""LeNet-300-100 (LeCun et al. 1998), the fully connected MNIST network of the pruning papers:
784-300-100-10, 266,200 weights."""
from __future__ import annotations

import numpy as np

from minidnn.layers import Flatten, Linear, ReLU, Sequential
from minidnn.layers.model import FeaturesClassifier

from .common import MNIST_RECIPE


class LeNet300(FeaturesClassifier):
    """flatten -> fc 784->300 -> ReLU -> fc 300->100 -> ReLU -> fc 100->10.

    The second anchor of the sparsity literature (Han et al. 2015: 12x; Dynamic Network Surgery:
    56x at 98.01%; Sparse VD: 68x at 98.08%): 235,200 + 30,000 + 1,000 = 266,200 weights.
    """

    arch = "lenet300"
    input_shape = (1, 28, 28)
    recipe = dict(MNIST_RECIPE)   # lam 0.3 as LeNet-5's: a starting point for the controller

    def __init__(self, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__(num_classes=num_classes, seed=seed)
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        self.features = Sequential(flatten=Flatten())
        self.classifier = Sequential(
            fc1=Linear(784, 300, rng=rng), relu1=ReLU(), fc2=Linear(300, 100, rng=rng),
            relu2=ReLU(), fc3=Linear(100, num_classes, rng=rng))
