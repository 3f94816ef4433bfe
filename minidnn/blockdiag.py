"""Permuted block-diagonal weights (MPDCompress, issue 18): the layout and the device form.

A weight matrix W (R, C) is masked so that, after a row permutation and a column permutation,
it is B dense blocks on the diagonal. Rows are split into B balanced runs of the row
permutation and columns into B balanced runs of the column permutation; block b connects the
rows of run b to the columns of run b and nothing else, so W keeps about 1/B of its weights.
Columns may be permuted in *units* (a convolution's kh*kw taps of one input channel stay
together when ``unit = kh*kw``: blocks on channels) or one by one (``unit = 1``: blocks on the
(out, in*kh*kw) matrix).

``BlockLayout`` is that host-side description (seeded, reproducible); ``BlockDiagMatrix`` holds
the blocks (B, rb, cb) on a backend, padded with exact zeros where a block is shorter than
rb x cb, and runs the three products of a layer: forward ``x W^T`` and input gradient ``dy W``
as one ``block_matmul`` each (gather by one permutation, dense products per block, scatter by
the other, folded into one kernel's indexing), the weight gradient ``dy^T x`` on the blocks
as pack (gather) -> one batched GEMM. Storage (docs/format.md) is the blocks plus the two permutations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend.base import Array, Backend
from .errors import ConfigError, ShapeError


def _runs(count: int, blocks: int) -> np.ndarray:
    """Start offsets of ``blocks`` balanced runs over ``count`` items (sizes differ by <= 1)."""
    return (np.arange(blocks + 1, dtype=np.int64) * count) // blocks


def _padded_index(perm: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(B*width,) int32: block b's items (perm[starts[b]:starts[b+1]]) then -1 padding."""
    blocks = len(starts) - 1
    index = np.full((blocks, width), -1, np.int64)
    for b in range(blocks):
        run = perm[starts[b]:starts[b + 1]]
        index[b, :len(run)] = run
    return index.reshape(-1).astype(np.int32)


