"""The backend interface: the primitives every layer and optimizer is written against.

A backend owns device memory and implements these primitives. Layers never touch buffers directly;
they only call these methods, so a new device needs only a new subclass. Arrays are opaque to
layers except for ``.shape``, ``.dtype``, ``.size`` and ``.reshape`` (a view, no copy).

Two kinds of primitive (lists: ``CORE_PRIMITIVES``, ``OPTIONAL_PRIMITIVES``):
- *core* (25, abstract): memory and copies, gemm, transpose, im2row/row2im, add, mul, div_sqrt,
  relu_backward, dropout_mask, max pooling, softmax cross-entropy, count_correct, count_zeros
  and the six CSR ops that do integer work (compaction, scatter, transpose, gather, the forward
  product, SDDMM). A new backend implements these and is complete.
- *optional* (37): fused or convenience ops with a default below written against the core only
  (bias and channel sums as products with ones, average pooling as im2row + gemm, batch norm,
  the optimizer updates with the l1 prox and mask folded in, the backward CSR product as the
  forward one on the transpose, the direct sparse convolution as im2row + CSR product, the
  dense stride-1 convolution and its input gradient as im2row + gemm and gemm + row2im, the
  segmented sum of shared weights as a CSR product with ones, the prox variants of reweighted
  l1 / annealed l0 / sticky zeros from relu and its gate, the gather and product of
  permuted block-diagonal weights as a selection CSR around a batched GEMM). The
  defaults are correct but allocate temporaries and run several ops; a backend overrides them
  for speed (NumpyBackend and OpenCLBackend override all of them).

Conventions shared by all primitives
- Arrays are C-contiguous. Floats are float32 (NumPy backend also accepts float64 for gradchecks).
- Matrix multiplies are *batched*: ``(B, M, K)`` operands, where ``B`` is the number of groups of a
  grouped convolution (1 for a plain layer). A 2-D operand is treated as ``B = 1``.
- Images are ``(N, C, H, W)``. Conv lowering uses the *im2row* layout ``(G, N*OH*OW, C/G*KH*KW)``
  so that conv and linear share one code path: ``Y = X @ W.T`` per group.
- Scalar results (loss, counts) stay on the device as 1-element arrays; ``to_host`` fetches them.
- ``threshold`` in optimizer updates is ``lr * lam``: 0 disables the l1 prox.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, ShapeError

Array = Any  # backend-specific device array (np.ndarray, pyopencl.array.Array)


class EagerPrepared:
    """The default ``Backend.prepare``: upload, ``fn``, download on every call."""

    def __init__(self, backend: "Backend", fn: Callable[[Array], Array],
                 input_shape: Sequence[int]) -> None:
        self.backend, self.fn = backend, fn
        self.input_shape = tuple(int(s) for s in input_shape)
        self.launches = 0

    def __call__(self, host: np.ndarray) -> np.ndarray:
        return self.backend.to_host(self.fn(self.backend.from_host(host)))


@dataclass
class TransferStats:
    """Debug counters of host<->device copies (``from_host``/``to_host`` calls and bytes)."""

    to_device: int = 0
    to_host: int = 0
    bytes_to_device: int = 0
    bytes_to_host: int = 0
    log: list = field(default_factory=list)

    def reset(self) -> None:
        self.to_device = self.to_host = self.bytes_to_device = self.bytes_to_host = 0
        self.log.clear()


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Spatial output size of a conv/pool window sweep (floor mode, like Caffe's conv/PyTorch)."""
    return (size + 2 * pad - kernel) // stride + 1


