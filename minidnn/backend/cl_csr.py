"""OpenCL CSR primitives, the ``CSROps`` group of OpenCLBackend: kernels in ``cl_kernels/csr.cl``
and ``csr_conv.cl``.

Compaction and the transpose run on the device; only the nonzero count of ``csr_from_dense`` is
read back. Each product picks a "panel" kernel (dense operand repacked so one nonzero is one
aligned 64-byte read covering 16 rows) or a "gather" kernel (no repacking) from the shapes;
see the top of ``csr.cl``. Repacked panels and partial sums live in reused scratch buffers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Array, check_conv_epilogue, check_flip_rows, conv_output_size
from .cl_runtime import CLRuntime
from .devices import cl
from ..errors import DTypeError, ShapeError

STEM = "csr"
MBLK = 16                  # rows m per panel tile (MBLK in csr.cl)
# The panel kernels repack the dense operand (cost ~ M*K); they pay off once the nonzeros per
# group are a few times K (measured crossovers on PoCL, 2 cores: ~5-8 for SpMM, ~0.5 for SDDMM).
SPMM_PANEL_NNZ_PER_K = 6.0
SPMM_SCALAR_MAX_M = 3  # up to this many rows m, one work-item per output has the least overhead
SDDMM_PANEL_NNZ_PER_K = 0.5
SDDMM_BLOCK_FLOATS = 1 << 16  # SDDMM: an x block of K * B floats should stay in L2
PARTIAL_BUDGET = 1 << 22   # floats of SDDMM partial sums over chunks of M (16 MiB)
CONV_TILE = (8, 8)         # output rows x pixels per work-item of csr_conv2d (csr_conv.cl)

i32 = np.int32


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _value_args(values: Array, codebook: Array | None) -> tuple[tuple, str]:
    """(the value arguments of a product kernel, its program): float values from ``csr.cl``,
    or uint8/uint16 codes + float32 codebook from the ``csr@q8`` / ``csr@q16`` variant."""
    if codebook is None:
        return (values,), STEM
    dt = np.dtype(values.dtype)
    if dt not in (np.dtype(np.uint8), np.dtype(np.uint16)) or codebook.dtype != np.float32:
        raise DTypeError(f"quantized CSR needs uint8/uint16 codes and a float32 codebook, got "
                         f"{dt} and {codebook.dtype}")
    return (values, codebook), f"{STEM}@q{8 * dt.itemsize}"


def _mostly_border(oh: int, ow: int, pad: int) -> bool:
    """Whether most 8x8 output tiles of csr_conv2d would touch the zero padding and take its
    slow, checked path (small outputs, wide padding: the input gradient of a convolution without
    padding is a "full" one with kh-1): those get a padded copy of the input first."""
    th, tw = _cdiv(oh, CONV_TILE[0]), _cdiv(ow, CONV_TILE[1])
    inner_h = max(0, th - 2 * _cdiv(pad, CONV_TILE[0]) - (oh % CONV_TILE[0] != 0))
    inner_w = max(0, tw - 2 * _cdiv(pad, CONV_TILE[1]) - (ow % CONV_TILE[1] != 0))
    return 2 * inner_h * inner_w < th * tw


def _as3d_shape(a: Array) -> tuple[int, int, int]:
    """(G, M, K) of a 3-D operand, (1, M, K) of a 2-D one."""
    if len(a.shape) == 2:
        return 1, int(a.shape[0]), int(a.shape[1])
    if len(a.shape) != 3:
        raise ShapeError(f"expected a (G, M, K) or (M, K) operand, got shape {tuple(a.shape)}")
    return int(a.shape[0]), int(a.shape[1]), int(a.shape[2])


class CSROps:
    """CSR compaction, transpose and the sparse products (dense x CSR^T, dense x CSR, SDDMM,
    the direct sparse convolution) on a ``CLRuntime``."""

    provides = ("csr_from_dense", "csr_to_dense", "csr_transpose", "gather", "csr_matmul_t",
                "csr_matmul", "csr_sddmm", "csr_conv_taps", "csr_flip_transpose", "csr_conv2d",
                "csr_conv_wgrad", "qcsr_matmul_t",
                "qcsr_conv2d")

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime

    # ------------------------------------------------------------------ launching
    def _csr_wg(self) -> int:
        """Work-group size of the 1-D CSR launches (fixed: PoCL recompiles per local size)."""
        return 8 if self.rt.is_cpu else 64

    def _csr_items(self) -> int:
        """Work-items wanted in flight: a few dozen per core on a CPU, thousands on a GPU."""
        per_unit = 64 if self.rt.is_cpu else 2048
        return per_unit * int(self.rt.device.max_compute_units)

    def _csr_launch(self, name: str, global_size: Sequence[int], local_size: Sequence[int],
                    *args, stem: str = STEM) -> None:
        self.rt.launch(stem, name, global_size, local_size, *args)

    def _csr_launch1d(self, name: str, n: int, *args, stem: str = STEM) -> None:
        self._csr_launch(name, (max(1, n),), (self._csr_group_size(name, self._csr_wg(), stem),),
                         *args, stem=stem)

    def _csr_group_size(self, name: str, want: int, stem: str = STEM) -> int:
        """``want`` capped by what the device allows for this kernel (small GPUs)."""
        return self.rt.group_size(stem, name, want)

    # ------------------------------------------------------------------ helpers
    def _csr_scratch(self, role: str, n: int) -> Array:
        """A reused flat float32 buffer of >= n elements (see ``CLRuntime.scratch``)."""
        return self.rt.scratch(f"csr.{role}", n)

    def free_workspace(self) -> None:
        """Release the scratch buffers kept between sparse products."""
        self.rt.free_scratch("csr.")

    def _csr_scan(self, a: Array, n: int) -> None:
        """In place exclusive scan of the int32 a[0..n) into a[0..n] (one work-group)."""
        wg = self._csr_group_size("csr_scan_exclusive", 16 if self.rt.is_cpu else 256)
        self._csr_launch("csr_scan_exclusive", (wg,), (wg,), a, i32(n), cl.LocalMemory(4 * wg))

    def _csr_panel(self, x: Array, g: int, m: int, k: int, block: int, role: str
                   ) -> tuple[Array, int]:
        """Repack (G, M, K) into a blocked panel (G, nblk, K, block), zero-padded rows; returns
        the scratch buffer and nblk."""
        nblk = _cdiv(m, block)
        p = self._csr_scratch(role, g * nblk * k * block)
        nkb, nmb = _cdiv(k, 8), nblk * block // 8
        n = g * nkb * nmb
        self._csr_launch1d("csr_to_panel", n, x, i32(m), i32(k), i32(block), i32(nkb), i32(nmb),
                           i32(n), p)
        return p, nblk

    def _csr_spmm(self, x: Array, row_ptr: Array, col_idx: Array, values: Array,
                  n_out: int, codebook: Array | None = None) -> Array:
        """y[g] = x[g] @ S_g^T for a CSR S of G*n_out rows over x's K columns: (G, M, n_out),
        2-D (M, n_out) for a 2-D x. With ``codebook``, ``values`` are uint8/uint16 codes and
        each value is ``codebook[code]`` (the q8/q16 kernel variants)."""
        vargs, stem = _value_args(values, codebook)
        g, m, k = _as3d_shape(x)
        y = self.rt.empty((g, m, n_out) if len(x.shape) == 3 else (m, n_out))
        nnz = int(col_idx.size)
        if y.size == 0:
            return y
        if nnz == 0 or k == 0:
            self.rt.fill(y, 0.0)
            return y
        if m <= SPMM_SCALAR_MAX_M:
            wg = self._csr_group_size("csr_spmm_scalar", self._csr_wg(), stem)
            self._csr_launch("csr_spmm_scalar", (n_out, m, g), (wg, 1, 1), x,
                             row_ptr, col_idx, *vargs, i32(g), i32(m), i32(k), i32(n_out), y,
                             stem=stem)
            return y
        panel = m >= MBLK and nnz >= SPMM_PANEL_NNZ_PER_K * g * k
        rows = MBLK if panel else 8
        nmb = _cdiv(m, rows)
        noc = min(n_out, max(1, _cdiv(self._csr_items(), nmb * g)))
        ochunk = _cdiv(n_out, noc)
        noc = _cdiv(n_out, ochunk)
        n = g * nmb * noc
        if panel:
            src, _ = self._csr_panel(x, g, m, k, MBLK, "panel")
            name = "csr_spmm_panel"
        else:
            src, name = x, "csr_spmm_gather"
        self._csr_launch1d(name, n, src, row_ptr, col_idx, *vargs, i32(m), i32(k), i32(n_out),
                           i32(ochunk), i32(noc), i32(nmb), i32(n), y, stem=stem)
        return y

    # ------------------------------------------------------------------ dense <-> CSR
    def csr_from_dense(self, w: Array) -> tuple[Array, Array, Array]:
        """Device-side compaction (count, scan, fill); reads back only the nonzero count."""
        if len(w.shape) != 2 or w.dtype != np.float32:
            raise ShapeError(f"csr_from_dense needs a 2-D float32 matrix, got {w.dtype} "
                             f"{tuple(w.shape)}")
        r, c = int(w.shape[0]), int(w.shape[1])
        row_ptr = self.rt.zeros((r + 1,), np.int32)
        if r == 0 or c == 0:
            return row_ptr, self.rt.empty((0,), np.int32), self.rt.empty((0,))
        self._csr_launch1d("csr_count_rows", r, w, i32(r), i32(c), row_ptr)
        self._csr_scan(row_ptr, r)
        nnz = self.rt.read_int(row_ptr, r)
        col_idx, values = self.rt.empty((nnz,), np.int32), self.rt.empty((nnz,))
        if nnz:
            self._csr_launch1d("csr_fill_rows", r, w, i32(r), i32(c), row_ptr, col_idx, values)
        return row_ptr, col_idx, values

    def csr_to_dense(self, row_ptr: Array, col_idx: Array, values: Array,
                     shape: Sequence[int]) -> Array:
        """Scatter CSR into a zeroed dense (R, C) matrix."""
        r, c = int(shape[0]), int(shape[1])
        dense = self.rt.zeros((r, c))
        if values.size:
            self._csr_launch1d("csr_scatter_rows", r, row_ptr, col_idx, values, i32(r), i32(c),
                               dense)
        return dense

    def gather(self, src: Array, index: Array, out: Array | None = None) -> Array:
        """out[i] = src[index[i]] for 4-byte elements (float32 or int32)."""
        if np.dtype(src.dtype).itemsize != 4 or index.dtype != np.int32:
            raise DTypeError(f"gather needs 4-byte elements and int32 indices, got {src.dtype} "
                            f"and {index.dtype}")
        if out is None:
            out = self.rt.empty(index.shape, src.dtype)
        if index.size:
            self._csr_launch1d("csr_gather", index.size, src, index, i32(index.size), out)
        return out

    def csr_transpose(self, row_ptr: Array, col_idx: Array, values: Array, shape: Sequence[int],
                      groups: int = 1) -> tuple[Array, Array, Array, Array]:
        """Per-group transpose (G*K rows of O/G columns) + perm, on the device: int atomic
        counts, a scan, then a stable fill, so the result equals the NumPy reference exactly."""
        o, k = int(shape[0]), int(shape[1])
        if groups < 1 or o % groups:
            raise ShapeError(f"{o} rows do not split into {groups} groups")
        og, nnz = o // groups, int(col_idx.size)
        t_row_ptr = self.rt.zeros((groups * k + 1,), np.int32)
        t_col_idx, t_values = self.rt.empty((nnz,), np.int32), self.rt.empty((nnz,))
        perm = self.rt.empty((nnz,), np.int32)
        if nnz == 0:
            return t_row_ptr, t_col_idx, t_values, perm
        self._csr_launch1d("csr_count_cols", o, row_ptr, col_idx, i32(o), i32(k), i32(og),
                           t_row_ptr)
        self._csr_scan(t_row_ptr, groups * k)
        cursor = self.rt.copy(t_row_ptr)
        wg = self._csr_group_size("csr_fill_cols", 16 if self.rt.is_cpu else 256)
        self._csr_launch("csr_fill_cols", (groups * wg,), (wg,), row_ptr, col_idx, values,
                         i32(k), i32(og), cursor, t_col_idx, t_values, perm)
        return t_row_ptr, t_col_idx, t_values, perm

    # ------------------------------------------------------------------ products
    def csr_matmul_t(self, x: Array, row_ptr: Array, col_idx: Array, values: Array,
                     shape: Sequence[int]) -> Array:
        """Forward y[g] = x[g] @ W_g^T: x (G, M, K) -> (G, M, O/G) (2-D in, 2-D out)."""
        g, _, k = _as3d_shape(x)
        o = int(shape[0])
        if int(shape[1]) != k or o % g:
            raise ShapeError(f"csr_matmul_t: x {tuple(x.shape)} does not fit W {tuple(shape)}")
        return self._csr_spmm(x, row_ptr, col_idx, values, o // g)

    def csr_matmul(self, dy: Array, t_row_ptr: Array, t_col_idx: Array, t_values: Array,
                   shape: Sequence[int]) -> Array:
        """Backward data dx[g] = dy[g] @ W_g from the transposed CSR: (G, M, O/G) -> (G, M, K)."""
        g, _, og = _as3d_shape(dy)
        o, k = int(shape[0]), int(shape[1])
        if og * g != o:
            raise ShapeError(f"csr_matmul: dy {tuple(dy.shape)} does not fit W {tuple(shape)}")
        return self._csr_spmm(dy, t_row_ptr, t_col_idx, t_values, k)

    def csr_sddmm(self, dy: Array, x: Array, row_ptr: Array, col_idx: Array,
                  shape: Sequence[int], out: Array, accumulate: bool = True) -> None:
        """out[e] (+)= sum_m dy[g, m, o] * x[g, m, k] at each nonzero (o, k): dW on the pattern."""
        g, m, og = _as3d_shape(dy)
        gx, mx, k = _as3d_shape(x)
        o = int(shape[0])
        if (gx, mx) != (g, m) or og * g != o or k != int(shape[1]):
            raise ShapeError(f"csr_sddmm: dy {tuple(dy.shape)}, x {tuple(x.shape)} do not fit "
                             f"W {tuple(shape)}")
        nnz = int(col_idx.size)
        if nnz == 0:
            return
        if m == 0:
            if not accumulate:
                self.rt.fill(out, 0.0)
            return
        if m >= MBLK and nnz >= SDDMM_PANEL_NNZ_PER_K * g * k:
            # blocks of B rows: an x block of K*B floats stays in cache; partial sums bounded
            block = max(MBLK, min(_cdiv(m, MBLK) * MBLK, SDDMM_BLOCK_FLOATS // k // MBLK * MBLK))
            nch = max(1, min(_cdiv(m, block), PARTIAL_BUDGET // nnz))
            block = _cdiv(_cdiv(m, nch), MBLK) * MBLK
            dp, nch = self._csr_panel(dy, g, m, og, block, "panel")
            xp, _ = self._csr_panel(x, g, m, k, block, "panel2")
            partial = self._csr_scratch("partial", nch * nnz) if nch > 1 else out
            self._csr_launch1d("csr_sddmm_panel", o * nch, dp, xp, row_ptr, col_idx, i32(o),
                               i32(k), i32(og), i32(block), i32(nch), i32(nnz), i32(accumulate),
                               partial, out)
        else:
            nch = max(1, min(_cdiv(self._csr_items(), o), _cdiv(m, 64), PARTIAL_BUDGET // nnz))
            chunk = _cdiv(m, nch)
            nch = _cdiv(m, chunk)
            partial = self._csr_scratch("partial", nch * nnz) if nch > 1 else out
            self._csr_launch1d("csr_sddmm_gather", o * nch, dy, x, row_ptr, col_idx, i32(o),
                               i32(m), i32(k), i32(og), i32(chunk), i32(nch), i32(nnz),
                               i32(accumulate), partial, out)
        if nch > 1:
            self._csr_launch1d("csr_sddmm_reduce", nnz, partial, i32(nch), i32(nnz),
                               i32(accumulate), out)

    # ------------------------------------------------------------------ direct sparse conv
    def csr_conv_taps(self, col_idx: Array, kh: int, kw: int) -> Array:
        """Packed (cl, ky, kx) of every nonzero, decoded once per filter bank on the device."""
        taps = self.rt.empty(col_idx.shape, np.int32)
        if col_idx.size:
            self.rt.launch("csr_conv", "csr_conv_taps", (int(col_idx.size),), None, col_idx,
                           i32(col_idx.size), i32(kh), i32(kw), taps)
        return taps

    def csr_flip_transpose(self, t_row_ptr: Array, t_col_idx: Array, kh: int, kw: int
                           ) -> tuple[Array, Array]:
        """(row_ptr, col_idx) of the flipped transposed filter bank, from the per-group
        transpose (see csr_conv.cl): the input gradient's filters, values ``t_values``."""
        rows = check_flip_rows(t_row_ptr, kh, kw)
        row_ptr = self.rt.empty((rows // (int(kh) * int(kw)) + 1,), np.int32)
        col_idx = self.rt.empty(t_col_idx.shape, np.int32)
        self.rt.launch("csr_conv", "csr_flip_transpose", (rows + 1,), None, t_row_ptr,
                       t_col_idx, i32(rows), i32(kh), i32(kw), row_ptr, col_idx)
        return row_ptr, col_idx

    def csr_conv2d(self, x: Array, row_ptr: Array, taps: Array, values: Array,
                   shape: Sequence[int], bias: Array | None, kh: int, kw: int, stride: int,
                   pad: int, groups: int, residual: Array | None = None, relu: bool = False,
                   pool: int = 1) -> Array:
        """Direct sparse convolution into NCHW (see csr_conv.cl): no im2row, no transpose; the
        epilogue (+ residual, ReLU, 2x2 max pooling) in the same kernel."""
        return self._conv2d(x, row_ptr, taps, values, None, shape, bias, kh, kw, stride, pad,
                            groups, residual, relu, pool)

    def _conv2d(self, x: Array, row_ptr: Array, taps: Array, values: Array,
                codebook: Array | None, shape: Sequence[int], bias: Array | None, kh: int,
                kw: int, stride: int, pad: int, groups: int, residual: Array | None,
                relu: bool, pool: int) -> Array:
        """``csr_conv2d``; with ``codebook``, ``values`` are the codes of a quantized filter
        bank, read by the q8/q16 variant of csr_conv.cl."""
        check_conv_epilogue(pool)
        vargs, stem = _value_args(values, codebook)
        stem = stem.replace(STEM, "csr_conv", 1)
        n, c, h, w = (int(d) for d in x.shape)
        o = int(shape[0])
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
        if residual is not None and tuple(residual.shape) != (n, o, oh, ow):
            raise ShapeError(f"csr_conv2d: residual {tuple(residual.shape)} is not shaped like "
                             f"the output {(n, o, oh, ow)}")
        y = self.rt.empty((n, o, oh // pool, ow // pool))
        if y.size == 0:
            return y
        if stride == 1 and pad > 0 and _mostly_border(oh, ow, pad):
            x, h, w, pad = self._pad_for_tiles(x, oh, ow, kh, kw, pad)
        offs = self._tap_offsets(taps, h, w)
        blocks = _cdiv(oh, CONV_TILE[0]) * _cdiv(ow, CONV_TILE[1])
        # a work-group holds the tiles of one channel for a few images: on PoCL each group has
        # a fixed cost, so groups of 1-2 work-items (small images) would be overhead-bound
        want = 16 if self.rt.is_cpu else 64
        l0 = min(blocks, want)
        local = (l0, 1, min(n, max(1, want // l0)))
        self.rt.launch(stem, "csr_conv2d", (blocks, o, n), local, x, row_ptr, taps, offs, *vargs,
                       bias if bias is not None else vargs[-1], i32(bias is not None), y, i32(c),
                       i32(h), i32(w), i32(o), i32(oh), i32(ow), i32(kh), i32(kw), i32(stride),
                       i32(pad), i32(groups), i32(n), residual if residual is not None else x,
                       i32(residual is not None), i32(bool(relu)), i32(pool))
        return y

    def _tap_offsets(self, taps: Array, h: int, w: int) -> Array:
        """Where each tap reads in an input of h x w planes (csr_conv_offsets), for this call."""
        nnz = int(taps.size)
        offs = self.rt.empty((max(nnz, 1),), np.int32)
        if nnz:
            self.rt.launch("csr_conv", "csr_conv_offsets", (nnz,), None, taps, i32(nnz),
                           i32(h * w), i32(w), offs)
        return offs

    def csr_conv_wgrad(self, dy: Array, x: Array, row_ptr: Array, taps: Array,
                       shape: Sequence[int], kh: int, kw: int, stride: int, pad: int,
                       groups: int, out: Array, accumulate: bool = True) -> None:
        """out[e] (+)= the weight gradient of csr_conv2d at each nonzero, from NCHW x and dY
        (see csr_conv.cl): no im2row rows, no transposed dY."""
        n, c, h, w = (int(d) for d in x.shape)
        o, nnz = int(shape[0]), int(taps.size)
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
        if tuple(dy.shape) != (n, o, oh, ow) or c % groups or o % groups:
            raise ShapeError(f"csr_conv_wgrad: dy {tuple(dy.shape)} does not fit x "
                             f"{tuple(x.shape)} and W {tuple(shape)}")
        if nnz == 0:
            return
        nch = max(1, min(n, _cdiv(self._csr_items(), o), PARTIAL_BUDGET // nnz))
        chunk = _cdiv(n, nch)
        nch = _cdiv(n, chunk)
        partial = self._csr_scratch("partial", nch * nnz) if nch > 1 else out
        if stride == 1:   # the 8-nonzero kernel, on x padded first when the convolution pads
            if pad:
                x = self._pad_planes(x, h + 2 * pad, w + 2 * pad, pad)
                h, w = h + 2 * pad, w + 2 * pad
            self._csr_launch1d("csr_conv_wgrad8", o * nch, dy, x, row_ptr, taps, i32(n),
                               i32(c), i32(h), i32(w), i32(o), i32(oh), i32(ow), i32(groups),
                               i32(chunk), i32(nch), i32(nnz), i32(accumulate), partial, out,
                               stem="csr_conv")
        else:
            self._csr_launch1d("csr_conv_wgrad", o * nch, dy, x, row_ptr, taps, i32(n), i32(c),
                               i32(h), i32(w), i32(o), i32(oh), i32(ow), i32(stride), i32(pad),
                               i32(groups), i32(chunk), i32(nch), i32(nnz), i32(accumulate),
                               partial, out, stem="csr_conv")
        if nch > 1:
            self._csr_launch1d("csr_sddmm_reduce", nnz, partial, i32(nch), i32(nnz),
                               i32(accumulate), out)

    def _pad_for_tiles(self, x: Array, oh: int, ow: int, kh: int, kw: int, pad: int
                       ) -> tuple[Array, int, int, int]:
        """x zero-padded by ``pad`` and on to whole output tiles (stride 1), so every tile of
        csr_conv2d reads inside it: (padded x, its H, its W, the padding left = 0)."""
        hp = _cdiv(oh, CONV_TILE[0]) * CONV_TILE[0] + kh - 1
        wp = _cdiv(ow, CONV_TILE[1]) * CONV_TILE[1] + kw - 1
        return self._pad_planes(x, hp, wp, pad), hp, wp, 0

    def _pad_planes(self, x: Array, hp: int, wp: int, pad: int) -> Array:
        """x (N, C, H, W) copied into zeros (N, C, hp, wp) at row and column ``pad``."""
        n, c, h, w = (int(d) for d in x.shape)
        out = self.rt.empty((n, c, hp, wp))
        self.rt.launch("csr_conv", "csr_pad_planes", (n * c * hp,), None, x, i32(n * c), i32(h),
                       i32(w), i32(hp), i32(wp), i32(pad), i32(pad), out)
        return out

    # ------------------------------------------------------------------ quantized weights
    def qcsr_matmul_t(self, x: Array, row_ptr: Array, col_idx: Array, codes: Array,
                      codebook: Array, shape: Sequence[int]) -> Array:
        """``csr_matmul_t`` with values ``codebook[codes]`` read in the kernel (q8/q16)."""
        g, _, k = _as3d_shape(x)
        o = int(shape[0])
        if int(shape[1]) != k or o % g:
            raise ShapeError(f"qcsr_matmul_t: x {tuple(x.shape)} does not fit W {tuple(shape)}")
        return self._csr_spmm(x, row_ptr, col_idx, codes, o // g, codebook)

    def qcsr_conv2d(self, x: Array, row_ptr: Array, taps: Array, codes: Array, codebook: Array,
                    shape: Sequence[int], bias: Array | None, kh: int, kw: int, stride: int,
                    pad: int, groups: int, residual: Array | None = None, relu: bool = False,
                    pool: int = 1) -> Array:
        """``csr_conv2d`` with values ``codebook[codes]`` read in the kernel (q8/q16)."""
        return self._conv2d(x, row_ptr, taps, codes, codebook, shape, bias, kh, kw, stride, pad,
                            groups, residual, relu, pool)
