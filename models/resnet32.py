"""ResNet-32 for CIFAR-10 (He et al. 2016) as in the paper's Table A4: 464,432 weights."""
from __future__ import annotations

import math

import numpy as np

from minidnn.layers import (BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, ReLU,
                            Residual, Sequential)
from minidnn.layers.model import Model


class BasicBlock(Residual):
    """relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)); the shortcut is the identity, or
    a strided 1x1 conv + BN projection when the block changes width or resolution."""

    def __init__(self, c_in: int, c_out: int, stride: int, rng: np.random.Generator) -> None:
        main = Sequential(
            conv1=Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, rng=rng),
            bn1=BatchNorm2d(c_out), relu1=ReLU(),
            conv2=Conv2d(c_out, c_out, 3, padding=1, bias=False, rng=rng), bn2=BatchNorm2d(c_out))
        shortcut = None
        if stride != 1 or c_in != c_out:
            shortcut = Sequential(conv=Conv2d(c_in, c_out, 1, stride=stride, bias=False, rng=rng),
                                  bn=BatchNorm2d(c_out))
        super().__init__(main, shortcut, post=ReLU())


class ResNet32(Model):
    """conv1 3->16 3x3 + BN + ReLU -> 3 stages of 5 BasicBlocks (16, 32, 64 channels; stages 2
    and 3 start with stride 2 and a 1x1 projection) -> global average pool -> fc 64->10."""

    arch = "resnet32"
    input_shape = (3, 32, 32)
    # Paper setting: Prox-Adam lr 1e-3 constant, 60k steps of 128; SpC lambda p=1.001 -> ln(1.001).
    # Standard CIFAR augmentation (4-pixel pad + random crop, random flip), as for the 90% reference.
    recipe = {"data": "cifar10", "optimizer": "adam", "lr": 0.001, "schedule": "constant",
              "batch_size": 128, "steps": 60_000, "lam": math.log(1.001), "augment": "crop_flip"}

    def __init__(self, num_classes: int = 10, blocks_per_stage: int = 5, seed: int = 0) -> None:
        super().__init__(num_classes=num_classes, blocks_per_stage=blocks_per_stage, seed=seed)
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        self.conv1 = Conv2d(3, 16, 3, padding=1, bias=False, rng=rng)
        self.bn1 = BatchNorm2d(16)
        self.relu1 = ReLU()
        c_in = 16
        for s, c_out in enumerate((16, 32, 64), start=1):
            blocks = {}
            for i in range(1, blocks_per_stage + 1):
                stride = 2 if (i == 1 and s > 1) else 1
                blocks[f"block{i}"] = BasicBlock(c_in, c_out, stride, rng)
                c_in = c_out
            setattr(self, f"stage{s}", Sequential(**blocks))
        self.pool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(64, num_classes, rng=rng)
