"""Datasets from your own arrays: images (N, C, H, W) float32 and integer labels, validated."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minidnn.data.dataset import ArrayDataset
from minidnn.errors import DataError, ShapeError

INT32_MAX = np.iinfo(np.int32).max


def dataset_from_arrays(images: np.ndarray, labels: np.ndarray,
                        classes: Sequence[str] | None = None,
                        name: str = "arrays") -> ArrayDataset:
    """An ArrayDataset of ``images`` (N, C, H, W) float32, already normalized as you want them
    fed to the model, and ``labels`` (N,) of any integer type with values in
    ``0 .. len(classes) - 1`` (``classes`` defaults to '0' .. str(max label)).

    ShapeError for a wrong shape or dtype, DataError for NaN/Inf images or labels out of range.
    The images are not copied.
    """
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.dtype != np.float32:
        got = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
               else type(images).__name__)
        raise ShapeError(f"{name}: images must be a float32 array (N, C, H, W), got {got} "
                         f"(convert with np.asarray(x, np.float32), add a channel axis with "
                         f"x[:, None])")
    if min(images.shape) < 1:
        raise ShapeError(f"{name}: images of shape {images.shape} hold no image")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (len(images),):
        raise ShapeError(f"{name}: labels must be integers of shape ({len(images)},), got "
                         f"{labels.dtype} {labels.shape}")
    if not np.isfinite(images).all():
        raise DataError(f"{name}: images hold NaN or Inf values")
    low, high = int(labels.min()), int(labels.max())
    classes = tuple(str(c) for c in range(high + 1)) if classes is None else tuple(classes)
    if low < 0 or high >= len(classes) or high > INT32_MAX:
        raise DataError(f"{name}: labels must lie in 0..{len(classes) - 1} (one per class), "
                        f"got {low}..{high}")
    return ArrayDataset(images, labels, name, classes, source="arrays")
