"""OpenCL op group for permuted block-diagonal weights (issue 18): ``cl_kernels/block.cl``.

The products themselves are the batched GEMM of ``GemmOps``; this group only moves data in
and out of the per-block layout (``block_pack``, ``block_unpack``; contracts in ``Backend``).
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .base import Array
from .cl_runtime import CLRuntime

STEM = "block"
i32 = np.int32
LOCAL = (16, 4)   # work-group of both kernels: 16 packed columns x 4 rows


def _rows_cols(x: Array, what: str) -> tuple[int, int]:
    """(M, N) of a 2-D operand or of a (1, M, N) one."""
    shape = tuple(int(s) for s in x.shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise ShapeError(f"{what} takes an (M, N) or (1, M, N) operand, got shape {shape}")
    return shape


def _check_index(index: Array, what: str) -> None:
    if np.dtype(index.dtype) != np.int32 or len(index.shape) != 1:
        raise DTypeError(f"{what} needs a 1-D int32 index, got {index.dtype} {tuple(index.shape)}")


class BlockOps:
    """Gather into and scatter out of the block layout on a ``CLRuntime``."""

    provides = ("block_pack", "block_unpack")

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime

    def block_pack(self, x: Array, index: Array, nb: int, out: Array | None = None) -> Array:
        m, n = _rows_cols(x, "block_pack")
        _check_index(index, "block_pack")
        total = int(index.shape[0])
        if nb < 1 or total % nb:
            raise ShapeError(f"block_pack: index of {total} entries is not whole blocks of {nb}")
        shape = (total // nb, m, nb)
        if out is None:
            out = self.rt.empty(shape)
        elif tuple(out.shape) != shape:
            raise ShapeError(f"block_pack: out has shape {tuple(out.shape)}, expected {shape}")
        if out.size:
            self.rt.launch(STEM, "block_pack", (total, m), LOCAL, x, index, out, i32(m), i32(n),
                           i32(nb), i32(total))
        return out

    def block_unpack(self, xb: Array, pos: Array, out: Array | None = None) -> Array:
        if len(xb.shape) != 3:
            raise ShapeError(f"block_unpack takes (B, M, nb) blocks, got {tuple(xb.shape)}")
        _check_index(pos, "block_unpack")
        _, m, nb = (int(s) for s in xb.shape)
        n = int(pos.shape[0])
        if out is None:
            out = self.rt.empty((m, n))
        elif int(out.size) != m * n:
            raise ShapeError(f"block_unpack: out has shape {tuple(out.shape)}, expected {(m, n)}")
        if out.size:
            self.rt.launch(STEM, "block_unpack", (n, m), LOCAL, xb, pos, out, i32(m), i32(n),
                           i32(nb))
        return out
