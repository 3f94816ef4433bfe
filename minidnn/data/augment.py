"""Vectorized augmentation: random crop with zero padding plus random horizontal flip (CIFAR-style),
and random shifts without flips (digits: a mirrored digit is another glyph)."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def draw_crop_flip(n: int, rng: np.random.Generator, padding: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random (dy, dx, flip) for n images: crop offsets in 0..2*padding into the padded image, flip flags."""
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    flip = rng.random(n) < 0.5
    return dy, dx, flip


def crop_flip(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray, padding: int = 4) -> np.ndarray:
    """Pad (N, C, H, W) images with `padding` zeros, crop H x W at (dy, dx) per image, mirror where flip."""
    n, c, h, w = images.shape
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), images.dtype)
    padded[:, :, padding:padding + h, padding:padding + w] = images
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W), a view
    out = windows[np.arange(n), :, dy, dx]  # advanced indices split by a slice: result is (N, C, H, W)
    out[flip] = out[flip, :, :, ::-1]
    return out


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Random crop with `padding`-pixel zero padding + random horizontal flip; a new array, input untouched."""
    dy, dx, flip = draw_crop_flip(len(images), rng, padding)
    return crop_flip(images, dy, dx, flip, padding)


def random_shift(images: np.ndarray, rng: np.random.Generator, padding: int = 2) -> np.ndarray:
    """Shift each image by up to ``padding`` pixels each way (zeros come in), no flip; a new array."""
    dy, dx, _ = draw_crop_flip(len(images), rng, padding)
    return crop_flip(images, dy, dx, np.zeros(len(images), bool), padding)


AUGMENTS = {"crop_flip": random_crop_flip, "shift": random_shift}
"""The augmentations by name, as recipes and ``--augment`` name them."""
