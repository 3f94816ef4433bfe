"""Freezing a sparsity pattern: mask the zeros, or hold the weights as CSR on the device."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..layers.base import Module


def freeze_zeros(model: Module, form: str = "mask") -> None:
    """Hold every conv/linear weight's current zeros fixed from now on.

    ``form='mask'``: keep dense weights with a 0/1 mask re-applied after each step.
    ``form='csr'``: convert to CSR; only the surviving values train (dense x CSR kernels).
    Block-diagonal weights keep their blocks and get a mask of them in either form.
    """
    if form not in ("mask", "csr"):
        raise ConfigError(f"form must be 'mask' or 'csr', got {form!r}")
    for _, p in model.prox_parameters():
        if form == "csr" and not p.is_blockdiag:
            p.to_csr()
        elif not p.is_sparse:  # dense, or block-diagonal: a mask of its blocks
            host = p.backend.to_host(p.values)
            p.set_mask((host != 0).astype(np.float32))


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