def hash_uniform(seed: int, counter: int, n: int) -> np.ndarray:
    """Counter-based uniform floats in [0, 1): the reference of the device RNG (``rng.h``).

    The value for element ``i`` depends only on (seed, counter, i), so every backend draws the
    same dropout masks for the same seed and step.
    """
    i = np.arange(n, dtype=np.uint64)
    x = (i * np.uint64(0x9E3779B1) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x85EBCA77)
         + np.uint64(counter & 0xFFFFFFFF) * np.uint64(0xC2B2AE3D)) & np.uint64(0xFFFFFFFF)
    x = x.astype(np.uint32)
    # murmur3 fmix32 finalizer
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x85EBCA6B)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0xC2B2AE35)
    x ^= x >> np.uint32(16)
    return (x >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


# What a backend must implement (abstract in Backend) ...
CORE_PRIMITIVES = (
    "empty", "from_host", "to_host", "copy_into", "fill", "gemm", "transpose", "im2row", "row2im",
    "add", "mul", "div_sqrt", "relu_backward", "dropout_mask", "maxpool2d", "maxpool2d_backward",
    "softmax_cross_entropy", "count_correct", "count_zeros", "csr_from_dense", "csr_to_dense",
    "csr_transpose", "gather", "csr_matmul_t", "csr_sddmm",
)

# ... and what it may override: each has a default in Backend built from the core (fused ops
# such as the optimizer updates with prox and mask, bias and batch norm, avg pooling, the
# direct sparse convolution; conveniences such as zeros, copy, axpy).
OPTIONAL_PRIMITIVES = (
    "zeros", "copy", "nbytes", "synchronize", "add_channel_bias", "channel_sum", "relu", "axpy",
    "scale", "avgpool2d", "avgpool2d_backward", "batchnorm_train", "batchnorm_eval",
    "batchnorm_backward", "sum", "sgd_update", "rmsprop_update", "adam_update", "soft_threshold",
    "apply_mask", "l1_reweight", "soft_threshold_scaled", "hard_threshold", "mask_zeros",
    "group_soft_threshold",
    "csr_matmul", "csr_conv_taps", "csr_flip_transpose", "csr_conv2d", "csr_conv_wgrad",
    "segment_sum", "prepare",
    "qcsr_matmul_t", "qcsr_conv2d", "nearest_centroid",
    "block_pack", "block_matmul",
    "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv2d_weight_grad_direct",
    "batchnorm_relu_train", "batchnorm_relu_backward", "add_relu",
)


def check_flip_rows(t_row_ptr: Array, kh: int, kw: int) -> int:
    """The row count of a per-group transposed filter bank given to ``csr_flip_transpose``;
    ShapeError unless it is whole kh x kw kernels."""
    rows = int(t_row_ptr.size) - 1
    if rows < 0 or rows % (int(kh) * int(kw)):
        raise ShapeError(f"csr_flip_transpose: {rows} transposed rows are not whole "
                         f"{kh}x{kw} kernels")
    return rows


def flip_transpose_pattern(t_row_ptr: np.ndarray, t_col_idx: np.ndarray, kh: int, kw: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy form of ``Backend.csr_flip_transpose`` (host index arrays in and out)."""
    khw = int(kh) * int(kw)
    rows = check_flip_rows(t_row_ptr, kh, kw)
    q = np.repeat(np.arange(rows) % khw, np.diff(t_row_ptr))
    ky, kx = np.divmod(q, kw)
    cols = np.asarray(t_col_idx, np.int64) * khw + (kh - 1 - ky) * kw + (kw - 1 - kx)
    return (np.ascontiguousarray(t_row_ptr[::khw], dtype=np.int32),
            cols.astype(np.int32))


def check_conv_epilogue(pool: int) -> None:
    """The fused pooling of ``csr_conv2d``: none (1) or 2x2 with stride 2 (2)."""
    if pool not in (1, 2):
        raise ConfigError(f"csr_conv2d fuses 2x2 max pooling only (pool=1 or 2), got {pool!r}")


def _ncp(x: Array, channels: int) -> tuple[int, int, int]:
    """(N, C, P) of x viewed as batch x channels x the rest (P = 1 for 2-D x)."""
    n = int(x.shape[0])
    return n, channels, int(x.size) // max(n * channels, 1)


class Backend(ABC):
    """Primitive operations on one device. Subclasses: NumpyBackend, OpenCLBackend.

    A backend must implement the 25 abstract *core* primitives (``CORE_PRIMITIVES``). Every
    other public method (``OPTIONAL_PRIMITIVES``) has a default here written against the core
    only, correct but unfused (it allocates temporaries and launches several ops); a backend
    overrides one for speed, with a single kernel where the default takes several.
    """

    name: str = "abstract"

    def __init__(self) -> None:
        self.transfers = TransferStats()

    # ================================================================ core: every backend
    # ------------------------------------------------------------ memory and copies
    @abstractmethod
    def empty(self, shape: Sequence[int], dtype=np.float32) -> Array:
        """Uninitialized array."""

    @abstractmethod
    def from_host(self, host: np.ndarray, dtype=None) -> Array:
        """Copy a host array to the device (counted in ``transfers``)."""

    @abstractmethod
    def to_host(self, a: Array) -> np.ndarray:
        """Copy a device array back to a new host array (counted in ``transfers``)."""

    @abstractmethod
    def copy_into(self, dst: Array, src: Array) -> None:
        """dst[...] = src, same size, device-side."""

    @abstractmethod
    def fill(self, a: Array, value: float) -> None:
        """a[...] = value."""

    # ------------------------------------------------------------ dense linear algebra
    @abstractmethod
    def gemm(self, a: Array, b: Array, trans_a: bool = False, trans_b: bool = False,
             out: Array | None = None, alpha: float = 1.0, beta: float = 0.0) -> Array:
        """Batched ``out = alpha * op(a) @ op(b) + beta * out``.

        ``a``: (B, M, K) or (B, K, M) if ``trans_a``; ``b``: (B, K, N) or (B, N, K) if ``trans_b``.
        2-D operands mean B = 1 and give a 2-D result. ``beta`` is used only when ``out`` is given.
        """

    @abstractmethod
    def transpose(self, a: Array, axes: Sequence[int]) -> Array:
        """A new contiguous array with dimensions permuted (up to 4-D), like ``np.transpose``."""

    # ------------------------------------------------------------ convolution lowering
    @abstractmethod
    def im2row(self, x: Array, kh: int, kw: int, stride: int, pad: int, groups: int) -> Array:
        """(N, C, H, W) -> (G, N*OH*OW, C/G*kh*kw); row = output pixel, column = (c, i, j)."""

    @abstractmethod
    def row2im(self, rows: Array, x_shape: Sequence[int], kh: int, kw: int, stride: int,
               pad: int, groups: int) -> Array:
        """Adjoint of ``im2row``: scatter-add rows back to an (N, C, H, W) image gradient."""

    # ------------------------------------------------------------ elementwise
    @abstractmethod
    def add(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """Elementwise a + b (same shape)."""

    @abstractmethod
    def mul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """Elementwise a * b (same shape)."""

    @abstractmethod
    def div_sqrt(self, a: Array, b: Array, eps: float, out: Array | None = None) -> Array:
        """Elementwise a / (sqrt(b) + eps) (out may be a or b): the step of RMSProp and Adam,
        and 1/std of batch norm (a = 1, eps added to b)."""

    @abstractmethod
    def relu_backward(self, dy: Array, y: Array) -> Array:
        """dy where y > 0, else 0."""

    @abstractmethod
    def dropout_mask(self, shape: Sequence[int], p: float, seed: int, counter: int) -> Array:
        """Keep-mask scaled by 1/(1-p): element i is 1/(1-p) if hash_uniform(seed, counter)[i] >= p."""

    # ------------------------------------------------------------ pooling
    @abstractmethod
    def maxpool2d(self, x: Array, k: int, stride: int, pad: int) -> tuple[Array, Array]:
        """Max pooling (padding never wins); returns (y, argmax) with argmax the int32 flat
        index h*W+w of the winner inside its (n, c) plane."""

    @abstractmethod
    def maxpool2d_backward(self, dy: Array, argmax: Array, x_shape: Sequence[int]) -> Array:
        """Scatter-add dy to the argmax positions of a zero (N, C, H, W) gradient."""

    # ------------------------------------------------------------ loss and metrics
    @abstractmethod
    def softmax_cross_entropy(self, logits: Array, labels: Array) -> tuple[Array, Array]:
        """Mean softmax cross-entropy over N rows (stable) and its gradient d loss / d logits.

        ``labels`` are int32 class indices. Returns (loss as a 1-element array, dlogits (N, K)).
        """

    @abstractmethod
    def count_correct(self, logits: Array, labels: Array) -> Array:
        """Number of rows whose argmax (first maximum) equals the label, as a 1-element int32 array."""

    # ------------------------------------------------------------ reductions
    @abstractmethod
    def count_zeros(self, a: Array) -> Array:
        """Number of elements exactly equal to 0, as a 1-element int32 array."""

    # ------------------------------------------------------------ CSR (see minidnn.sparse)
    @abstractmethod
    def csr_from_dense(self, w: Array) -> tuple[Array, Array, Array]:
        """Compact a dense (R, C) matrix on the device: (row_ptr int32 (R+1), col_idx int32 (nnz),
        values (nnz)); entries exactly 0 are dropped, columns ascending within a row."""

    @abstractmethod
    def csr_to_dense(self, row_ptr: Array, col_idx: Array, values: Array,
                     shape: Sequence[int]) -> Array:
        """Scatter CSR back to a dense (R, C) matrix."""

    @abstractmethod
    def csr_transpose(self, row_ptr: Array, col_idx: Array, values: Array, shape: Sequence[int],
                      groups: int = 1) -> tuple[Array, Array, Array, Array]:
        """CSR of the transpose (i.e. CSC of the input) plus ``perm``: for each transposed entry
        the index of the same entry in ``values``, so value updates can be re-gathered cheaply.

        With ``groups`` > 1 the (O, K) matrix holds G row blocks; the result is the transpose of
        each block stacked: (G*K, O/G), so row g*K+k lists output channels (local to the group)."""

    @abstractmethod
    def gather(self, src: Array, index: Array, out: Array | None = None) -> Array:
        """out[i] = src[index[i]]."""

    @abstractmethod
    def csr_matmul_t(self, x: Array, row_ptr: Array, col_idx: Array, values: Array,
                     shape: Sequence[int]) -> Array:
        """Grouped dense x CSR^T: x (G, M, K) -> y (G, M, O/G), ``y[g] = x[g] @ W_g.T`` where the
        CSR matrix W is (O, K) and its rows g*O/G .. (g+1)*O/G - 1 form group g (forward)."""

    @abstractmethod
    def csr_sddmm(self, dy: Array, x: Array, row_ptr: Array, col_idx: Array,
                  shape: Sequence[int], out: Array, accumulate: bool = True) -> None:
        """Weight gradient on the sparsity pattern: for each nonzero (o, k) of W (O, K),
        ``out[e] (+)= sum_m dy[g, m, o - g*O/G] * x[g, m, k]``, g = o // (O/G)."""

    # ================================================================ optional: defaults
    # Written against the core only; NumpyBackend and OpenCLBackend override them all.
    # ------------------------------------------------------------ memory
    def zeros(self, shape: Sequence[int], dtype=np.float32) -> Array:
        """Array of zeros."""
        a = self.empty(shape, dtype)
        self.fill(a, 0)
        return a

    def copy(self, a: Array) -> Array:
        """A new device array with the same contents (device-side copy)."""
        b = self.empty(a.shape, a.dtype)
        self.copy_into(b, a)
        return b

    def nbytes(self, a: Array) -> int:
        """Bytes held on the device by ``a``."""
        return int(a.size) * np.dtype(a.dtype).itemsize

    def synchronize(self) -> None:
        """Wait for all queued work (no-op on synchronous backends)."""

    def prepare(self, fn: Callable[[Array], Array], input_shape: Sequence[int]) -> "EagerPrepared":
        """``fn`` (device input -> device output, no host reads inside) made ready to run on
        host inputs of ``input_shape``: ``prepared(host) -> host output``. By default each call
        uploads, runs ``fn`` and downloads; a device backend may record ``fn`` once and replay
        its work (OpenCL: kernel arguments bound once, no Python between the enqueues)."""
        return EagerPrepared(self, fn, input_shape)

    # ------------------------------------------------------------ bias / channels
    def add_channel_bias(self, x: Array, bias: Array) -> None:
        """In place ``x[n, c, p] += bias[c]`` for x viewed as (N, C, P) (P = 1 for linear)."""
        n, c, p = _ncp(x, int(bias.shape[0]))
        if x.size == 0:
            return
        # x (N, C*P) += ones (N, 1) @ row (1, C*P): products with ones are exact
        row = bias.reshape(1, c) if p == 1 else \
            self.gemm(bias.reshape(c, 1), self._full((1, p), 1.0, x.dtype)).reshape(1, c * p)
        self.gemm(self._full((n, 1), 1.0, x.dtype), row, out=x.reshape(n, c * p), beta=1.0)

    def channel_sum(self, x: Array, out: Array, accumulate: bool = True) -> None:
        """``out[c] (+)= sum_{n,p} x[n, c, p]`` for x viewed as (N, C, P): the bias gradient."""
        n, c, p = _ncp(x, int(out.shape[0]))
        if x.size == 0:
            if not accumulate:
                self.fill(out, 0)
            return
        # plane sums (N*C, P) @ ones (P, 1), then ones (1, N) @ (N, C)
        per_image = x.reshape(n, c) if p == 1 else \
            self.gemm(x.reshape(n * c, p), self._full((p, 1), 1.0, x.dtype)).reshape(n, c)
        self.gemm(self._full((1, n), 1.0, x.dtype), per_image, out=out.reshape(1, c),
                  beta=1.0 if accumulate else 0.0)

    # ------------------------------------------------------------ elementwise
    def relu(self, x: Array) -> Array:
        """max(x, 0)."""
        return self.relu_backward(x, x)

    def axpy(self, alpha: float, x: Array, y: Array) -> None:
        """In place y += alpha * x."""
        self.add(y, self.mul(x, self._full(x.shape, alpha, y.dtype)), out=y)

    def scale(self, a: Array, s: float) -> None:
        """In place a *= s."""
        self.mul(a, self._full(a.shape, s, a.dtype), out=a)

    # ------------------------------------------------------------ dense convolution
    def conv2d(self, x: Array, weight: Array, bias: Array | None, pad: int,
               groups: int) -> Array:
        """Stride-1 convolution (cross-correlation) of x (N, C, H, W) with dense filters
        ``weight`` (O, C/G, KH, KW) in ``groups`` groups, zero padding ``pad``, + bias (O,)
        unless None -> (N, O, OH, OW). The default is what Conv2d does at any stride: im2row,
        one gemm per group, the transpose back to NCHW, the bias; backends compute it without
        the im2row buffer and the transpose."""
        n = int(x.shape[0])
        o, cg, kh, kw = (int(s) for s in weight.shape)
        oh = conv_output_size(int(x.shape[2]), kh, 1, pad)
        ow = conv_output_size(int(x.shape[3]), kw, 1, pad)
        rows = self.im2row(x, kh, kw, 1, pad, groups)
        y = self.gemm(rows, weight.reshape((groups, o // groups, cg * kh * kw)), trans_b=True)
        y = self.transpose(y.reshape((groups, n, oh * ow, o // groups)), (1, 0, 3, 2))
        y = y.reshape((n, o, oh, ow))
        if bias is not None:
            self.add_channel_bias(y, bias)
        return y

    def conv2d_input_grad(self, dy: Array, weight: Array, x_shape: Sequence[int], pad: int,
                          groups: int) -> Array:
        """The gradient of ``conv2d`` with respect to its input: dy (N, O, OH, OW) -> dx shaped
        ``x_shape``. Needs pad < KH, KW (dx is then a stride-1 convolution of dy with the
        flipped filters, padding KH - 1 - pad). Default: gemm into im2row rows, row2im."""
        n, o, oh, ow = (int(s) for s in dy.shape)
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        dy3 = self.transpose(dy.reshape((n, groups, o // groups, oh * ow)), (1, 0, 3, 2))
        dy3 = dy3.reshape((groups, n * oh * ow, o // groups))
        drows = self.gemm(dy3, weight.reshape((groups, o // groups, int(weight.size) // o)))
        return self.row2im(drows, x_shape, kh, kw, 1, pad, groups)

    def conv2d_weight_grad(self, x: Array, dy: Array, kh: int, kw: int, pad: int, groups: int,
                           out: Array, accumulate: bool = True) -> None:
        """The gradient of ``conv2d``'s filters: out (O, C/G, KH, KW) += (or =, unless
        ``accumulate``) the sum over images and output pixels of dy (N, O, OH, OW) times the
        input window of x (N, C, H, W) under each tap. Default: im2row, one gemm per group
        (dy_gᵀ · rows_g), as Conv2d does at any stride; backends reduce over pixels directly."""
        n, o, oh, ow = (int(s) for s in dy.shape)
        rows = self.im2row(x, kh, kw, 1, pad, groups)
        dy3 = self.transpose(dy.reshape((n, groups, o // groups, oh * ow)), (1, 0, 3, 2))
        dy3 = dy3.reshape((groups, n * oh * ow, o // groups))
        g3 = out.reshape((groups, o // groups, int(out.size) // o))
        self.gemm(dy3, rows, trans_a=True, out=g3, beta=1.0 if accumulate else 0.0)

    def conv2d_weight_grad_direct(self, out_channels: int, in_channels: int, groups: int) -> bool:
        """Whether ``conv2d_weight_grad`` is this backend's faster way to the filter gradient
        of a stride-1 layer of these channels (else ``Conv2d`` lowers its input and uses the
        same gemm as at any stride). Default True: the default ``conv2d_weight_grad`` is that
        lowering."""
        return True

    # ------------------------------------------------------------ pooling
    def avgpool2d(self, x: Array, k: int, stride: int, pad: int) -> Array:
        """Average pooling; zero padding counts in the divisor k*k (PyTorch's default)."""
        n, c, h, w = (int(d) for d in x.shape)
        oh, ow = conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)
        # each (n, c) plane as a 1-channel image: one im2row row per window, summed by a product
        rows = self.im2row(x.reshape(n * c, 1, h, w), k, k, stride, pad, 1)
        y = self.gemm(rows.reshape(n * c * oh * ow, k * k), self._full((k * k, 1), 1.0, x.dtype),
                      alpha=1.0 / (k * k))
        return y.reshape(n, c, oh, ow)

    def avgpool2d_backward(self, dy: Array, x_shape: Sequence[int], k: int, stride: int,
                           pad: int) -> Array:
        """Adjoint of ``avgpool2d``."""
        n, c, h, w = (int(d) for d in x_shape)
        m = int(dy.size)
        rows = self.gemm(dy.reshape(m, 1), self._full((1, k * k), 1.0, dy.dtype),
                         alpha=1.0 / (k * k))
        dx = self.row2im(rows.reshape(1, m, k * k), (n * c, 1, h, w), k, k, stride, pad, 1)
        return dx.reshape(n, c, h, w)

    # ------------------------------------------------------------ batch norm
    def batchnorm_train(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                        running_var: Array, momentum: float, eps: float
                        ) -> tuple[Array, Array, Array]:
        """Batch-statistics normalization over (N, P) per channel of x viewed as (N, C, P).

        Returns (y, xhat, inv_std). Updates running stats in place:
        ``r = (1 - momentum) * r + momentum * stat`` with the unbiased variance for running_var.
        """
        n, c, p = _ncp(x, int(gamma.shape[0]))
        count = n * p
        mean = self._channel_mean(x, c, count)
        xc = self.copy(x)
        self.axpy(-1.0, self._per_channel(mean, x), xc)
        var = self._channel_mean(self.mul(xc, xc), c, count)
        inv_std = self._inv_std(var, eps)
        xhat = self.mul(xc, self._per_channel(inv_std, x))
        y = self.mul(xhat, self._per_channel(gamma, x))
        self.add_channel_bias(y, beta)
        for running, stat, factor in ((running_mean, mean, 1.0),
                                      (running_var, var, count / max(count - 1, 1))):
            self.scale(running, 1.0 - momentum)
            self.axpy(momentum * factor, stat, running)
        return y, xhat, inv_std

    def batchnorm_eval(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                       running_var: Array, eps: float) -> Array:
        """Normalization with running statistics."""
        scale = self.mul(gamma, self._inv_std(running_var, eps))
        shift = self.copy(beta)
        self.axpy(-1.0, self.mul(running_mean, scale), shift)
        y = self.mul(x, self._per_channel(scale, x))
        self.add_channel_bias(y, shift)
        return y

    def batchnorm_backward(self, dy: Array, xhat: Array, inv_std: Array, gamma: Array,
                           dgamma: Array, dbeta: Array) -> Array:
        """Gradient of train-mode batch norm; accumulates into dgamma/dbeta, returns dx."""
        n, c, p = _ncp(dy, int(gamma.shape[0]))
        count = n * p
        sum_dy, sum_dy_xhat = self.empty((c,), dy.dtype), self.empty((c,), dy.dtype)
        self.channel_sum(dy, sum_dy, accumulate=False)
        self.channel_sum(self.mul(dy, xhat), sum_dy_xhat, accumulate=False)
        self.add(dgamma, sum_dy_xhat, out=dgamma)
        self.add(dbeta, sum_dy, out=dbeta)
        # dx = gamma * inv_std / count * (count * dy - sum_dy - xhat * sum_dy_xhat)
        dx = self.copy(dy)
        self.scale(dx, count)
        self.axpy(-1.0, self._per_channel(sum_dy, dy), dx)
        self.axpy(-1.0, self.mul(xhat, self._per_channel(sum_dy_xhat, dy)), dx)
        coef = self.mul(gamma, inv_std)
        self.scale(coef, 1.0 / count)
        return self.mul(dx, self._per_channel(coef, dy))

    def add_relu(self, a: Array, b: Array) -> Array:
        """max(a + b, 0): a residual add and the ReLU after it (fused where the backend can)."""
        return self.relu(self.add(a, b))

    def batchnorm_relu_train(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                             running_var: Array, momentum: float, eps: float
                             ) -> tuple[Array, Array, Array]:
        """``batchnorm_train`` followed by ``relu`` (a BatchNorm2d then ReLU in training):
        returns (relu(y), xhat, inv_std). A backend may fuse the two (one pass less)."""
        y, xhat, inv_std = self.batchnorm_train(x, gamma, beta, running_mean, running_var,
                                                momentum, eps)
        return self.relu(y), xhat, inv_std

    def batchnorm_relu_backward(self, dy: Array, y: Array, xhat: Array, inv_std: Array,
                                gamma: Array, dgamma: Array, dbeta: Array) -> Array:
        """Gradient through ``batchnorm_relu_train`` (``y`` its output): batchnorm_backward of
        relu_backward(dy, y); accumulates into dgamma/dbeta, returns dx."""
        return self.batchnorm_backward(self.relu_backward(dy, y), xhat, inv_std, gamma, dgamma,
                                       dbeta)

    # ------------------------------------------------------------ reductions
    def sum(self, a: Array) -> Array:
        """Sum of all elements as a 1-element float array."""
        n = int(a.size)
        if n == 0:
            return self.zeros((1,), a.dtype)
        return self.gemm(a.reshape(1, n), self._full((n, 1), 1.0, a.dtype)).reshape(1)

    # ------------------------------------------------------------ optimizer updates
    # Each update is one fused step for one parameter: the usual update, then the l1
    # soft-threshold sign(w)*max(|w| - threshold, 0) when threshold > 0, then w *= mask
    # when a mask is given (the optimizer's standard post hooks, fused).
    def sgd_update(self, w: Array, g: Array, velocity: Array | None, lr: float, momentum: float,
                   nesterov: bool, weight_decay: float, threshold: float,
                   mask: Array | None) -> None:
        """SGD (PyTorch convention): g += wd*w; v = mu*v + g; step = g + mu*v if nesterov else v."""
        d = self._decayed(g, w, weight_decay)
        if velocity is not None and momentum:
            self.scale(velocity, momentum)
            self.add(velocity, d, out=velocity)
            if nesterov:
                d = self.copy(d)
                self.axpy(momentum, velocity, d)
            else:
                d = velocity
        self.axpy(-lr, d, w)
        self._prox_and_mask(w, threshold, mask)

    def rmsprop_update(self, w: Array, g: Array, square_avg: Array, lr: float, alpha: float,
                       eps: float, weight_decay: float, threshold: float,
                       mask: Array | None) -> None:
        """RMSProp: s = alpha*s + (1-alpha)*g^2; w -= lr * g / (sqrt(s) + eps)."""
        d = self._decayed(g, w, weight_decay)
        self.scale(square_avg, alpha)
        self.axpy(1.0 - alpha, self.mul(d, d), square_avg)
        self.axpy(-lr, self.div_sqrt(d, square_avg, eps), w)
        self._prox_and_mask(w, threshold, mask)

    def adam_update(self, w: Array, g: Array, m: Array, v: Array, lr: float, beta1: float,
                    beta2: float, eps: float, step: int, weight_decay: float, threshold: float,
                    mask: Array | None) -> None:
        """Adam with bias correction: w -= lr * mhat / (sqrt(vhat) + eps), step counts from 1."""
        d = self._decayed(g, w, weight_decay)
        self.scale(m, beta1)
        self.axpy(1.0 - beta1, d, m)
        self.scale(v, beta2)
        self.axpy(1.0 - beta2, self.mul(d, d), v)
        mhat, vhat = self.copy(m), self.copy(v)
        self.scale(mhat, 1.0 / (1.0 - beta1 ** step))
        self.scale(vhat, 1.0 / (1.0 - beta2 ** step))
        self.axpy(-lr, self.div_sqrt(mhat, vhat, eps), w)
        self._prox_and_mask(w, threshold, mask)

    def soft_threshold(self, w: Array, threshold: float, out: Array | None = None) -> Array:
        """sign(w) * max(|w| - threshold, 0) (in place when out is w)."""
        # relu(w - t) - relu(-w - t): each side is |w| - t where it survives, rounded alike
        minus_t = self._full(w.shape, -threshold, w.dtype)
        above = self.relu(self.add(w, minus_t))
        below = self.relu(self.add(self.mul(w, self._full(w.shape, -1.0, w.dtype)), minus_t))
        out = self.empty(w.shape, w.dtype) if out is None else out
        self.copy_into(out, above)
        self.axpy(-1.0, below, out)
        return out

    def apply_mask(self, w: Array, mask: Array) -> None:
        """In place w *= mask."""
        self.mul(w, mask, out=w)

    # ------------------------------------------------------------ CSR
    def csr_matmul(self, dy: Array, t_row_ptr: Array, t_col_idx: Array, t_values: Array,
                   shape: Sequence[int]) -> Array:
        """Grouped dense x CSR: dy (G, M, O/G) -> dx (G, M, K), ``dx[g] = dy[g] @ W_g``.

        Takes the *transposed* CSR from ``csr_transpose`` (row = input column) so each output
        element is a dot product over its own nonzeros; ``shape`` is W's (O, K)."""
        o, k = int(shape[0]), int(shape[1])
        g = int(dy.shape[0]) if len(dy.shape) == 3 else 1
        # the transposed CSR is the (G*K, O/G) matrix whose group blocks are the W_g^T
        return self.csr_matmul_t(dy, t_row_ptr, t_col_idx, t_values, (g * k, o // g))

    # ------------------------------------------------------------ quantized CSR (inference)
    def _codebook_values(self, codes: Array, codebook: Array) -> Array:
        """float32 ``codebook[codes]`` of uint8/uint16 codes (the defaults of the ``qcsr_*``
        products decode with it; the codes go through the host once)."""
        index = self.from_host(np.asarray(self.to_host(codes)).astype(np.int32), np.int32)
        return self.gather(codebook, index)

    def qcsr_matmul_t(self, x: Array, row_ptr: Array, col_idx: Array, codes: Array,
                      codebook: Array, shape: Sequence[int]) -> Array:
        """``csr_matmul_t`` of a quantized CSR weight: the value of nonzero e is
        ``codebook[codes[e]]`` (uint8 or uint16 codes, float32 codebook), so the device holds
        one or two bytes per value instead of four."""
        return self.csr_matmul_t(x, row_ptr, col_idx, self._codebook_values(codes, codebook),
                                 shape)

    def qcsr_conv2d(self, x: Array, row_ptr: Array, taps: Array, codes: Array, codebook: Array,
                    shape: Sequence[int], bias: Array | None, kh: int, kw: int, stride: int,
                    pad: int, groups: int, residual: Array | None = None, relu: bool = False,
                    pool: int = 1) -> Array:
        """``csr_conv2d`` of a quantized filter bank (values ``codebook[codes]``)."""
        return self.csr_conv2d(x, row_ptr, taps, self._codebook_values(codes, codebook), shape,
                               bias, kh, kw, stride, pad, groups, residual, relu, pool)

    def csr_conv_taps(self, col_idx: Array, kh: int, kw: int) -> Array:
        """Decode the columns (cl*kh + ky)*kw + kx of a CSR filter bank into int32 taps
        ``cl << 16 | ky << 8 | kx`` (cl < 32768, kh, kw < 256), the form csr_conv2d reads."""
        return col_idx  # the default csr_conv2d reads the CSR columns themselves

    def csr_flip_transpose(self, t_row_ptr: Array, t_col_idx: Array, kh: int, kw: int
                           ) -> tuple[Array, Array]:
        """The pattern (row_ptr, col_idx) of the filter bank that the input gradient of a
        stride-1 convolution convolves dY with: W' (C, O/G*kh*kw), ``W'[g*cg + cl, (ol*kh +
        kh-1-ky)*kw + kw-1-kx] = W[g*og + ol, (cl*kh + ky)*kw + kx]``, from the per-group
        transpose of W (``csr_transpose``: rows (g, cl, ky, kx), columns ol), whose values
        ``t_values`` are W''s values in the same order (columns within a row unsorted). Default:
        on the host, once per pattern (index arrays only)."""
        rp, cols = flip_transpose_pattern(np.asarray(self.to_host(t_row_ptr)),
                                          np.asarray(self.to_host(t_col_idx)), kh, kw)
        return self.from_host(rp, np.int32), self.from_host(cols, np.int32)

    def csr_conv_wgrad(self, dy: Array, x: Array, row_ptr: Array, taps: Array,
                       shape: Sequence[int], kh: int, kw: int, stride: int, pad: int,
                       groups: int, out: Array, accumulate: bool = True) -> None:
        """The weight gradient of ``csr_conv2d`` on its pattern: out (nnz,) (+)= dW at each
        nonzero, from x (N, C, H, W) and dy (N, O, OH, OW); ``taps`` from ``csr_conv_taps``.
        Default: im2row + dY transposed to rows + ``csr_sddmm`` (the taps are the columns)."""
        n, o = int(dy.shape[0]), int(shape[0])
        rows = self.im2row(x, kh, kw, stride, pad, groups)            # (G, N*OH*OW, K)
        ohw = int(dy.shape[2]) * int(dy.shape[3])
        dy3 = self.transpose(dy.reshape((n, groups, o // groups, ohw)), (1, 0, 3, 2))
        self.csr_sddmm(dy3.reshape((groups, n * ohw, o // groups)), rows, row_ptr, taps, shape,
                       out, accumulate)

    def csr_conv2d(self, x: Array, row_ptr: Array, taps: Array, values: Array,
                   shape: Sequence[int], bias: Array | None, kh: int, kw: int, stride: int,
                   pad: int, groups: int, residual: Array | None = None, relu: bool = False,
                   pool: int = 1) -> Array:
        """Direct sparse convolution (inference): x (N, C, H, W) with the CSR filter bank W
        (O, C/G*kh*kw) given by row_ptr/taps/values -> (N, O, OH, OW) + bias, zero padding.
        Equals im2row + csr_matmul_t + transpose + bias, without the im2row buffer. The fused
        epilogue of inference plans, in this order: ``+ residual`` (shaped like the output),
        ``max(., 0)`` if ``relu``, then 2x2/stride-2 max pooling if ``pool == 2``."""
        check_conv_epilogue(pool)
        n, c, h, w = (int(d) for d in x.shape)
        o = int(shape[0])
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
        rows = self.im2row(x, kh, kw, stride, pad, groups)           # (G, N*OH*OW, K)
        y = self.csr_matmul_t(rows, row_ptr, taps, values, shape)      # (G, N*OH*OW, O/G)
        y = self.transpose(y.reshape(groups, n, oh * ow, o // groups), (1, 0, 3, 2))
        y = y.reshape(n, o, oh, ow)
        if bias is not None:
            self.add_channel_bias(y, bias)
        if residual is not None:
            y = self.add(y, residual, out=y)
        if relu:
            y = self.relu(y)
        if pool == 2:
            y = self.maxpool2d(y, 2, 2, 0)[0]
        return y

    # ------------------------------------------------------------ prox variants
    def _negative(self, w: Array) -> Array:
        """A new array -w."""
        neg = self.copy(w)
        self.scale(neg, -1.0)
        return neg

    def _abs(self, w: Array) -> Array:
        """|w| = relu(w) + relu(-w)."""
        return self.add(self.relu(w), self.relu(self._negative(w)))

    def soft_threshold_scaled(self, w: Array, scale: Array, threshold: float,
                              out: Array | None = None) -> Array:
        """sign(w) * max(|w| - threshold * scale, 0), a per-element threshold (in place when
        out is w). Default: relu(w - t) - relu(-w - t) with t = threshold * scale."""
        t = self.copy(scale)
        self.scale(t, threshold)
        up, down = self.copy(w), self._negative(w)
        self.axpy(-1.0, t, up)                     # w - t
        self.axpy(-1.0, t, down)                   # -w - t
        result = self.relu(up)
        self.axpy(-1.0, self.relu(down), result)
        if out is None:
            return result
        self.copy_into(out, result)
        return out

    def hard_threshold(self, w: Array, threshold: float, out: Array | None = None) -> Array:
        """w where |w| > threshold, else 0 (in place when out is w). Default: relu_backward's
        gate on |w| - threshold."""
        gap = self._abs(w)
        self.axpy(-1.0, self._full(w.shape, threshold, w.dtype), gap)
        result = self.relu_backward(w, gap)
        if out is None:
            return result
        self.copy_into(out, result)
        return out

    def group_soft_threshold(self, w: Array, threshold: float, out: Array | None = None,
                             columns: bool = False) -> Array:
        """The group soft-threshold over the rows of w viewed as (shape[0], rest) (a conv
        filter, a linear neuron's incoming weights), or with ``columns`` over its columns (a
        linear layer's input: one neuron of the layer below, its outgoing weights): each group
        of n entries becomes w_g * max(0, 1 - threshold * sqrt(n) / ||w_g||_2), a zero group
        staying zero; the prox of threshold * sum_g sqrt(n) ||w_g||_2 (group lasso, l2,1). In
        place when out is w. Default: group norms by a GEMM with ones, the scales by div_sqrt
        and relu, broadcast back by a GEMM (columns: on the transpose)."""
        rows = int(w.shape[0]) if len(w.shape) else 0
        n = int(w.size) // rows if rows else 0
        if not n:
            return w if out is None else out
        w2 = self.transpose(w.reshape(rows, n), (1, 0)) if columns else w.reshape(rows, n)
        g, n = (n, rows) if columns else (rows, n)
        sq = self.gemm(self.mul(w2, w2), self._full((n, 1), 1.0, w.dtype))          # ||w_g||^2
        s = self.div_sqrt(self._full((g, 1), -threshold * n ** 0.5, w.dtype), sq, 1e-30)
        self.axpy(1.0, self._full((g, 1), 1.0, w.dtype), s)             # 1 - t sqrt(n) / ||w_g||
        result = self.mul(w2, self.gemm(self.relu(s), self._full((1, n), 1.0, w.dtype)))
        if columns:
            result = self.transpose(result, (1, 0))
        result = result.reshape(w.shape)
        if out is None:
            return result
        self.copy_into(out, result)
        return out

    def mask_zeros(self, w: Array, mask: Array) -> None:
        """In place mask *= (w != 0): the zeros of w join the mask's (a 0/1 array like w).
        Default: relu_backward's gate on |w|."""
        self.copy_into(mask, self.relu_backward(mask, self._abs(w)))

    def l1_reweight(self, w: Array, eps: float, out: Array | None = None) -> Array:
        """Per-weight l1 scales of reweighted l1: r = s / (|w| + eps * s), s the RMS of the
        nonzero entries of w (1/eps everywhere when all are zero); computed on the device.
        Default: reads the two scalars (sum of squares, zero count) to build s on the host."""
        n = int(w.size)
        sumsq = float(self.to_host(self.sum(self.mul(w, w))).reshape(-1)[0])
        nnz = n - int(self.to_host(self.count_zeros(w)).reshape(-1)[0])
        s = (sumsq / nnz) ** 0.5 if nnz else 0.0
        if s == 0.0:
            result = self._full(w.shape, 1.0 / eps, w.dtype)
        else:  # r = 1 / (|w| / s + eps) = div_sqrt(1, (|w| / s + eps)^2)
            d = self._abs(w)
            self.scale(d, 1.0 / s)
            self.axpy(1.0, self._full(w.shape, eps, w.dtype), d)
            result = self.div_sqrt(self._full(w.shape, 1.0, w.dtype), self.mul(d, d), 0.0)
        if out is None:
            return result
        self.copy_into(out, result)
        return out

    # ------------------------------------------------------------ shared (quantized) weights
    def nearest_centroid(self, values: Array, mids: Array, out: Array) -> Array:
        """``out[i]`` (int32) = how many of the ascending float32 ``mids`` (midpoints between
        consecutive centroids) lie below ``values[i]``: the index of its nearest centroid, as
        ``numpy.searchsorted(mids, values)``. Quantization-aware retraining re-assigns every
        weight with it each step.

        Default: on the host (``to_host``, ``searchsorted``, ``copy_into``)."""
        idx = np.searchsorted(np.asarray(self.to_host(mids)), np.asarray(self.to_host(values)))
        self.copy_into(out, self.from_host(idx.astype(np.int32), np.int32))
        return out

    def segment_sum(self, values: Array, order: Array, offsets: Array,
                    out: Array | None = None) -> Array:
        """``out[s] = sum_{offsets[s] <= j < offsets[s+1]} values[order[j]]`` for s < k, with
        ``offsets`` int32 (k+1) and ``order`` int32: the gradient of shared values (centroids)
        from their members' gradients. Empty segments give 0; the order of each sum is fixed,
        so the result is deterministic. With ``gather`` (centroid -> members) it is the pair
        that fine-tunes a codebook on the device.

        Default: the CSR matrix (k, n) whose row s holds ones at the members of segment s,
        times the values (``csr_matmul_t``)."""
        k, n, m = int(offsets.shape[0]) - 1, int(values.size), int(order.shape[0])
        ones = self._full((m,), 1.0, values.dtype)
        sums = self.csr_matmul_t(values.reshape(1, 1, n), offsets, order, ones,
                                 (k, n)).reshape(k)
        if out is None:
            return sums
        self.copy_into(out, sums)
        return out

    # ------------------------------------------------------------ block-diagonal weights
    def block_pack(self, x: Array, index: Array, nb: int, out: Array | None = None) -> Array:
        """Gather an (M, N) operand (or (1, M, N)) into B = len(index)/nb blocks of columns:
        ``out[b, m, j] = x[m, index[b*nb + j]]``, 0 where the int32 ``index`` is -1 (padding
        of a short block); out is (B, M, nb). The input side of a permuted block-diagonal
        product (``minidnn.blockdiag``): then one batched GEMM per block.

        Default: the product with the (B*nb, N) 0/1 selection matrix as a CSR (one nonzero per
        row that is not padding), then a transpose to the block layout."""
        m, n = int(x.shape[-2]), int(x.shape[-1])
        total = int(index.shape[0])
        row_ptr, col_idx, ones = self._selection(index, total, n)
        y = self.csr_matmul_t(x.reshape((1, m, n)), row_ptr, col_idx, ones, (total, n))
        packed = self.transpose(y.reshape((m, total // nb, nb)), (1, 0, 2))
        if out is None:
            return packed
        self.copy_into(out, packed)
        return out

    def block_matmul(self, x: Array, in_index: Array, w: Array, out_index: Array,
                     n_out: int, bias: Array | None = None, relu: bool = False,
                     out: Array | None = None) -> Array:
        """A product with a permuted block-diagonal matrix given by its B blocks ``w``
        (B, nk, no): ``out[m, out_index[b*no + o]] = sum_k x[m, in_index[b*nk + k]] * w[b, k, o]``
        with int32 indices, -1 for padding; x is (M, N) or (1, M, N), out (M, n_out), and
        every output column sits in exactly one block. A layer's forward: x by the column
        index, w = the blocks transposed (B, cb, rb), out by the row index; its input gradient:
        dy by the row index, w = the blocks (B, rb, cb), out by the column index. The epilogue
        of inference plans: ``+ bias`` (n_out,) if given, then ``max(., 0)`` if ``relu``.

        Default: ``block_pack``, one batched GEMM, and the scatter as a product with the
        (n_out, B*no) selection CSR after a transpose to (M, B*no)."""
        m = int(x.shape[-2])
        nblocks, nk, no = (int(s) for s in w.shape)
        yb = self.gemm(self.block_pack(x, in_index, nk), w)             # (B, M, no)
        flat = self.transpose(yb, (1, 0, 2)).reshape((1, m, nblocks * no))
        row_ptr, col_idx, ones = self._selection(out_index, n_out, nblocks * no, scatter=True)
        y = self.csr_matmul_t(flat, row_ptr, col_idx, ones, (n_out, nblocks * no))
        y = y.reshape((m, n_out))
        if bias is not None:
            self.add_channel_bias(y, bias)
        if relu:
            y = self.relu(y)
        if out is None:
            return y
        self.copy_into(out.reshape((m, n_out)), y)
        return out

    def _selection(self, index: Array, rows: int, cols: int, scatter: bool = False):
        """The 0/1 CSR (rows, cols) with a one at (i, index[i]) where index[i] >= 0 (gather),
        or at (index[p], p) for every p with index[p] >= 0 (``scatter``: index must hit each
        row once), built on the host once per index array and kept (an index is a fixed part
        of a weight)."""
        cache = self.__dict__.setdefault("_selections", {})
        hit = cache.get((id(index), scatter))
        if hit is not None and hit[0] is index:
            return hit[1]
        host = np.asarray(self.to_host(index)).astype(np.int64)
        if scatter:
            cols_of = np.flatnonzero(host >= 0)
            cols_of = cols_of[np.argsort(host[cols_of])]
            keep = np.ones(rows, bool)
        else:
            keep = host >= 0
            cols_of = host[keep]
        row_ptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int32)
        arrays = (self.from_host(row_ptr, np.int32),
                  self.from_host(cols_of.astype(np.int32), np.int32),
                  self._full((int(keep.sum()),), 1.0, np.float32))
        cache[(id(index), scatter)] = (index, arrays)
        return arrays

    # ------------------------------------------------------------ helpers of the defaults
    def _full(self, shape: Sequence[int], value: float, dtype) -> Array:
        """A new array of ``value``."""
        a = self.empty(shape, dtype)
        self.fill(a, value)
        return a

    def _per_channel(self, v: Array, x: Array) -> Array:
        """Per-channel values v (C,) spread over x's shape viewed as (N, C, P): two products
        with ones, (C, 1) @ (1, P) then (N, 1) @ (1, C*P); exact, each output is 1 * v[c]."""
        n, c, p = _ncp(x, int(v.shape[0]))
        planes = self.gemm(v.reshape(c, 1), self._full((1, p), 1.0, v.dtype))
        return self.gemm(self._full((n, 1), 1.0, v.dtype), planes.reshape(1, c * p)
                         ).reshape(x.shape)

    def _channel_mean(self, x: Array, c: int, count: int) -> Array:
        """Mean over (N, P) per channel of x viewed as (N, C, P); count = N * P."""
        mean = self.empty((c,), x.dtype)
        self.channel_sum(x, mean, accumulate=False)
        self.scale(mean, 1.0 / max(count, 1))
        return mean

    def _inv_std(self, var: Array, eps: float) -> Array:
        """1 / sqrt(var + eps)."""
        c = int(var.shape[0])
        return self.div_sqrt(self._full((c,), 1.0, var.dtype),
                             self.add(var, self._full((c,), eps, var.dtype)), 0.0)

    def _decayed(self, g: Array, w: Array, weight_decay: float) -> Array:
        """g + weight_decay * w (g itself when there is no decay)."""
        if not weight_decay:
            return g
        d = self.copy(g)
        self.axpy(weight_decay, w, d)
        return d

    def _prox_and_mask(self, w: Array, threshold: float, mask: Array | None) -> None:
        """The tail of every fused update: the l1 prox when threshold > 0, then the mask."""
        if threshold > 0:
            self.soft_threshold(w, threshold, out=w)
        if mask is not None:
            self.apply_mask(w, mask)
