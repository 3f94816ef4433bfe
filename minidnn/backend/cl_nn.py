"""OpenCL nn primitives, the ``NNOps`` group of OpenCLBackend: conv lowering, elementwise,
pooling, loss, batch norm and reductions, each a kernel from ``cl_kernels/``.

Every primitive only enqueues work (no ``finish()``, no host copies); scalar results stay on the
device as 1-element arrays. Reductions use fixed-order work-group trees, so they are
deterministic. Kernel files: im2row.cl, elementwise.cl, pooling.cl, softmax.cl, batchnorm.cl,
reduce.cl (helpers in nn.h).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Array, conv_output_size
from .cl_runtime import CLRuntime
from ..errors import DTypeError

_f32, _i32, _u32 = np.float32, np.int32, np.uint32

# Fixed work-group sizes (PoCL compiles a kernel again for each new local size).
EW_LS = 64               # elementwise / optimizer kernels (each work-item does 8 floats)
TILE_2D = (8, 8)         # (run of a row or plane, row or plane) launches: bias, BN eval
TILE_3D = (8, 8, 1)      # (w, h, plane) launches: the per-pixel row2im gather
ROW_LS = (4, 16)         # (output row, image or plane) launches: im2row, pooling forward
PLANE_LS = 16            # one work-item per (n, c) plane: pooling adjoints
IMAGE_LS = 4             # one work-item per image: row2im on CPUs
SUM_CHUNK = 16384        # floats per work-group in stage 1 of sum / count_zeros
CONST_KW = (1, 3, 5, 7)  # kernel widths im2row.cl compiles with a constant width
BN_TILE_FLOATS = 4096    # train-mode batch norm: floats per (planes of one channel) tile
BN_MIN_TILES = 64        # ... and at least this many tiles in all where the tensor allows
BN_TILE_LS = (8, 1)      # (tile, channel) launches of the batch-norm statistics
BN_PLANE_LS = (8, 1)     # (channel, image) launches of its elementwise passes


def _ncp(x: Array, channels: int) -> tuple[int, int, int]:
    """(N, C, P) of x viewed as batch x channels x the rest (P = 1 for 2-D x)."""
    n = int(x.shape[0])
    p = int(x.size) // max(n * channels, 1)
    return n, channels, p


def _check_labels(labels: Array) -> None:
    """The kernels read labels as int32 (``from_host`` keeps an int64 host array's dtype)."""
    if np.dtype(labels.dtype) != np.int32:
        raise DTypeError(f"labels must be an int32 device array, got {labels.dtype}")


def launch_floats8(rt: CLRuntime, stem: str, name: str, n: int, *args) -> None:
    """Launch a kernel that handles eight consecutive floats per work-item over n floats
    (global size ceil(n / 8), work-groups of EW_LS); nothing to do for n = 0."""
    if n:
        rt.launch(stem, name, ((n + 7) // 8,), (EW_LS,), *args)


class NNOps:
    """The non-GEMM, non-sparse, non-optimizer primitives of ``Backend`` on a ``CLRuntime``
    (see the contracts in base.py)."""

    provides = ("im2row", "row2im", "add_channel_bias", "channel_sum", "relu", "relu_backward",
                "add", "axpy", "mul", "scale", "div_sqrt", "dropout_mask", "maxpool2d",
                "maxpool2d_backward", "avgpool2d", "avgpool2d_backward",
                "softmax_cross_entropy", "count_correct", "batchnorm_train", "batchnorm_eval",
                "batchnorm_backward", "batchnorm_relu_train", "batchnorm_relu_backward", "add_relu",
                "sum",
                "count_zeros", "l1_reweight",
                "soft_threshold_scaled", "hard_threshold", "mask_zeros", "group_soft_threshold")

    def __init__(self, runtime: CLRuntime) -> None:
        self.rt = runtime

    # ------------------------------------------------------------------ helpers
    def _lanes_log2(self, n: int, p: int) -> int:
        """log2 of the lanes sharing one plane in the per-channel kernels: enough lanes to use
        the work-group when planes are few, while each lane keeps a run of >= 8 floats."""
        lp, ls = 1, self.rt.reduction_size
        while n * lp < ls and p >= 16 * lp:
            lp *= 2
        return lp.bit_length() - 1

    def _ew(self, name: str, n: int, *args) -> None:
        """Launch an elementwise float8 kernel of elementwise.cl over n floats."""
        launch_floats8(self.rt, "elementwise", name, n, *args)

    def _like(self, a: Array, out: Array | None) -> Array:
        """``out``, or a new float32 array shaped like ``a``."""
        return self.rt.empty(a.shape, np.float32) if out is None else out

    # ------------------------------------------------------------ convolution lowering
    def _conv_args(self, x_shape: Sequence[int], kh: int, kw: int, stride: int, pad: int,
                   groups: int) -> tuple[str, tuple, int, int]:
        """Kernel-name suffix (constant kernel width when compiled for it) and int args."""
        n, c, h, w = (int(s) for s in x_shape)
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
        suffix = f"k{kw}" if kw in CONST_KW else "kany"
        args = tuple(map(_i32, (c, h, w, kh, kw, stride, pad, oh, ow, groups, n)))
        return suffix, args, oh, ow

    def im2row(self, x: Array, kh: int, kw: int, stride: int, pad: int, groups: int) -> Array:
        """(N, C, H, W) -> (G, N*OH*OW, C/G*kh*kw); a work-item writes OW whole rows in order."""
        n, c = int(x.shape[0]), int(x.shape[1])
        suffix, args, oh, ow = self._conv_args(x.shape, kh, kw, stride, pad, groups)
        rows = self.rt.empty((groups, n * oh * ow, c // groups * kh * kw))
        if rows.size:
            self.rt.launch("im2row", f"im2row_{suffix}", (oh, groups * n), ROW_LS, x, rows, *args)
        return rows

    def row2im(self, rows: Array, x_shape: Sequence[int], kh: int, kw: int, stride: int,
               pad: int, groups: int) -> Array:
        """Adjoint of im2row without atomics: on CPUs a work-item owns one image and adds its
        windows in memory order (fast there); elsewhere one work-item per input pixel gathers."""
        n, c, h, w = (int(s) for s in x_shape)
        suffix, args, oh, ow = self._conv_args(x_shape, kh, kw, stride, pad, groups)
        dx = self.rt.empty((n, c, h, w))
        if dx.size:
            if self.rt.is_cpu:
                self.rt.launch("im2row", f"row2im_{suffix}", (groups * n,), (IMAGE_LS,), rows, dx,
                               *args)
            else:
                self.rt.launch("im2row", "row2im_px", (w, h, n * c), TILE_3D, rows, dx, *args)
        return dx

    # ------------------------------------------------------------ bias / channels
    def add_channel_bias(self, x: Array, bias: Array) -> None:
        """In place x[n, c, p] += bias[c]: along rows for P = 1, per plane otherwise."""
        n, c, p = _ncp(x, int(bias.shape[0]))
        if not x.size:
            return
        if p == 1:
            self.rt.launch("elementwise", "add_bias_cols", ((c + 3) // 4, n), TILE_2D,
                           x, bias, _u32(c), _u32(n))
        else:
            self.rt.launch("elementwise", "add_bias_planes", ((p + 7) // 8, n * c), TILE_2D,
                           x, bias, _u32(p), _u32(c), _u32(n * c))

    def channel_sum(self, x: Array, out: Array, accumulate: bool = True) -> None:
        """out[c] (+)= sum over (n, p): one work-group per channel, tree-reduced (for P = 1 one
        work-item per column)."""
        n, c, p = _ncp(x, int(out.shape[0]))
        if c and p == 1:
            self.rt.launch("reduce", "column_sum", (c,), (EW_LS,), x, out, _u32(n), _u32(c),
                           _i32(bool(accumulate)))
        elif c:
            ls = self.rt.reduction_size
            self.rt.launch("reduce", "channel_sum", (c * ls,), (ls,), x, out, _u32(n), _u32(c),
                           _u32(p), _u32(self._lanes_log2(n, p)), _i32(bool(accumulate)))

    # ------------------------------------------------------------ elementwise
    def relu(self, x: Array) -> Array:
        """max(x, 0) into a new array."""
        y = self.rt.empty(x.shape)
        self._ew("relu", x.size, x, y, _u32(x.size))
        return y

    def relu_backward(self, dy: Array, y: Array) -> Array:
        """dy where y > 0, else 0."""
        dx = self.rt.empty(dy.shape)
        self._ew("relu_backward", dy.size, dy, y, dx, _u32(dy.size))
        return dx

    def add(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """a + b (out may be a or b)."""
        out = self._like(a, out)
        self._ew("add", a.size, a, b, out, _u32(a.size))
        return out

    def add_relu(self, a: Array, b: Array) -> Array:
        """max(a + b, 0) in one pass."""
        out = self._like(a, None)
        self._ew("add_relu", a.size, a, b, out, _u32(a.size))
        return out

    def axpy(self, alpha: float, x: Array, y: Array) -> None:
        """In place y += alpha * x."""
        self._ew("axpy", y.size, _f32(alpha), x, y, _u32(y.size))

    def mul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """a * b (out may be a or b)."""
        out = self._like(a, out)
        self._ew("mul", a.size, a, b, out, _u32(a.size))
        return out

    def scale(self, a: Array, s: float) -> None:
        """In place a *= s."""
        self._ew("scale", a.size, a, _f32(s), _u32(a.size))

    def div_sqrt(self, a: Array, b: Array, eps: float, out: Array | None = None) -> Array:
        """a / (sqrt(b) + eps) (out may be a or b)."""
        out = self._like(a, out)
        self._ew("div_sqrt", a.size, a, b, out, _f32(eps), _u32(a.size))
        return out

    def dropout_mask(self, shape: Sequence[int], p: float, seed: int, counter: int) -> Array:
        """Keep-mask scaled by 1/(1-p) from the counter-based hash (same bits as NumPy's)."""
        out = self.rt.empty(shape)
        n = int(out.size)
        self._ew("dropout_mask", n, out, _u32(seed & 0xFFFFFFFF), _u32(counter & 0xFFFFFFFF),
                 _f32(p), _f32(1.0 / (1.0 - p)), _u32(n))
        return out

    # ------------------------------------------------------------ pooling
    def _pool_geometry(self, x_shape: Sequence[int], k: int, stride: int, pad: int):
        """(N, C, H, W, OH, OW) of a pooling window sweep."""
        n, c, h, w = (int(s) for s in x_shape)
        return n, c, h, w, conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)

    def maxpool2d(self, x: Array, k: int, stride: int, pad: int) -> tuple[Array, Array]:
        """Max pooling with int32 argmax (flat h*W+w in the plane); padding never wins."""
        n, c, h, w, oh, ow = self._pool_geometry(x.shape, k, stride, pad)
        y = self.rt.empty((n, c, oh, ow))
        argmax = self.rt.empty((n, c, oh, ow), np.int32)
        if y.size and k == stride == 2 and pad == 0:
            self.rt.launch("pooling", "maxpool2d_k2s2", (oh, n * c), ROW_LS, x, y, argmax,
                           *map(_i32, (h, w, oh, ow, n * c)))
        elif y.size:
            self.rt.launch("pooling", "maxpool2d", (oh, n * c), ROW_LS, x, y, argmax,
                           *map(_i32, (h, w, oh, ow, k, stride, pad, n * c)))
        return y, argmax

    def maxpool2d_backward(self, dy: Array, argmax: Array, x_shape: Sequence[int]) -> Array:
        """Gradient added at the argmax positions by one work-item per plane (no atomics)."""
        n, c, h, w = (int(s) for s in x_shape)
        dx = self.rt.empty((n, c, h, w))
        if dx.size:
            self.rt.launch("pooling", "maxpool2d_backward", (n * c,), (PLANE_LS,), dy, argmax, dx,
                           _i32(h * w), _i32(int(dy.size) // max(n * c, 1)), _i32(n * c))
        return dx

    def avgpool2d(self, x: Array, k: int, stride: int, pad: int) -> Array:
        """Average pooling, zero padding counted in the k*k divisor."""
        n, c, h, w, oh, ow = self._pool_geometry(x.shape, k, stride, pad)
        y = self.rt.empty((n, c, oh, ow))
        if y.size:
            self.rt.launch("pooling", "avgpool2d", (oh, n * c), ROW_LS, x, y,
                           *map(_i32, (h, w, oh, ow, k, stride, pad, n * c)))
        return y

    def avgpool2d_backward(self, dy: Array, x_shape: Sequence[int], k: int, stride: int,
                           pad: int) -> Array:
        """Adjoint of avgpool2d: one work-item per plane adds each window's share."""
        n, c, h, w, oh, ow = self._pool_geometry(x_shape, k, stride, pad)
        dx = self.rt.empty((n, c, h, w))
        if dx.size:
            self.rt.launch("pooling", "avgpool2d_backward", (n * c,), (PLANE_LS,), dy, dx,
                           *map(_i32, (h, w, oh, ow, k, stride, pad, n * c)))
        return dx

    # ------------------------------------------------------------ loss and metrics
    def softmax_cross_entropy(self, logits: Array, labels: Array) -> tuple[Array, Array]:
        """Mean cross-entropy (1-element array) and d loss / d logits, one work-group."""
        _check_labels(labels)
        n, k = int(logits.shape[0]), int(logits.shape[1])
        loss = self.rt.empty((1,))
        grad = self.rt.empty((n, k))
        ls = self.rt.reduction_size
        self.rt.launch("softmax", "softmax_xent", (ls,), (ls,), logits, labels, loss, grad,
                       _i32(n), _i32(k))
        return loss, grad

    def count_correct(self, logits: Array, labels: Array) -> Array:
        """Rows whose first argmax equals the label, as a 1-element int32 array."""
        _check_labels(labels)
        n, k = int(logits.shape[0]), int(logits.shape[1])
        out = self.rt.empty((1,), np.int32)
        ls = self.rt.reduction_size
        self.rt.launch("softmax", "count_correct", (ls,), (ls,), logits, labels, out,
                       _i32(n), _i32(k))
        return out

    # ------------------------------------------------------------ batch norm
    def _bn_tiles(self, n: int, c: int, p: int) -> tuple[int, int]:
        """(planes per tile, tiles per channel) of the train-mode batch-norm kernels: tiles of
        about BN_TILE_FLOATS (their second pass reads L1), at least ~BN_MIN_TILES of them in
        all so that every compute unit has work."""
        npl = max(1, min(BN_TILE_FLOATS // max(p, 1), (n * c) // BN_MIN_TILES))
        return npl, -(-n // npl)

    def batchnorm_train(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                        running_var: Array, momentum: float, eps: float, relu: bool = False
                        ) -> tuple[Array, Array, Array]:
        """Batch statistics per channel from per-tile (mean, M2), merged in a fixed order;
        updates the running stats; then normalizes elementwise (batchnorm.cl), with the ReLU
        of batchnorm_relu_train when ``relu``."""
        n, c, p = _ncp(x, int(gamma.shape[0]))
        y, xhat, inv_std = self.rt.empty(x.shape), self.rt.empty(x.shape), self.rt.empty((c,))
        npl, t = self._bn_tiles(n, c, p)
        part, stat = self.rt.scratch("nn.bn_part", 2 * c * t), self.rt.scratch("nn.bn_stat", 2 * c)
        dims = (_u32(n), _u32(c), _u32(p), _u32(npl), _u32(t))
        self.rt.launch("batchnorm", "batchnorm_tile_stats", (t, c), BN_TILE_LS, x, *dims, part)
        self.rt.launch("batchnorm", "batchnorm_stats_combine", (c,), (EW_LS,), part, *dims, stat,
                       inv_std, running_mean, running_var, _f32(momentum), _f32(eps))
        if x.size:
            self.rt.launch("batchnorm", "batchnorm_normalize", (c, n), BN_PLANE_LS, x, stat,
                           gamma, beta, y, xhat, *dims[:3], _i32(bool(relu)))
        return y, xhat, inv_std

    def batchnorm_relu_train(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                             running_var: Array, momentum: float, eps: float
                             ) -> tuple[Array, Array, Array]:
        """batchnorm_train with the ReLU applied in its normalizing pass."""
        return self.batchnorm_train(x, gamma, beta, running_mean, running_var, momentum, eps,
                                    relu=True)

    def batchnorm_eval(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                       running_var: Array, eps: float) -> Array:
        """Normalization with the running statistics: per-channel scale/shift, then affine."""
        n, c, p = _ncp(x, int(gamma.shape[0]))
        y = self.rt.empty(x.shape)
        coef = self.rt.empty((2 * c,))
        self.rt.launch("batchnorm", "batchnorm_eval_coeffs", (c,), (EW_LS,), gamma, beta,
                       running_mean, running_var, coef, _u32(c), _f32(eps))
        if not y.size:
            return y
        if p == 1:
            self.rt.launch("batchnorm", "channel_affine_cols", ((c + 3) // 4, n), TILE_2D, x, y,
                           coef, _u32(c), _u32(n))
        else:
            self.rt.launch("batchnorm", "channel_affine_planes", ((p + 7) // 8, n * c), TILE_2D,
                           x, y, coef, _u32(p), _u32(c), _u32(n * c))
        return y

    def batchnorm_relu_backward(self, dy: Array, y: Array, xhat: Array, inv_std: Array,
                                gamma: Array, dgamma: Array, dbeta: Array) -> Array:
        """batchnorm_backward with dy gated by the fused ReLU's output ``y`` as it is read."""
        return self.batchnorm_backward(dy, xhat, inv_std, gamma, dgamma, dbeta, gate=y)

    def batchnorm_backward(self, dy: Array, xhat: Array, inv_std: Array, gamma: Array,
                           dgamma: Array, dbeta: Array, gate: Array | None = None) -> Array:
        """Train-mode batch-norm gradient: per-tile sums of dy and dy * xhat, merged per
        channel in a fixed order (accumulates dgamma/dbeta), then dx elementwise. ``gate``:
        the output of batchnorm_relu_train (dy taken only where it is > 0)."""
        n, c, p = _ncp(dy, int(gamma.shape[0]))
        dx = self.rt.empty(dy.shape)
        npl, t = self._bn_tiles(n, c, p)
        part, coef = self.rt.scratch("nn.bn_part", 2 * c * t), self.rt.scratch("nn.bn_stat", 3 * c)
        g = (gate if gate is not None else self.rt.dummy, _i32(gate is not None))
        self.rt.launch("batchnorm", "batchnorm_tile_grad_sums", (t, c), BN_TILE_LS, dy, *g, xhat,
                       _u32(n), _u32(c), _u32(p), _u32(npl), _u32(t), part)
        self.rt.launch("batchnorm", "batchnorm_grad_combine", (c,), (EW_LS,), part, _u32(c),
                       _u32(t), _f32(n * p), inv_std, gamma, dgamma, dbeta, coef)
        if dy.size:
            self.rt.launch("batchnorm", "batchnorm_dx", (c, n), BN_PLANE_LS, dy, *g, xhat, coef,
                           dx, _u32(n), _u32(c), _u32(p))
        return dx

    # ------------------------------------------------------------ reductions
    def _reduce(self, a: Array, stage1: str, dtype) -> Array:
        """Two-stage deterministic reduction: fixed chunks per work-group, then one group."""
        n = int(a.size)
        ls = self.rt.reduction_size
        chunk = -(-SUM_CHUNK // (4 * ls)) * 4 * ls  # each lane a run of a multiple of 4
        out = self.rt.empty((1,), dtype)
        groups = max(1, -(-n // chunk))
        if groups == 1:
            self.rt.launch("reduce", stage1, (ls,), (ls,), a, out, _u32(n), _u32(chunk))
            return out
        partial = self.rt.empty((groups,), dtype)
        self.rt.launch("reduce", stage1, (groups * ls,), (ls,), a, partial, _u32(n), _u32(chunk))
        if dtype == np.int32:
            self.rt.launch("reduce", "sum_int", (ls,), (ls,), partial, out, _u32(groups))
        else:
            self.rt.launch("reduce", "sum_partial", (ls,), (ls,), partial, out, _u32(groups),
                           _u32(-(-groups // (4 * ls)) * 4 * ls))
        return out

    def sum(self, a: Array) -> Array:
        """Sum of all elements as a 1-element float32 array (deterministic)."""
        return self._reduce(a, "sum_partial", np.float32)

    def count_zeros(self, a: Array) -> Array:
        """Number of exact zeros as a 1-element int32 array."""
        return self._reduce(a, "count_zeros_partial", np.int32)

    # ------------------------------------------------------------ prox variants (prox.cl)
    def l1_reweight(self, w: Array, eps: float, out: Array | None = None) -> Array:
        """r = s / (|w| + eps s), s the RMS of the nonzero w: two device reductions (sum of
        squares, zero count) read by the kernel from their buffers, nothing back to the host."""
        out = self._like(w, out)
        sumsq = self.sum(self.mul(w, w))
        zeros = self.count_zeros(w)
        n = int(w.size)
        if n:
            self.rt.launch("prox", "l1_reweight", ((n + 7) // 8,), (EW_LS,), w, out, sumsq,
                           zeros, _f32(eps), _u32(n))
        return out

    def soft_threshold_scaled(self, w: Array, scale: Array, threshold: float,
                              out: Array | None = None) -> Array:
        """sign(w) * max(|w| - threshold * scale, 0); in place when out is w."""
        out = self._like(w, out)
        n = int(w.size)
        if n:
            self.rt.launch("prox", "soft_threshold_scaled", ((n + 7) // 8,), (EW_LS,), w,
                           scale, out, _f32(threshold), _u32(n))
        return out

    def hard_threshold(self, w: Array, threshold: float, out: Array | None = None) -> Array:
        """w where |w| > threshold, else 0; in place when out is w."""
        out = self._like(w, out)
        n = int(w.size)
        if n:
            self.rt.launch("prox", "hard_threshold", ((n + 7) // 8,), (EW_LS,), w, out,
                           _f32(threshold), _u32(n))
        return out

    def group_soft_threshold(self, w: Array, threshold: float, out: Array | None = None,
                             columns: bool = False) -> Array:
        """Each row (``columns``: column) g of w viewed as (shape[0], rest), n entries, times
        max(0, 1 - threshold sqrt(n) / ||w_g||): one work-item per group (prox.cl); in place
        when out is w."""
        out = self._like(w, out)
        rows = int(w.shape[0]) if len(w.shape) else 0
        cols = int(w.size) // rows if rows else 0
        if cols:
            groups, n, group_stride, stride = (cols, rows, 1, cols) if columns else \
                (rows, cols, cols, 1)
            self.rt.launch("prox", "group_soft_threshold", (groups,), (EW_LS,), w, out,
                           _f32(threshold), _u32(groups), _u32(n), _u32(group_stride),
                           _u32(stride))
        return out

    def mask_zeros(self, w: Array, mask: Array) -> None:
        """In place mask *= (w != 0)."""
        n = int(w.size)
        if n:
            self.rt.launch("prox", "mask_zeros", ((n + 7) // 8,), (EW_LS,), w, mask, _u32(n))
