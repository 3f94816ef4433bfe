"""Freezing a sparsity pattern: mask the zeros, or hold the weights as CSR on the device."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..layers.base import Module
from .sparse_train import SPARSE_TRAIN_DENSITY


def freeze_zeros(model: Module, form: str = "mask", max_density: float = SPARSE_TRAIN_DENSITY) -> None:
    """Hold every conv/linear weight's current zeros fixed from now on.

    ``form='mask'``: keep dense weights with a 0/1 mask re-applied after each step.
    ``form='csr'``: convert to CSR; only the surviving values train (dense x CSR kernels).
    ``form='auto'``: CSR for the weights at most ``max_density`` dense (sparse training, issue
    20; 0: none), a mask for the others. The same zeros are held in every form.
    Block-diagonal weights keep their blocks and get a mask of them in any form.
    """
    if form not in ("mask", "csr", "auto"):
        raise ConfigError(f"form must be 'mask', 'csr' or 'auto', got {form!r}")
    for _, p in model.prox_parameters():
        if p.is_sparse:
            continue
        if form == "csr" and not p.is_blockdiag:
            p.to_csr()
            continue
        host = p.backend.to_host(p.values)  # dense, or block-diagonal: a mask of its blocks
        keep = host != 0
        if form == "auto" and not p.is_blockdiag and keep.mean() <= max_density:
            p.to_csr()
        else:
            p.set_mask(keep.astype(np.float32))


def to_inference_form(model: Module, max_density: float = 0.5) -> list[str]:
    """Per layer, CSR where the density is at most ``max_density`` (sparse wins), else dense;
    block-diagonal weights stay block-diagonal.

    Returns the names of the layers converted to CSR.
    """
    converted = []
    for name, p in model.prox_parameters():
        if p.is_blockdiag:  # already its fast structured form (issue 18); the mask goes
            p.set_mask(None)
            continue
        density = p.count_nonzero() / p.numel
        if density <= max_density:
            p.to_csr()
            converted.append(name)
        else:
            p.to_dense()
            p.set_mask(None)
    return converted
