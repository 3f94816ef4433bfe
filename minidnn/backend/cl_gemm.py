"""OpenCL dense matrix products and permuted copies: the ``GemmOps`` group of OpenCLBackend.

``gemm`` runs one register-blocked kernel (a 6x16 block of C per work-item in float8 registers,
or 12x16 on CPUs with AVX-512's 32 registers) on op(A) and op(B) read in place through strides
or packed into panels when that pays; work-groups of row panels share a B panel in L1 while a
block of A panels stays in L2; K runs in cache-sized blocks, or in parallel slices summed in a
fixed order when there are few output blocks. Kernels and their design notes:
``cl_kernels/gemm.cl`` and ``cl_kernels/transpose.cl``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .cl_runtime import CLRuntime
from ..errors import DTypeError, ShapeError

NR = 16  # columns of C in the register block of one work-item (its rows: GemmOps.mr)


def _gemm_dims(a, b, trans_a: bool, trans_b: bool) -> tuple[int, int, int, int]:
    """(batch, m, n, k) of ``op(a) @ op(b)`` for 2-D or 3-D float32 operands."""
    if a.ndim not in (2, 3) or b.ndim not in (2, 3):
        raise ShapeError(f"gemm takes 2-D or 3-D operands, got {a.shape} and {b.shape}")
    sa = tuple(int(d) for d in (a.shape if a.ndim == 3 else (1,) + tuple(a.shape)))
    sb = tuple(int(d) for d in (b.shape if b.ndim == 3 else (1,) + tuple(b.shape)))
    m, ka = (sa[2], sa[1]) if trans_a else (sa[1], sa[2])
    kb, n = (sb[2], sb[1]) if trans_b else (sb[1], sb[2])
    if ka != kb or sb[0] != sa[0]:
        raise ShapeError(f"gemm: shapes {a.shape} (trans={trans_a}) and {b.shape} "
                         f"(trans={trans_b}) do not multiply")
    if a.dtype != np.float32 or b.dtype != np.float32:
        raise DTypeError(f"gemm computes in float32, got {a.dtype} and {b.dtype}")
    return sa[0], m, n, ka


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _coalesce(shape: Sequence[int], axes: Sequence[int]) -> tuple[list[int], list[int]]:
    """Output shape and input element strides per output axis of ``transpose(a, axes)`` with
    size-1 axes dropped and axes that stay adjacent (and in order) merged."""
    in_strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        in_strides[d] = in_strides[d + 1] * shape[d + 1]
    dims = [(shape[ax], in_strides[ax]) for ax in axes if shape[ax] != 1]
    merged: list[list[int]] = []
    for size, stride in dims:
        if merged and merged[-1][1] == stride * size:
            merged[-1] = [merged[-1][0] * size, stride]
        else:
            merged.append([size, stride])
    return [m[0] for m in merged], [m[1] for m in merged]


class GemmOps:
    """``gemm`` and ``transpose`` on a ``CLRuntime``."""

    provides = ("gemm", "transpose")

    # K range of one launch (cache blocking) and of one slice when K is split across work-items
    # because there are too few output blocks; slices get no shorter than gemm_min_split_k and
    # number at most gemm_max_split (the scratch holds one partial product per slice).
    gemm_k_block = 512
    gemm_min_split_k = 128
    gemm_max_split = 256
    # Pack op(A) into 6- or 12-row panels when op(B) has at least this many columns (the
    # packing pass is O(M*K), the product O(M*N*K)) and K at least gemm_pack_a_min_k.
    gemm_pack_a_min_n = 128
    gemm_pack_a_min_k = 64
    # Read a row-major op(B) in place (no packing pass) when op(A) has at most this many rows.
    gemm_direct_b_max_m = 256
    # CPU: row panels (of 6 or 12 rows) per row block of the product grid (_gemm_row_blocks)
    gemm_row_block = 16
    # 12-row register blocks (AVX-512 CPUs) only for K at least this long (see _gemm_rows)
    gemm_wide_min_k = 64

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime
        # Two layouts, chosen per runtime from A/B runs on Zen 4 (docs/results.md, issue 20,
        # "GEMM (session 6)"): on CPU runtimes other than Intel's (PoCL), row-blocked grids
        # and up to 12 rows of C per work-item where the device has 32 vector registers
        # (AVX-512: 16-float native vectors); on Intel's CPU runtime, on GPUs and without
        # AVX-512, 6 rows and work-groups of column panels (Intel's runtime ran short-K
        # products up to 1.6x slower with the row-blocked grid, and gained nothing from 12).
        intel = "intel" in str(self.rt.device.platform.vendor).lower()
        self.row_blocked = self.rt.is_cpu and not intel
        self.mr = 12 if self.row_blocked and self._wide_registers() else 6
        # Intel's CPU runtime: products with a wide op(B) or a long K take the row-blocked
        # grid and 12-row blocks too (AVX-512): (N, K) at least one of the (min N, min K) pairs
        # of blocked_shapes. With the plain grid each row panel streams a K block of all of
        # op(B) (MBs at VGG16's lowered layers: 512 x 4608) from L3. Interleaved A/B in one
        # process (issue 20, session 7, docs/results.md), GFLOP per CPU-second, with these
        # shapes blocked vs none: 1.14-1.47x at VGG16's products with N = 4608, 1.1-1.45x at
        # the lowered weight gradients with K >= 4096 (AlexNet conv2-5, VGG16 16x16, ResNet-32
        # stages 2-3); blocking every product instead ran the K <= 128 ones (the linears' dW,
        # VGG16's 2x2 dW, K = 64 dX) at 0.75-0.92x and 1024^3 at 0.95-1.09x.
        self.blocked_shapes: tuple[tuple[int, int], ...] = \
            ((2048, 256), (256, 4096)) if self.rt.is_cpu and intel else ()

    @staticmethod
    def _stem(mr: int) -> str:
        """The program of the gemm kernels with ``mr``-row blocks: gemm.cl or gemm@mr12."""
        return "gemm@mr12" if mr == 12 else "gemm"

    def _gemm_blocked(self, n: int, k: int) -> bool:
        """Whether a product with ``n`` columns and depth ``k`` runs on the row-blocked grid:
        on every CPU runtime but Intel's, and there at the shapes of ``blocked_shapes``."""
        return self.row_blocked or any(n >= mn and k >= mk for mn, mk in self.blocked_shapes)

    def _gemm_rows(self, m: int, k: int, row_stride: int = 0, blocked: bool = False) -> int:
        """Rows per register block for a product with ``m`` rows: 12 where the device uses
        them (``self.mr``), K is at least gemm_wide_min_k (with a short K the stores of C
        dominate and 12 rows measured slower) and they pad op(A) no more than 6-row panels do
        (or M is large), else 6. Also 6 when op(A) is read in place with rows ``row_stride`` floats
        apart (0: packed or transposed) and that is a multiple of 4 KiB: 12 such rows fall
        into one set of an 8-way L1 cache (1.5x slower than 6 rows on Zen 4 at K = 4096).
        ``blocked``: a row-blocked product on a runtime whose own blocks have 6 rows (Intel's,
        see blocked_shapes) may take 12 where the device has AVX-512."""
        mr = 12 if blocked and self.mr == 6 and self._wide_registers() else self.mr
        if mr == 6 or k < self.gemm_wide_min_k:
            return 6
        if row_stride and row_stride % 1024 == 0:
            return 6
        if m >= 96 or _cdiv(m, 12) * 12 == _cdiv(m, 6) * 6:
            return 12
        return 6

    def _wide_registers(self) -> bool:
        """Whether the device is a CPU with 16-float native vectors (AVX-512)."""
        return self.rt.is_cpu and int(self.rt.device.native_vector_width_float) >= 16

    # ------------------------------------------------------------------ tuning
    def _gemm_pack_a(self, m: int, n: int, k: int, trans_a: bool) -> bool:
        """Whether packing op(A) (an O(M*K) pass) pays off against the O(M*N*K) product."""
        return n >= self.gemm_pack_a_min_n and k >= self.gemm_pack_a_min_k

    def _gemm_direct_b(self, m: int, n: int, k: int, trans_b: bool) -> bool:
        """Whether op(B) is read in place (row-major, N >= 16, few row panels to amortize
        a packing pass over)."""
        return not trans_b and n >= NR and m <= self.gemm_direct_b_max_m

    def _gemm_local(self, kind: str, blocked: bool = False) -> tuple[int, ...]:
        """Fixed work-group sizes per kernel and device type (PoCL recompiles per new size);
        ``blocked``: the main kernel on the row-blocked grid."""
        if self.rt.is_cpu:
            main = (8, 1, 1) if blocked else (1, 8, 1)
            return {"main": main, "pack_a": (8, 1, 1), "pack_b": (4, 4, 1), "reduce": (64,),
                    "copy": (1, 8, 1), "tile": (1, 8, 1)}[kind]
        return {"main": (16, 4, 1), "pack_a": (64, 1, 1), "pack_b": (8, 8, 1), "reduce": (128,),
                "copy": (64, 1, 1), "tile": (8, 8, 1)}[kind]

    def _gemm_row_blocks(self, mp: int, blocked: bool) -> tuple[int, int]:
        """(row panels per row block, number of row blocks) of the product's grid.

        Row-blocked (``blocked``, see _gemm_blocked): a work-group is a column of row panels sharing
        one 16-column B panel, which stays in L1 while its work-items run one after the other;
        the row block's A panels (gemm_row_block x 6 or 12 rows x K block) stay in L2 while
        the groups walk the column panels. Otherwise all row panels form one block (the plain
        2-D grid: on a CPU, work-groups of 8 column panels sharing one A panel)."""
        step = self._gemm_local("main", blocked)[0]
        rb = min(self.gemm_row_block if blocked else mp, _cdiv(mp, step) * step)
        rb = _cdiv(rb, step) * step
        return rb, _cdiv(mp, rb)

    def _gemm_target_blocks(self) -> int:
        """How many output blocks (of 6 or 12 x 16) keep the device busy before K is split."""
        cu = int(self.rt.device.max_compute_units)
        return cu * (32 if self.rt.is_cpu else 256)

    # ------------------------------------------------------------------ gemm
    def gemm(self, a, b, trans_a: bool = False, trans_b: bool = False, out=None,
             alpha: float = 1.0, beta: float = 0.0):
        """Batched ``out = alpha * op(a) @ op(b) + beta * out`` (see ``Backend.gemm``)."""
        nb, m, n, k = _gemm_dims(a, b, trans_a, trans_b)
        shape = (m, n) if a.ndim == 2 and b.ndim == 2 else (nb, m, n)
        if out is None:
            out, beta = self.rt.empty(shape, np.float32), 0.0
        elif out.size != nb * m * n or out.dtype != np.float32:
            raise ShapeError(f"gemm: out is {out.dtype} {out.shape}, the product is {shape}")
        if out.size == 0:
            return out
        if k == 0:  # empty reduction: out = beta * out
            if beta == 0.0:
                self.rt.fill(out, 0.0)
            elif beta != 1.0:
                self._gemm_reduce(out, 0, out.size, out, 0.0, beta)
            return out
        if self._gemm_swap(m, n, trans_b) and (beta == 0.0 or m == 1):
            return self._gemm_transposed(a, b, trans_a, out, nb, m, n, k, alpha, beta)
        in_place = not trans_a and not self._gemm_pack_a(m, n, k, trans_a)
        blocked = self._gemm_blocked(n, k)
        mr = self._gemm_rows(m, k, k if in_place else 0, blocked)
        name, head = self._gemm_operands(a, b, trans_a, trans_b, nb, m, n, k, mr)
        return self._gemm_product(name, head, out, nb, m, n, k, mr, alpha, beta, blocked)

    def _gemm_swap(self, m: int, n: int, trans_b: bool) -> bool:
        """Whether to compute C^T = B op(A)^T instead of op(A) B^T: with few rows of A and a
        larger B^T (a linear layer's forward pass, X W^T), packing B^T into panels would cost
        about as much as the product, while B read in place as the row panels of the swapped
        product costs nothing, and C^T is small to transpose back."""
        return trans_b and m < n and m <= self.gemm_direct_b_max_m

    def _gemm_transposed(self, a, b, trans_a: bool, out, nb: int, m: int, n: int, k: int,
                         alpha: float, beta: float):
        """``out = alpha * op(a) @ b^T (+ beta * out)`` as C^T = b @ op(a)^T: b read in place as
        op(A) of the swapped product, C^T into scratch and transposed into ``out`` (beta must be
        0 then), or straight into ``out`` when m == 1 (C^T has the layout of C)."""
        blocked = self._gemm_blocked(m, k)
        mr = self._gemm_rows(n, k, k, blocked)
        name, head = self._gemm_operands(b, a, False, not trans_a, nb, n, m, k, mr,
                                         pack_a=False)
        if m == 1:
            return self._gemm_product(name, head, out, nb, n, m, k, mr, alpha, beta, blocked)
        ct = self.rt.scratch("gemm.t", nb * n * m)[: nb * n * m]
        self._gemm_product(name, head, ct, nb, n, m, k, mr, alpha, 0.0, blocked)
        self._permute(ct, (nb, n, m), (0, 2, 1), out)
        return out

    def _gemm_operands(self, a, b, trans_a: bool, trans_b: bool, nb: int, m: int, n: int,
                       k: int, mr: int, pack_a: bool = True) -> tuple[str, tuple]:
        """(kernel name, its leading arguments): op(A) and op(B) packed into panels or read
        in place, whichever pays (op(A) never packed with ``pack_a`` False)."""
        a3, b3 = a.data, b.data  # buffers: reshaping a pyopencl Array costs ~50 us
        i32 = np.int32
        mp, npn = _cdiv(m, mr), _cdiv(n, NR)
        # op(B): read in place when it is row-major and packing it would cost much next to
        # the product (few rows of A), else packed into 16-column panels
        if self._gemm_direct_b(m, n, k, trans_b):
            b_args = (b3, i32(k * n), i32(1))
        else:
            rs_b, cs_b = (1, k) if trans_b else (n, 1)
            bp = self.rt.scratch("gemm.b", nb * npn * k * NR)
            self.rt.launch(self._stem(mr), "gemm_pack_b", (npn, _cdiv(k, 8), nb),
                           self._gemm_local("pack_b"), i32(k), i32(n), b3, i32(k * n),
                           i32(rs_b), i32(cs_b), bp, i32(nb))
            b_args = (bp, i32(npn * k * NR), i32(0))
        # op(A): packed into mr-row panels when that pays, else read in place through strides
        rs_a, cs_a = (1, m) if trans_a else (k, 1)
        if pack_a and self._gemm_pack_a(m, n, k, trans_a):
            ap = self.rt.scratch("gemm.a", nb * mp * k * mr)
            grid_a = (mp, _cdiv(k, 8), nb) if trans_a else (_cdiv(k, 8), mp, nb)
            self.rt.launch(self._stem(mr), "gemm_pack_a", grid_a, self._gemm_local("pack_a"),
                           i32(m), i32(k), a3, i32(m * k), i32(rs_a), i32(cs_a), ap, i32(nb))
            name, a_args = "gemm_6x16_packed", (ap,)
        else:
            name, a_args = "gemm_6x16", (a3, i32(m * k), i32(rs_a), i32(cs_a))
        return name, (i32(m), i32(n), i32(k), i32(nb), *a_args, *b_args)

    def _gemm_product(self, name: str, head: tuple, out, nb: int, m: int, n: int, k: int,
                      mr: int, alpha: float, beta: float, blocked: bool):
        """Run the product kernel into ``out``.

        Few output blocks and a long K: K slices run side by side into a scratch buffer, then
        one reduction in slice order. Otherwise K is cut into blocks run one after the other
        (each adds into C), which keeps the B panels of one block in cache."""
        i32 = np.int32
        mp, npn = _cdiv(m, mr), _cdiv(n, NR)
        rb, nblk = self._gemm_row_blocks(mp, blocked)
        blocks = nb * mp * npn
        if blocks < self._gemm_target_blocks() and k >= 2 * self.gemm_min_split_k:
            want = _cdiv(self._gemm_target_blocks(), blocks)
            kc = max(self.gemm_min_split_k, min(self.gemm_k_block, _cdiv(k, want)),
                     _cdiv(k, self.gemm_max_split))
            nsplit = _cdiv(k, kc)
            c = self.rt.scratch("gemm.p", nsplit * out.size)
            self.rt.launch(self._stem(mr), name, (rb, npn, nblk * nsplit * nb),
                           self._gemm_local("main", blocked), *head, c, i32(n), i32(m * n),
                           i32(out.size), i32(0), i32(k), i32(kc), i32(rb), np.float32(1.0),
                           np.float32(0.0))
            self._gemm_reduce(c, nsplit, out.size, out, alpha, beta)
            return out
        kc = _cdiv(k, _cdiv(k, self.gemm_k_block))
        for k0 in range(0, k, kc):
            self.rt.launch(self._stem(mr), name, (rb, npn, nblk * nb),
                           self._gemm_local("main", blocked),
                           *head, out, i32(n), i32(m * n), i32(0), i32(k0), i32(min(k, k0 + kc)),
                           i32(kc), i32(rb), np.float32(alpha),
                           np.float32(beta if k0 == 0 else 1.0))
        return out

    def _gemm_reduce(self, partial, nsplit: int, size: int, out, alpha: float,
                     beta: float) -> None:
        """out = alpha * (sum of ``nsplit`` slices of ``partial``) + beta * out."""
        self.rt.launch("gemm", "gemm_splitk_reduce", (_cdiv(size, 8),),
                       self._gemm_local("reduce"), partial, np.int32(nsplit), np.int32(size),
                       out, np.float32(alpha), np.float32(beta))

    # ------------------------------------------------------------------ transpose
    def transpose(self, a, axes: Sequence[int]):
        """Contiguous ``np.transpose(a, axes)`` for up to 4-D (any permutation)."""
        axes = [int(x) % max(a.ndim, 1) for x in axes]
        if sorted(axes) != list(range(a.ndim)):
            raise ShapeError(f"transpose: axes {axes} do not permute {a.ndim} dimensions")
        if a.ndim > 4:
            raise ShapeError(f"transpose supports up to 4-D, got {a.ndim}-D")
        out = self.rt.empty(tuple(a.shape[ax] for ax in axes), a.dtype)
        if a.size == 0:
            return out
        self._permute(a, tuple(int(s) for s in a.shape), axes, out)
        return out

    def _permute(self, a, shape: tuple[int, ...], axes: Sequence[int], out) -> None:
        """``out[...] = np.transpose(a.reshape(shape), axes)``, ``a`` and ``out`` contiguous
        (up to 4-D; 4-byte elements unless nothing moves)."""
        dims, strides = _coalesce(shape, axes)
        if len(dims) <= 1:  # the permutation moves nothing
            self.rt.copy_into(out, a)
            return
        if np.dtype(a.dtype).itemsize != 4:
            raise DTypeError(f"transpose supports 4-byte element types, got {a.dtype}")
        pad = 4 - len(dims)
        dims, strides = [1] * pad + dims, [0] * pad + strides
        i32 = np.int32
        if strides[3] == 1:  # innermost axis stays innermost: copy rows of dims[3]
            self.rt.launch("transpose", "transpose_rows",
                           (_cdiv(dims[3], 64), dims[2], dims[0] * dims[1]),
                           self._gemm_local("copy"), a, out, *(i32(d) for d in dims),
                           *(i32(s) for s in strides))
        else:  # 8x8 tiles between the output's last axis and the input's last axis
            u = strides.index(1)
            o0, o1 = [d for d in range(3) if d != u]
            ostr = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1]
            self.rt.launch("transpose", "transpose_tiles",
                           (_cdiv(dims[3], 8), _cdiv(dims[u], 8), dims[o0] * dims[o1]),
                           self._gemm_local("tile"), a, out, i32(dims[3]), i32(strides[3]),
                           i32(dims[u]), i32(ostr[u]), i32(dims[o1]), i32(dims[o0] * dims[o1]),
                           i32(strides[o0]), i32(ostr[o0]), i32(strides[o1]), i32(ostr[o1]))