@dataclass(frozen=True)
class BlockLayout:
    """Which entries of an (rows, cols) matrix the B diagonal blocks cover.

    ``row_perm`` (rows,) and ``col_perm`` (cols,) are permutations; ``unit`` columns move
    together (``col_perm`` is then a permutation of units expanded to their columns).
    """

    rows: int
    cols: int
    blocks: int
    row_perm: np.ndarray
    col_perm: np.ndarray
    unit: int = 1

    def __post_init__(self) -> None:
        check_blocks(self.rows, self.cols, self.blocks, self.unit)
        for name, perm, n in (("row_perm", self.row_perm, self.rows),
                              ("col_perm", self.col_perm, self.cols)):
            p = np.asarray(perm)
            if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
                raise ShapeError(f"{name} must be a permutation of {n} items")
        units = np.asarray(self.col_perm).reshape(-1, self.unit)
        if not np.array_equal(units - units[:, :1], np.tile(np.arange(self.unit),
                                                            (len(units), 1))) \
                or np.any(units[:, 0] % self.unit):
            raise ShapeError(f"col_perm must move whole units of {self.unit} columns")

    @classmethod
    def random(cls, rows: int, cols: int, blocks: int, rng: np.random.Generator,
               unit: int = 1) -> "BlockLayout":
        """A layout with uniformly random row and (unit) column permutations."""
        check_blocks(rows, cols, blocks, unit)
        units = rng.permutation(cols // unit)
        col_perm = (units[:, None] * unit + np.arange(unit)).reshape(-1)
        return cls(rows, cols, blocks, rng.permutation(rows), col_perm, unit)

    # ------------------------------------------------------------------ derived facts
    @property
    def row_starts(self) -> np.ndarray:
        return _runs(self.rows, self.blocks)

    @property
    def col_starts(self) -> np.ndarray:
        return _runs(self.cols // self.unit, self.blocks) * self.unit

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rb, cb): the largest block; every block is stored padded to it."""
        return (int(np.diff(self.row_starts).max()), int(np.diff(self.col_starts).max()))

    @property
    def nnz(self) -> int:
        """Weights inside the blocks (the padding excluded)."""
        return int(np.dot(np.diff(self.row_starts), np.diff(self.col_starts)))

    def row_index(self) -> np.ndarray:
        return _padded_index(np.asarray(self.row_perm), self.row_starts, self.block_shape[0])

    def col_index(self) -> np.ndarray:
        return _padded_index(np.asarray(self.col_perm), self.col_starts, self.block_shape[1])

    def padding_mask(self) -> np.ndarray:
        """(B, rb, cb) float32: 1 inside each block, 0 on its padding."""
        valid_r = self.row_index().reshape(self.blocks, -1) >= 0
        valid_c = self.col_index().reshape(self.blocks, -1) >= 0
        return (valid_r[:, :, None] & valid_c[:, None, :]).astype(np.float32)

    def dense_mask(self) -> np.ndarray:
        """(rows, cols) float32 0/1: the entries the blocks cover."""
        return self.to_dense(np.ones((self.blocks,) + self.block_shape, np.float32))

    # ------------------------------------------------------------------ host conversion
    def to_dense(self, blocks: np.ndarray) -> np.ndarray:
        """The (rows, cols) matrix of host blocks (B, rb, cb) (padding ignored)."""
        dense = np.zeros((self.rows, self.cols), blocks.dtype)
        ri, ci = self.row_index().reshape(self.blocks, -1), self.col_index().reshape(self.blocks, -1)
        for b in range(self.blocks):
            r, c = ri[b][ri[b] >= 0], ci[b][ci[b] >= 0]
            dense[np.ix_(r, c)] = blocks[b, :len(r), :len(c)]
        return dense

    def from_dense(self, dense: np.ndarray) -> np.ndarray:
        """The host blocks (B, rb, cb) of an (rows, cols) matrix (entries outside dropped)."""
        rb, cb = self.block_shape
        out = np.zeros((self.blocks, rb, cb), dense.dtype)
        ri, ci = self.row_index().reshape(self.blocks, -1), self.col_index().reshape(self.blocks, -1)
        for b in range(self.blocks):
            r, c = ri[b][ri[b] >= 0], ci[b][ci[b] >= 0]
            out[b, :len(r), :len(c)] = dense[np.ix_(r, c)]
        return out


def check_blocks(rows: int, cols: int, blocks: int, unit: int = 1) -> None:
    """ConfigError unless B >= 1 blocks fit: B <= rows and B <= column units."""
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
        raise ConfigError(f"blocks must be an integer >= 1, got {blocks!r}")
    if unit < 1 or cols % unit:
        raise ConfigError(f"a column unit of {unit} does not divide {cols} columns")
    if blocks > min(rows, cols // unit):
        what = "input channels" if unit > 1 else "columns"
        raise ConfigError(f"{blocks} blocks do not fit a {rows} x {cols} weight: at most "
                          f"min(rows {rows}, {what} {cols // unit}) = {min(rows, cols // unit)}")


class BlockDiagMatrix:
    """The blocks (B, rb, cb) of a permuted block-diagonal (R, C) matrix on a backend, with the
    index arrays its products need (uploaded once). Padding entries are exact zeros and stay
    zero under training: their gradient is exactly 0 (the packed operands are 0 there)."""

    def __init__(self, backend: Backend, layout: BlockLayout, blocks: Array) -> None:
        rb, cb = layout.block_shape
        if tuple(blocks.shape) != (layout.blocks, rb, cb):
            raise ShapeError(f"blocks of shape {tuple(blocks.shape)} do not fit the layout "
                             f"({layout.blocks}, {rb}, {cb})")
        self.backend, self.layout, self.blocks = backend, layout, blocks
        self.shape = (layout.rows, layout.cols)
        ri, ci = layout.row_index(), layout.col_index()
        up = backend.from_host
        self.row_index, self.col_index = up(ri, np.int32), up(ci, np.int32)
        self._t: Array | None = None    # the blocks transposed, for the forward product
        self._t_stale = False

    @classmethod
    def from_host(cls, backend: Backend, layout: BlockLayout,
                  blocks: np.ndarray) -> "BlockDiagMatrix":
        """Upload host blocks (their padding is zeroed)."""
        host = np.asarray(blocks)
        host = host * layout.padding_mask().astype(host.dtype)
        return cls(backend, layout, backend.from_host(host))

    @property
    def nnz_capacity(self) -> int:
        return self.layout.nnz

    def nbytes(self) -> int:
        """Device bytes: the blocks, the two int32 index arrays (and the transposed blocks
        once built)."""
        b = self.backend
        held = (self.blocks, self.row_index, self.col_index) + \
            (() if self._t is None else (self._t,))
        return sum(b.nbytes(a) for a in held)

    def to_host(self) -> np.ndarray:
        return np.asarray(self.backend.to_host(self.blocks))

    def to_dense(self) -> np.ndarray:
        """The full (R, C) matrix on the host."""
        return self.layout.to_dense(self.to_host())

    # ------------------------------------------------------------------ products
    def values_changed(self) -> None:
        """Mark the transposed blocks stale after the blocks were updated in place."""
        self._t_stale = True

    def transposed(self) -> Array:
        """The blocks transposed (B, cb, rb), the forward's operand (contiguous loads of a
        block row's outputs); rebuilt with one transpose after ``values_changed``."""
        if self._t is None or self._t_stale:
            self._t = self.backend.transpose(self.blocks, (0, 2, 1))
            self._t_stale = False
        return self._t

    def matmul_t(self, x: Array, bias: Array | None = None, relu: bool = False) -> Array:
        """x (1, M, C) @ W.T -> (1, M, R): one ``block_matmul`` (columns gathered by the column
        index, outputs scattered to their rows); inference plans fuse ``+ bias`` and ReLU."""
        m = int(x.shape[-2])
        y = self.backend.block_matmul(x, self.col_index, self.transposed(), self.row_index,
                                      self.shape[0], bias=bias, relu=relu)
        return y.reshape((1, m, self.shape[0]))

    def matmul(self, dy: Array) -> Array:
        """dy (1, M, R) @ W -> (1, M, C): the blocks as stored, the indices swapped."""
        m = int(dy.shape[-2])
        dx = self.backend.block_matmul(dy, self.row_index, self.blocks, self.col_index,
                                       self.shape[1])
        return dx.reshape((1, m, self.shape[1]))

    def outer_grad(self, dy: Array, x: Array, out: Array, accumulate: bool) -> None:
        """out (B, rb, cb) (+)= dy_b^T @ x_b for every block: the gradient on the blocks (both
        operands packed, then one batched GEMM that reduces over M)."""
        rb, cb = self.layout.block_shape
        dyb = self.backend.block_pack(dy, self.row_index, rb)
        xb = self.backend.block_pack(x, self.col_index, cb)
        self.backend.gemm(dyb, xb, trans_a=True, out=out, beta=1.0 if accumulate else 0.0)
