"""The backend interface: the small set of primitives every layer and optimizer is written against.

A backend owns device memory and implements these primitives. Layers never touch buffers directly;
they only call these methods, so a new device needs only a new subclass. Arrays are opaque to
layers except for ``.shape``, ``.dtype``, ``.size`` and ``.reshape`` (a view, no copy).

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
from typing import Any, Sequence

import numpy as np

Array = Any  # backend-specific device array (np.ndarray, pyopencl.array.Array)


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


class Backend(ABC):
    """Primitive operations on one device. Subclasses: NumpyBackend, OpenCLBackend."""

    name: str = "abstract"

    def __init__(self) -> None:
        self.transfers = TransferStats()

    # ------------------------------------------------------------------ memory
    @abstractmethod
    def empty(self, shape: Sequence[int], dtype=np.float32) -> Array:
        """Uninitialized array."""

    @abstractmethod
    def zeros(self, shape: Sequence[int], dtype=np.float32) -> Array:
        """Array of zeros."""

    @abstractmethod
    def from_host(self, host: np.ndarray, dtype=None) -> Array:
        """Copy a host array to the device (counted in ``transfers``)."""

    @abstractmethod
    def to_host(self, a: Array) -> np.ndarray:
        """Copy a device array back to a new host array (counted in ``transfers``)."""

    @abstractmethod
    def copy(self, a: Array) -> Array:
        """A new device array with the same contents (device-side copy)."""

    @abstractmethod
    def copy_into(self, dst: Array, src: Array) -> None:
        """dst[...] = src, same size, device-side."""

    @abstractmethod
    def fill(self, a: Array, value: float) -> None:
        """a[...] = value."""

    def nbytes(self, a: Array) -> int:
        """Bytes held on the device by ``a``."""
        return int(a.size) * np.dtype(a.dtype).itemsize

    def synchronize(self) -> None:
        """Wait for all queued work (no-op on synchronous backends)."""

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

    # ------------------------------------------------------------ bias / channels
    @abstractmethod
    def add_channel_bias(self, x: Array, bias: Array) -> None:
        """In place ``x[n, c, p] += bias[c]`` for x viewed as (N, C, P) (P = 1 for linear)."""

    @abstractmethod
    def channel_sum(self, x: Array, out: Array, accumulate: bool = True) -> None:
        """``out[c] (+)= sum_{n,p} x[n, c, p]`` for x viewed as (N, C, P): the bias gradient."""

    # ------------------------------------------------------------ elementwise
    @abstractmethod
    def relu(self, x: Array) -> Array:
        """max(x, 0)."""

    @abstractmethod
    def relu_backward(self, dy: Array, y: Array) -> Array:
        """dy where y > 0, else 0."""

    @abstractmethod
    def add(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """Elementwise a + b (same shape)."""

    @abstractmethod
    def axpy(self, alpha: float, x: Array, y: Array) -> None:
        """In place y += alpha * x."""

    @abstractmethod
    def mul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """Elementwise a * b (same shape)."""

    @abstractmethod
    def scale(self, a: Array, s: float) -> None:
        """In place a *= s."""

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

    @abstractmethod
    def avgpool2d(self, x: Array, k: int, stride: int, pad: int) -> Array:
        """Average pooling; zero padding counts in the divisor k*k (PyTorch's default)."""

    @abstractmethod
    def avgpool2d_backward(self, dy: Array, x_shape: Sequence[int], k: int, stride: int,
                           pad: int) -> Array:
        """Adjoint of ``avgpool2d``."""

    # ------------------------------------------------------------ loss and metrics
    @abstractmethod
    def softmax_cross_entropy(self, logits: Array, labels: Array) -> tuple[Array, Array]:
        """Mean softmax cross-entropy over N rows (stable) and its gradient d loss / d logits.

        ``labels`` are int32 class indices. Returns (loss as a 1-element array, dlogits (N, K)).
        """

    @abstractmethod
    def count_correct(self, logits: Array, labels: Array) -> Array:
        """Number of rows whose argmax (first maximum) equals the label, as a 1-element int32 array."""

    # ------------------------------------------------------------ batch norm
    @abstractmethod
    def batchnorm_train(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                        running_var: Array, momentum: float, eps: float
                        ) -> tuple[Array, Array, Array]:
        """Batch-statistics normalization over (N, P) per channel of x viewed as (N, C, P).

        Returns (y, xhat, inv_std). Updates running stats in place:
        ``r = (1 - momentum) * r + momentum * stat`` with the unbiased variance for running_var.
        """

    @abstractmethod
    def batchnorm_eval(self, x: Array, gamma: Array, beta: Array, running_mean: Array,
                       running_var: Array, eps: float) -> Array:
        """Normalization with running statistics."""

    @abstractmethod
    def batchnorm_backward(self, dy: Array, xhat: Array, inv_std: Array, gamma: Array,
                           dgamma: Array, dbeta: Array) -> Array:
        """Gradient of train-mode batch norm; accumulates into dgamma/dbeta, returns dx."""

    # ------------------------------------------------------------ reductions
    @abstractmethod
    def sum(self, a: Array) -> Array:
        """Sum of all elements as a 1-element float array."""

    @abstractmethod
    def count_zeros(self, a: Array) -> Array:
        """Number of elements exactly equal to 0, as a 1-element int32 array."""

    # ------------------------------------------------------------ optimizer updates
    # Each is one fused step for one parameter: the usual update, then the l1 soft-threshold
    # sign(w)*max(|w| - threshold, 0) when threshold > 0, then w *= mask when a mask is given.
    @abstractmethod
    def sgd_update(self, w: Array, g: Array, velocity: Array | None, lr: float, momentum: float,
                   nesterov: bool, weight_decay: float, threshold: float,
                   mask: Array | None) -> None:
        """SGD (PyTorch convention): g += wd*w; v = mu*v + g; step = g + mu*v if nesterov else v."""

    @abstractmethod
    def rmsprop_update(self, w: Array, g: Array, square_avg: Array, lr: float, alpha: float,
                       eps: float, weight_decay: float, threshold: float,
                       mask: Array | None) -> None:
        """RMSProp: s = alpha*s + (1-alpha)*g^2; w -= lr * g / (sqrt(s) + eps)."""

    @abstractmethod
    def adam_update(self, w: Array, g: Array, m: Array, v: Array, lr: float, beta1: float,
                    beta2: float, eps: float, step: int, weight_decay: float, threshold: float,
                    mask: Array | None) -> None:
        """Adam with bias correction: w -= lr * mhat / (sqrt(vhat) + eps), step counts from 1."""

    @abstractmethod
    def soft_threshold(self, w: Array, threshold: float, out: Array | None = None) -> Array:
        """sign(w) * max(|w| - threshold, 0) (in place when out is w)."""

    @abstractmethod
    def apply_mask(self, w: Array, mask: Array) -> None:
        """In place w *= mask."""

    @abstractmethod
    def l1_reweight(self, w: Array, eps: float, out: Array | None = None) -> Array:
        """Per-weight l1 scales of reweighted l1: r = s / (|w| + eps * s), s the RMS of the
        nonzero entries of w (1/eps everywhere when all are zero); computed on the device."""

    @abstractmethod
    def soft_threshold_scaled(self, w: Array, scale: Array, threshold: float,
                              out: Array | None = None) -> Array:
        """sign(w) * max(|w| - threshold * scale, 0), a per-element threshold (in place when
        out is w)."""

    @abstractmethod
    def hard_threshold(self, w: Array, threshold: float, out: Array | None = None) -> Array:
        """w where |w| > threshold, else 0 (in place when out is w)."""

    @abstractmethod
    def mask_zeros(self, w: Array, mask: Array) -> None:
        """In place mask *= (w != 0): the zeros of w join the mask's (a 0/1 array like w)."""

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
    def csr_matmul(self, dy: Array, t_row_ptr: Array, t_col_idx: Array, t_values: Array,
                   shape: Sequence[int]) -> Array:
        """Grouped dense x CSR: dy (G, M, O/G) -> dx (G, M, K), ``dx[g] = dy[g] @ W_g``.

        Takes the *transposed* CSR from ``csr_transpose`` (row = input column) so each output
        element is a dot product over its own nonzeros; ``shape`` is W's (O, K)."""

    @abstractmethod
    def csr_conv_taps(self, col_idx: Array, kh: int, kw: int) -> Array:
        """Decode the columns (cl*kh + ky)*kw + kx of a CSR filter bank into int32 taps
        ``cl << 16 | ky << 8 | kx`` (cl < 32768, kh, kw < 256), the form csr_conv2d reads."""

    @abstractmethod
    def csr_conv2d(self, x: Array, row_ptr: Array, taps: Array, values: Array,
                   shape: Sequence[int], bias: Array | None, kh: int, kw: int, stride: int,
                   pad: int, groups: int) -> Array:
        """Direct sparse convolution (inference): x (N, C, H, W) with the CSR filter bank W
        (O, C/G*kh*kw) given by row_ptr/taps/values -> (N, O, OH, OW) + bias, zero padding.
        Equals im2row + csr_matmul_t + transpose + bias, without the im2row buffer."""

    @abstractmethod
    def csr_sddmm(self, dy: Array, x: Array, row_ptr: Array, col_idx: Array,
                  shape: Sequence[int], out: Array, accumulate: bool = True) -> None:
        """Weight gradient on the sparsity pattern: for each nonzero (o, k) of W (O, K),
        ``out[e] (+)= sum_m dy[g, m, o - g*O/G] * x[g, m, k]``, g = o // (O/G)."""
