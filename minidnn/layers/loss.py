"""Softmax cross-entropy: the loss every zoo model trains with."""
from __future__ import annotations

import numpy as np

from ..backend.base import Array, Backend
from ..errors import ShapeError


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels, computed in one kernel.

    ``forward`` returns the loss as a 1-element device array and keeps d loss / d logits for
    ``backward``; nothing comes back to the host.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def forward(self, logits: Array, labels: Array) -> Array:
        if len(logits.shape) != 2:
            raise ShapeError(f"loss expects (N, classes) logits, got shape {tuple(logits.shape)}")
        if tuple(labels.shape) != (logits.shape[0],):
            raise ShapeError(f"loss: {logits.shape[0]} logits rows but labels of shape "
                             f"{tuple(labels.shape)}")
        if np.dtype(labels.dtype) != np.int32:
            raise ShapeError(f"loss: labels must be int32 class indices, got {labels.dtype}")
        loss, self._grad = self.backend.softmax_cross_entropy(logits, labels)
        return loss

    def backward(self) -> Array:
        return self._grad
