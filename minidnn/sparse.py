"""CSR matrices on a backend: the form a frozen sparse weight lives in on the device."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .backend.base import Array, Backend
from .errors import ShapeError


# Limits of the packed taps (channel << 16 | ky << 8 | kx) that conv2d reads.
TAP_MAX_CHANNELS = 1 << 15
TAP_MAX_KERNEL = 1 << 8


def fits_conv_taps(channels_per_group: int, kh: int, kw: int) -> bool:
    """Whether a filter bank's columns can be packed as taps for the direct sparse conv."""
    return channels_per_group < TAP_MAX_CHANNELS and kh < TAP_MAX_KERNEL and kw < TAP_MAX_KERNEL


class CSRMatrix:
    """An (R, C) matrix as row_ptr/col_idx/values on a backend, plus a lazily built transpose.

    ``groups`` > 1 marks a grouped-conv filter bank: rows g*R/G .. (g+1)*R/G-1 belong to group g.
    The transpose (CSC) is built once, on first use by a backward pass; after the values change
    (an optimizer step) call ``values_changed`` and it is re-gathered with one kernel.
    """

    def __init__(self, backend: Backend, row_ptr: Array, col_idx: Array, values: Array,
                 shape: Sequence[int], groups: int = 1) -> None:
        self.backend = backend
        self.row_ptr, self.col_idx, self.values = row_ptr, col_idx, values
        self.shape = (int(shape[0]), int(shape[1]))
        self.groups = int(groups)
        self._t: tuple[Array, Array, Array, Array] | None = None
        self._t_stale = False
        self._taps: tuple[tuple[int, int], Array] | None = None  # ((kh, kw), taps) for conv2d
        # ((kh, kw), row_ptr, taps) of the flipped transpose, for conv2d_input_grad
        self._grad_taps: tuple[tuple[int, int], Array, Array] | None = None

    @classmethod
    def from_dense(cls, backend: Backend, dense: Array, groups: int = 1) -> "CSRMatrix":
        """Compact a dense 2-D device array (exact zeros dropped) without a host round trip."""
        if len(dense.shape) != 2:
            raise ShapeError(f"CSR needs a 2-D matrix, got shape {tuple(dense.shape)}")
        row_ptr, col_idx, values = backend.csr_from_dense(dense)
        return cls(backend, row_ptr, col_idx, values, dense.shape, groups)

    @classmethod
    def from_host(cls, backend: Backend, row_ptr: np.ndarray, col_idx: np.ndarray,
                  values: np.ndarray, shape: Sequence[int], groups: int = 1) -> "CSRMatrix":
        """Upload host CSR arrays (e.g. read from a model file)."""
        return cls(backend, backend.from_host(row_ptr, np.int32),
                   backend.from_host(col_idx, np.int32), backend.from_host(values),
                   shape, groups)

    # ------------------------------------------------------------------ facts
    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def density(self) -> float:
        total = self.shape[0] * self.shape[1]
        return self.nnz / total if total else 0.0

    def nbytes(self) -> int:
        """Device bytes held: row_ptr + col_idx + values (+ the transpose once built)."""
        b = self.backend
        total = b.nbytes(self.row_ptr) + b.nbytes(self.col_idx) + b.nbytes(self.values)
        if self._t is not None:
            total += sum(b.nbytes(a) for a in self._t)
        if self._taps is not None:
            total += b.nbytes(self._taps[1])
        if self._grad_taps is not None:
            total += b.nbytes(self._grad_taps[1]) + b.nbytes(self._grad_taps[2])
        return total

    def release_training_caches(self) -> None:
        """Drop the transpose and the input gradient's taps (rebuilt if training resumes)."""
        self._t = self._grad_taps = None

    def to_dense(self) -> Array:
        return self.backend.csr_to_dense(self.row_ptr, self.col_idx, self.values, self.shape)

    def to_host(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.backend
        return b.to_host(self.row_ptr), b.to_host(self.col_idx), b.to_host(self.values)

    # ------------------------------------------------------------------ products
    def values_changed(self) -> None:
        """Mark the transposed copy stale after the values were updated in place."""
        self._t_stale = True

    def transposed(self) -> tuple[Array, Array, Array]:
        """(t_row_ptr, t_col_idx, t_values) of the per-group transpose, kept in sync lazily."""
        if self._t is None:
            self._t = self.backend.csr_transpose(self.row_ptr, self.col_idx, self.values,
                                                 self.shape, self.groups)
            self._t_stale = False
        elif self._t_stale:
            self.backend.gather(self.values, self._t[3], out=self._t[2])
            self._t_stale = False
        return self._t[0], self._t[1], self._t[2]

    def matmul_t(self, x: Array) -> Array:
        """x (G, M, C) @ W_g.T -> (G, M, R/G)."""
        return self.backend.csr_matmul_t(x, self.row_ptr, self.col_idx, self.values, self.shape)

    def matmul(self, dy: Array) -> Array:
        """dy (G, M, R/G) @ W_g -> (G, M, C)."""
        return self.backend.csr_matmul(dy, *self.transposed(), self.shape)

    def sddmm(self, dy: Array, x: Array, out: Array, accumulate: bool = True) -> None:
        """out (nnz,) (+)= (dy_g.T @ x_g) at the nonzeros: the weight gradient on the pattern."""
        self.backend.csr_sddmm(dy, x, self.row_ptr, self.col_idx, self.shape, out, accumulate)

    def conv2d(self, x: Array, bias: Array | None, kh: int, kw: int, stride: int,
               pad: int) -> Array:
        """Direct sparse convolution (inference, and training's forward): x (N, C, H, W) -> (N, O, OH, OW) + bias.
        The taps (decoded columns) are built on first use and kept with the matrix; the
        geometry must pass ``fits_conv_taps``."""
        return self.backend.csr_conv2d(x, self.row_ptr, self._conv_taps(kh, kw), self.values,
                                       self.shape, bias, kh, kw, stride, pad, self.groups)

    def conv2d_weight_grad(self, dy: Array, x: Array, kh: int, kw: int, stride: int,
                           pad: int, out: Array, accumulate: bool) -> None:
        """out (nnz,) (+)= dW on the pattern of a ``conv2d`` from its input x and dY, straight
        from the NCHW tensors (the taps of ``conv2d``)."""
        self.backend.csr_conv_wgrad(dy, x, self.row_ptr, self._conv_taps(kh, kw), self.shape,
                                    kh, kw, stride, pad, self.groups, out, accumulate)

    def _conv_taps(self, kh: int, kw: int) -> Array:
        """The taps of ``conv2d`` (built on first use)."""
        if self._taps is None or self._taps[0] != (kh, kw):
            self._taps = ((kh, kw), self.backend.csr_conv_taps(self.col_idx, kh, kw))
        return self._taps[1]

    def conv2d_input_grad(self, dy: Array, x_shape: Sequence[int], kh: int, kw: int,
                          pad: int) -> Array:
        """dX (N, C, H, W) of a stride-1 ``conv2d`` from dY (N, O, OH, OW), as a direct sparse
        convolution too: dY with the flipped, transposed filter bank (values: the transpose's,
        kept in sync by ``transposed``) and padding kh-1-pad; needs kh == kw, pad <= kh-1 and
        taps that fit (``fits_conv_taps(O/G, kh, kw)``)."""
        t_row_ptr, t_col_idx, t_values = self.transposed()
        if self._grad_taps is None or self._grad_taps[0] != (kh, kw):
            row_ptr, cols = self.backend.csr_flip_transpose(t_row_ptr, t_col_idx, kh, kw)
            self._grad_taps = ((kh, kw), row_ptr, self.backend.csr_conv_taps(cols, kh, kw))
        c = int(x_shape[1])
        og = self.shape[0] // self.groups
        return self.backend.csr_conv2d(dy, self._grad_taps[1], self._grad_taps[2], t_values,
                                       (c, og * kh * kw), None, kh, kw, 1, kh - 1 - pad,
                                       self.groups)


class QuantizedCSR:
    """A quantized weight on the device, for inference: CSR pattern (row_ptr, col_idx) and one
    uint8 (k <= 256) or uint16 code per nonzero into a float32 codebook of k values. The
    products read ``codebook[code]`` in the kernel (``qcsr_matmul_t``, ``qcsr_conv2d``), so the
    values take one or two bytes on the device instead of four."""

    def __init__(self, backend: Backend, row_ptr: Array, col_idx: Array, codes: Array,
                 codebook: Array, shape: Sequence[int], groups: int = 1) -> None:
        self.backend = backend
        self.row_ptr, self.col_idx, self.codes, self.codebook = row_ptr, col_idx, codes, codebook
        self.shape = (int(shape[0]), int(shape[1]))
        self.groups = int(groups)

    @classmethod
    def from_host(cls, backend: Backend, row_ptr: np.ndarray, col_idx: np.ndarray,
                  codes: np.ndarray, codebook: np.ndarray, shape: Sequence[int],
                  groups: int = 1) -> "QuantizedCSR":
        """Upload host arrays; the codes are narrowed to uint8 or uint16 by the codebook size
        (ShapeError past 65,536 entries or for a code past the codebook)."""
        k = int(np.asarray(codebook).size)
        codes = np.asarray(codes)
        if k > 1 << 16 or (codes.size and (int(codes.min()) < 0 or int(codes.max()) >= k)):
            raise ShapeError(f"quantized CSR: codes must index a codebook of at most 65,536 "
                             f"values, got {k} values and codes up to "
                             f"{int(codes.max()) if codes.size else 0}")
        dtype = np.uint8 if k <= 1 << 8 else np.uint16
        return cls(backend, backend.from_host(row_ptr, np.int32),
                   backend.from_host(col_idx, np.int32), backend.from_host(codes, dtype),
                   backend.from_host(np.asarray(codebook, np.float32)), shape, groups)

    @property
    def nnz(self) -> int:
        return int(self.codes.shape[0])

    def nbytes(self) -> int:
        """Device bytes held: row_ptr + col_idx + codes + codebook."""
        b = self.backend
        return sum(b.nbytes(a) for a in (self.row_ptr, self.col_idx, self.codes, self.codebook))

    def matmul_t(self, x: Array) -> Array:
        """x (G, M, C) @ W_g.T -> (G, M, R/G), values read through the codebook."""
        return self.backend.qcsr_matmul_t(x, self.row_ptr, self.col_idx, self.codes,
                                          self.codebook, self.shape)
