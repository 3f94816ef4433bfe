"""OpenCL op group for permuted block-diagonal weights (issue 18): ``cl_kernels/block.cl``.

``block_matmul`` runs the forward and input-gradient products in one kernel, the gathers
folded into its indexing; ``block_pack`` gathers operands into the per-block layout for the
weight gradient, which is then the batched GEMM of ``GemmOps`` (contracts in ``Backend``).
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .base import Array
from .cl_runtime import CLRuntime

STEM = "block"
i32 = np.int32
MR, NR = 6, 16     # rows x outputs of one block_matmul work-item (BLK_MR, BLK_NR)
LOCAL = None       # block_matmul's work-group: the driver's choice (measured below)
# block_pack's work-group is left to the driver: on PoCL's CPU device fixed small groups were
# 2x slower


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

    provides = ("block_pack", "block_matmul")

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
            self.rt.launch(STEM, "block_pack", (total // nb, m), None, x, index, out, i32(m),
                           i32(n), i32(nb), i32(total // nb))
        return out

    def block_matmul(self, x: Array, in_index: Array, w: Array, out_index: Array,
                     n_out: int, bias: Array | None = None, relu: bool = False,
                     out: Array | None = None) -> Array:
        m, n = _rows_cols(x, "block_matmul")
        _check_index(in_index, "block_matmul")
        _check_index(out_index, "block_matmul")
        if len(w.shape) != 3:
            raise ShapeError(f"block_matmul takes (B, nk, no) blocks, got {tuple(w.shape)}")
        nblocks, nk, no = (int(s) for s in w.shape)
        if int(in_index.shape[0]) != nblocks * nk or int(out_index.shape[0]) != nblocks * no:
            raise ShapeError(f"block_matmul: indices of {int(in_index.shape[0])} and "
                             f"{int(out_index.shape[0])} entries do not fit {nblocks} blocks of "
                             f"{nk} inputs and {no} outputs")
        if out is None:
            out = self.rt.empty((m, n_out))
        elif int(out.size) != m * n_out:
            raise ShapeError(f"block_matmul: out has shape {tuple(out.shape)}, expected "
                             f"{(m, n_out)}")
        if out.size:
            self.rt.launch(STEM, "block_matmul", (nblocks * -(-no // NR), -(-m // MR)), LOCAL,
                           x, in_index, w, out_index, out, i32(m), i32(n), i32(n_out),
                           i32(nk), i32(no), i32(nblocks),
                           self.rt.dummy if bias is None else bias, i32(bias is not None),
                           i32(bool(relu)))
        return out
