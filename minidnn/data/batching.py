"""Deterministic minibatch iteration over an ArrayDataset, with optional augmentation."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from minidnn.errors import ConfigError
from minidnn.data.dataset import ArrayDataset

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def count_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many minibatches `iterate_minibatches` yields for n examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_minibatches(dataset: ArrayDataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                        epoch: int = 0, drop_last: bool = False,
                        augment: Augment | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (images, labels) batches; order and augmentation depend only on (seed, epoch).

    Unshuffled, unaugmented batches are read-only views into the dataset; others are new arrays.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    for what, value in (("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{what} must be a non-negative integer, got {value!r}")
    images, labels = dataset.images, dataset.labels
    n = len(labels)
    rng = np.random.default_rng((int(seed), int(epoch)))
    order = rng.permutation(n) if shuffle else None
    for start in range(0, count_batches(n, batch_size, drop_last) * batch_size, batch_size):
        if order is None:
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            if augment is None:
                x, y = _read_only(x), _read_only(y)
        else:
            index = order[start:start + batch_size]
            x, y = images[index], labels[index]
        if augment is not None:
            x = augment(x, rng)
        yield x, y


def _read_only(view: np.ndarray) -> np.ndarray:
    view = view.view()
    view.flags.writeable = False
    return view
