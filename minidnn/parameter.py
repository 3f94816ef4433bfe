"""Parameter: a trainable tensor, dense, CSR or permuted block-diagonal, with its gradient and
optional fixed mask.

This is the one place that branches on the representation: layers call ``matmul_t``,
``matmul`` and ``accumulate_outer_grad`` and never ask whether the weight is sparse.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Sequence

import numpy as np

from .backend.base import Array, Backend
from .errors import MinidnnError, ShapeError
from .blockdiag import BlockDiagMatrix, BlockLayout
from .sparse import CSRMatrix


class Parameter:
    """A named trainable tensor.

    ``prox``: whether the l1 proximal step applies (conv/linear weights yes; biases, BN no).
    ``mask``: optional 0/1 array of the dense shape; 0 = pruned forever (applied after each step).
    ``groups``: for a weight used as a (possibly grouped) matrix: rows split into this many groups.
    Dense: ``data`` holds the tensor. CSR: ``csr`` holds it, ``data`` is None, and ``values``,
    ``grad`` and optimizer state are nnz-long vectors on the pattern. Block-diagonal
    (``blockdiag``, issue 18): ``data`` is None and ``values``, ``grad`` and optimizer state are
    the (B, rb, cb) blocks.
    """

    def __init__(self, data: np.ndarray | Array, prox: bool = False, groups: int = 1) -> None:
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.prox = prox
        self.groups = groups
        self.grad: Array | None = None
        self.mask: Array | None = None
        self.csr: CSRMatrix | None = None
        self.blockdiag: BlockDiagMatrix | None = None
        self.backend: Backend | None = None

    def __repr__(self) -> str:
        kind = f"CSR nnz={self.csr.nnz}" if self.csr is not None else \
            f"{self.blockdiag.layout.blocks} blocks" if self.blockdiag is not None else "dense"
        return f"Parameter(shape={self.shape}, {kind}, prox={self.prox})"

    # ------------------------------------------------------------------ placement
    @property
    def is_sparse(self) -> bool:
        return self.csr is not None

    @property
    def is_blockdiag(self) -> bool:
        return self.blockdiag is not None

    @property
    def values(self) -> Array:
        """The array an optimizer updates: dense data, the CSR values or the blocks."""
        if self.blockdiag is not None:
            return self.blockdiag.blocks
        return self.csr.values if self.csr is not None else self.data

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(rows, cols) of the weight as a matrix: (out, in*kh*kw/groups)."""
        return (self.shape[0], int(np.prod(self.shape[1:])))

    def to(self, backend: Backend) -> "Parameter":
        """Move data (and mask) to ``backend`` (host arrays are uploaded; CSR is re-uploaded)."""
        if self.backend is backend:
            return self
        if self.csr is not None:
            host = self.csr.to_host() if self.backend is not None else None
            self.csr = CSRMatrix.from_host(backend, *host, self.csr.shape, self.groups)
        elif self.blockdiag is not None:
            bd = self.blockdiag
            host = bd.to_host() if self.backend is not None else np.asarray(bd.blocks)
            self.blockdiag = BlockDiagMatrix.from_host(backend, bd.layout, host)
        else:
            host = self.data if self.backend is None else self.backend.to_host(self.data)
            self.data = backend.from_host(np.asarray(host))
        if self.mask is not None:
            m = self.mask if self.backend is None else self.backend.to_host(self.mask)
            self.mask = backend.from_host(np.asarray(m))
        self.backend = backend
        self.grad = None
        return self

    def host_dense(self) -> np.ndarray:
        """The full dense tensor on the host (for saving, inspection and tests)."""
        b = self.backend
        if self.csr is not None:
            return b.to_host(self.csr.to_dense()).reshape(self.shape)
        if self.blockdiag is not None:
            return self.blockdiag.to_dense().reshape(self.shape)
        return np.asarray(self.data if b is None else b.to_host(self.data))

    def set_mask(self, mask: np.ndarray | Array | None) -> None:
        """Fix the zero pattern: mask 0 entries are zeroed now and after every optimizer step."""
        if mask is None:
            self.mask = None
            return
        # block-diagonal: a mask of the blocks (zeros inside them, e.g. SpC within the blocks)
        shape = tuple(self.values.shape) if self.blockdiag is not None else self.shape
        if tuple(mask.shape) != shape:
            raise ShapeError(f"mask shape {tuple(mask.shape)} != parameter shape {shape}")
        self.mask = self.backend.from_host(np.asarray(mask)) if isinstance(mask, np.ndarray) \
            else mask
        if self.csr is None:
            self.backend.apply_mask(self.values, self.mask)
            self.values_changed()

    def to_blockdiag(self, layout: BlockLayout) -> None:
        """Switch a dense weight to permuted block-diagonal form: the entries outside the
        blocks of ``layout`` are dropped for good (a fixed mask held as structure)."""
        if self.groups != 1:
            raise ShapeError(f"block-diagonal weights need groups=1, got {self.groups}")
        if (layout.rows, layout.cols) != self.matrix_shape:
            raise ShapeError(f"layout {(layout.rows, layout.cols)} does not fit the "
                             f"{self.matrix_shape} weight")
        blocks = layout.from_dense(self.host_dense().reshape(self.matrix_shape))
        self.blockdiag = BlockDiagMatrix.from_host(self.backend, layout, blocks)
        self.data = self.csr = self.mask = self.grad = None

    def to_csr(self) -> None:
        """Switch to CSR with the current zero pattern frozen (exact zeros are dropped); a CSR
        weight keeps its pattern and lets go of what only training needed (its transpose)."""
        if self.csr is not None:
            self.csr.release_training_caches()
            return
        self._leave_blockdiag()
        b = self.backend
        self.csr = CSRMatrix.from_dense(b, self.data.reshape(self.matrix_shape), self.groups)
        self.data = None
        self.mask = None  # the pattern is the structure now
        self.grad = None

    def to_csr_on_mask(self) -> Array:
        """Switch a masked dense weight to CSR whose pattern is the mask's ones (kept even
        where the value is 0.0, unlike ``to_csr``); the gradient, if any, is carried over.
        Returns the flat dense positions of the pattern (int32, on the device), with which
        per-element state is gathered (``Optimizer.gather_state``). One host round trip of
        the mask."""
        if self.mask is None or self.csr is not None or self.blockdiag is not None:
            raise ShapeError(f"to_csr_on_mask needs a dense weight with a mask: {self!r}")
        b = self.backend
        rows, cols = self.matrix_shape
        keep = np.asarray(b.to_host(self.mask)).reshape(rows, cols) != 0
        row_ptr = np.zeros(rows + 1, np.int32)
        np.cumsum(keep.sum(axis=1), out=row_ptr[1:])
        col_idx = np.nonzero(keep)[1].astype(np.int32)
        index = b.from_host(np.flatnonzero(keep).astype(np.int32), np.int32)
        values = b.gather(self.data.reshape((rows * cols,)), index)
        self.csr = CSRMatrix(b, b.from_host(row_ptr, np.int32), b.from_host(col_idx, np.int32),
                             values, (rows, cols), self.groups)
        if self.grad is not None:
            self.grad = b.gather(self.grad.reshape((rows * cols,)), index)
        self.data = self.mask = None
        return index

    def _leave_blockdiag(self) -> None:
        """Block-diagonal -> dense (the entries outside the blocks are zeros)."""
        if self.blockdiag is not None:
            self.data = self.backend.from_host(self.blockdiag.to_dense().reshape(self.shape))
            self.blockdiag = None
            self.grad = None

    def to_dense(self) -> None:
        """Switch back to a dense tensor (zeros may revive under further training)."""
        self._leave_blockdiag()
        if self.csr is None:
            return
        self.data = self.csr.to_dense().reshape(self.shape)
        self.csr = None
        self.grad = None

    # ------------------------------------------------------------------ the products layers use
    def _dense3(self) -> Array:
        rows, cols = self.matrix_shape
        return self.data.reshape((self.groups, rows // self.groups, cols))

    def matmul_t(self, x: Array) -> Array:
        """x (G, M, K) @ W_g.T -> (G, M, O/G): the forward product of conv and linear."""
        if self.csr is not None:
            return self.csr.matmul_t(x)
        if self.blockdiag is not None:
            return self.blockdiag.matmul_t(x)
        return self.backend.gemm(x, self._dense3(), trans_b=True)

    def matmul(self, dy: Array) -> Array:
        """dy (G, M, O/G) @ W_g -> (G, M, K): the input gradient."""
        if self.csr is not None:
            return self.csr.matmul(dy)
        if self.blockdiag is not None:
            return self.blockdiag.matmul(dy)
        return self.backend.gemm(dy, self._dense3())

    def accumulate_outer_grad(self, dy: Array, x: Array) -> None:
        """grad += dy_g.T @ x_g (restricted to the nonzeros when CSR, to the blocks when
        block-diagonal)."""
        if self.grad is None:
            self.grad = self.backend.zeros(self.values.shape)
            accumulate = False
        else:
            accumulate = True
        if self.csr is not None:
            self.csr.sddmm(dy, x, self.grad, accumulate=accumulate)
        elif self.blockdiag is not None:
            self.blockdiag.outer_grad(dy, x, self.grad, accumulate)
        else:
            rows, cols = self.matrix_shape
            g3 = self.grad.reshape((self.groups, rows // self.groups, cols))
            self.backend.gemm(dy, x, trans_a=True, out=g3, beta=1.0 if accumulate else 0.0)

    def accumulate_conv_grad(self, dy: Array, x: Array, kh: int, kw: int, stride: int,
                             pad: int) -> None:
        """grad += dW of a direct sparse convolution (CSR weights only; ``CSRMatrix.conv2d``)
        from its NCHW input x and dY, on the pattern."""
        accumulate = self.grad is not None
        self.csr.conv2d_weight_grad(dy, x, kh, kw, stride, pad, self.grad_buffer(), accumulate)

    def grad_buffer(self) -> Array:
        """The gradient array (zeros on first use) for layers that accumulate by hand."""
        if self.grad is None:
            self.grad = self.backend.zeros(self.values.shape)
        return self.grad

    def zero_grad(self) -> None:
        if self.grad is not None:
            self.backend.fill(self.grad, 0.0)

    def values_changed(self) -> None:
        """Called by optimizers after an in-place update of ``values``."""
        if self.csr is not None:
            self.csr.values_changed()
        if self.blockdiag is not None:
            self.blockdiag.values_changed()

    # ------------------------------------------------------------------ accounting
    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    def count_nonzero(self) -> int:
        """Nonzero entries (one scalar comes back from the device)."""
        zeros = int(self.backend.to_host(self.backend.count_zeros(self.values))[0])
        return int(self.values.size) - zeros

    def device_bytes(self) -> int:
        """Bytes this parameter holds on the device (data, CSR or block arrays, plus the
        mask)."""
        b = self.backend
        total = self.csr.nbytes() if self.csr is not None else \
            self.blockdiag.nbytes() if self.blockdiag is not None else b.nbytes(self.data)
        if self.mask is not None:
            total += b.nbytes(self.mask)
        return total

    def dense_bytes(self) -> int:
        return self.numel * 4


class InitBudgetExceeded(MinidnnError):
    """Building a model would create more weights than an ``init_budget`` allows."""


_INIT_BUDGET: ContextVar[list[int] | None] = ContextVar("minidnn_init_budget", default=None)


@contextlib.contextmanager
def init_budget(values: int) -> Iterator[None]:
    """Within the block, weight initializers create at most ``values`` values in all; one more
    raises InitBudgetExceeded before allocating (e.g. a model described by a file's config
    that is larger than the file's weights)."""
    token = _INIT_BUDGET.set([int(values)])
    try:
        yield
    finally:
        _INIT_BUDGET.reset(token)


def _charge(count: int) -> None:
    left = _INIT_BUDGET.get()
    if left is not None:
        if count > left[0]:
            raise InitBudgetExceeded(f"a weight of {count:,} values exceeds the {left[0]:,} "
                                     f"left in the budget")
        left[0] -= count


def he_normal(rng: np.random.Generator, shape: Sequence[int], fan_in: int) -> np.ndarray:
    """He (Kaiming) normal init: N(0, 2/fan_in), the paper's initialization."""
    _charge(int(np.prod(tuple(shape), dtype=object)))
    return (rng.standard_normal(tuple(shape)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
