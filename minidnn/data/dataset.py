"""ArrayDataset: normalized float32 images (N, C, H, W) and int32 labels held in memory."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minidnn.errors import ShapeError


class ArrayDataset:
    """Images float32 (N, C, H, W), already normalized as (x/255 - mean) / std per channel; labels int32 (N,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str, classes: Sequence[str],
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,), source: str = ""):
        if images.ndim != 4 or images.dtype != np.float32:
            raise ShapeError(f"{name}: images must be float32 (N, C, H, W), got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise ShapeError(f"{name}: labels must have shape ({len(images)},), got {labels.shape}")
        self.images, self.labels = images, labels.astype(np.int32, copy=False)
        self.name, self.classes, self.source = name, tuple(classes), source
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))

    @classmethod
    def from_uint8(cls, pixels: np.ndarray, labels: np.ndarray, name: str, classes: Sequence[str],
                   mean: Sequence[float], std: Sequence[float], source: str = "") -> "ArrayDataset":
        """Normalize uint8 (N, C, H, W) pixels per channel into one new float32 array (no other copies)."""
        channels = pixels.shape[1]
        mean = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
        std = np.broadcast_to(np.asarray(std, np.float64), (channels,))
        images = pixels.astype(np.float32)  # (x/255 - mean)/std == x*scale - shift, in place
        images *= (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
        images -= (mean / std).astype(np.float32)[:, None, None]
        return cls(images, labels, name, classes, mean, std, source)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (C, H, W) shape of one image."""
        return self.images.shape[1:]

    def __repr__(self) -> str:
        return f"ArrayDataset({self.name!r}, {len(self)} images of {self.shape}, {len(self.classes)} classes)"


def channel_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std of uint8 (N, C, H, W) pixels scaled to [0, 1] (via histograms)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(pixels.shape[1]):
        counts = np.bincount(pixels[:, c].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = counts @ values / total
        means.append(mean)
        stds.append(np.sqrt(counts @ (values - mean) ** 2 / total))
    return np.array(means), np.array(stds)
