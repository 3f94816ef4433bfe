"""A small learnable image task for tests that train: three classes, fixed templates plus noise."""
from __future__ import annotations

import numpy as np

from minidnn.data import ArrayDataset


def template_classes(n: int, side: int, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """(train of n, test of n // 2) images 1 x side x side: one of three fixed random templates
    (the same for every seed) plus Gaussian noise of std 0.5 drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(99).standard_normal((3, 1, side, side)).astype(np.float32)

    def draw(m):
        y = rng.integers(0, 3, m).astype(np.int32)
        x = templates[y] + 0.5 * rng.standard_normal((m, 1, side, side)).astype(np.float32)
        return ArrayDataset(x.astype(np.float32), y, "synthetic", ["a", "b", "c"])
    return draw(n), draw(n // 2)
