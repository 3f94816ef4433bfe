"""Fully connected and convolution layers: both are ``Y = X @ W.T`` on a Parameter.

Conv lowers its input with im2row to (G, N*OH*OW, C/G*kh*kw) rows, so the weight's product
(dense GEMM or CSR, decided inside Parameter) is the same call as for Linear.
"""
from __future__ import annotations

import numpy as np

from ..backend.base import conv_output_size
from ..errors import ConfigError, ShapeError, StateError
from ..parameter import Parameter, he_normal
from ..sparse import fits_conv_taps
from .base import Module, check_input


def _positive(name: str, value: int, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{what}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Linear(Module):
    """y = x @ W.T + b with W (out, in); W gets the l1 prox, b does not."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.in_features = _positive("in_features", in_features, "Linear")
        self.out_features = _positive("out_features", out_features, "Linear")
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(he_normal(rng, (out_features, in_features), in_features),
                                prox=True)
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None

    def layer_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        check_input(x, self.backend, 2, "Linear")
        if x.shape[1] != self.in_features:
            raise ShapeError(f"Linear({self.in_features}, {self.out_features}) got input with "
                             f"{x.shape[1]} features (shape {tuple(x.shape)})")
        self._x = x.reshape((1,) + tuple(x.shape))
        y = self.weight.matmul_t(self._x).reshape((x.shape[0], self.out_features))
        if self.bias is not None:
            self.backend.add_channel_bias(y, self.bias.data)
        return y

    def backward(self, dy, need_dx=True):
        dy3 = dy.reshape((1,) + tuple(dy.shape))
        self.weight.accumulate_outer_grad(dy3, self._x)
        if self.bias is not None:
            self.backend.channel_sum(dy, self.bias.grad_buffer())
        if not need_dx:
            return None
        return self.weight.matmul(dy3).reshape((dy.shape[0], self.in_features))


def _kernel_hw(value, what: str) -> tuple[int, int]:
    """(kh, kw) of a kernel size given as one integer (square) or a pair (height, width)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(f"{what}: kernel_size must be an integer or a pair (height, "
                              f"width), got {value!r}")
        return _positive("kernel height", value[0], what), _positive("kernel width", value[1], what)
    k = _positive("kernel_size", value, what)
    return k, k


class Conv2d(Module):
    """2-D convolution (cross-correlation) via im2row + GEMM/CSR; stride, zero padding, groups.

    ``kernel_size`` is an integer (square kernel) or a pair (height, width): the strips of a CP
    convolution (``layers.lowrank``) are k x 1 and 1 x k. Stride and padding are the same along
    both axes."""

    DIRECT_MIN_WIDTH = 8  # narrowest output row computed by the backend's direct conv2d
    # after a direct forward: backend conv2d_weight_grad where the backend finds it faster
    # (conv2d_weight_grad_direct: wide layers are lowered, im2row + gemm), else always im2row
    DIRECT_WEIGHT_GRAD = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = True,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        what = "Conv2d"
        self.in_channels = _positive("in_channels", in_channels, what)
        self.out_channels = _positive("out_channels", out_channels, what)
        self.kh, self.kw = _kernel_hw(kernel_size, what)
        self.kernel_size = self.kh if self.kh == self.kw else (self.kh, self.kw)
        self.stride = _positive("stride", stride, what)
        self.groups = _positive("groups", groups, what)
        if not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ConfigError(f"{what}: padding must be a non-negative integer, got {padding!r}")
        self.padding = int(padding)
        if in_channels % groups or out_channels % groups:
            raise ConfigError(f"{what}: groups={groups} must divide in_channels={in_channels} "
                              f"and out_channels={out_channels}")
        rng = rng if rng is not None else np.random.default_rng()
        kh, kw = self.kh, self.kw
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(he_normal(rng, (out_channels, in_channels // groups, kh, kw),
                                          fan_in), prox=True, groups=groups)
        self.bias = Parameter(np.zeros(out_channels, np.float32)) if bias else None
        self._rows = None  # im2row rows of the last training-mode forward, for backward
        self._x = None     # or its input, when forward was a direct conv2d

    def layer_config(self) -> dict:
        k = self.kernel_size
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(k) if isinstance(k, tuple) else k, "stride": self.stride,
                "padding": self.padding,
                "groups": self.groups, "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}")

    def output_shape(self, x_shape) -> tuple[int, int, int, int]:
        n, _, h, w = x_shape
        s, p = self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, self.kh, s, p),
                conv_output_size(w, self.kw, s, p))

    def forward(self, x):
        b = self.backend
        check_input(x, b, 4, "Conv2d")
        if x.shape[1] != self.in_channels:
            raise ShapeError(f"Conv2d expects {self.in_channels} input channels, got "
                             f"{x.shape[1]} (shape {tuple(x.shape)})")
        n, o, oh, ow = self.output_shape(x.shape)
        if oh < 1 or ow < 1:
            raise ShapeError(f"Conv2d: input {tuple(x.shape)} is smaller than the "
                             f"{self.kh}x{self.kw} kernel (padding {self.padding})")
        g = self.groups
        self._x_shape = tuple(x.shape)
        if self._direct_sparse():
            # a CSR filter bank: direct sparse convolution, no im2row buffer (training keeps x:
            # backward reduces it with dY for the weight gradient on the pattern)
            self._rows, self._x = None, (x if self.training else None)
            return self.weight.csr.conv2d(x, None if self.bias is None else self.bias.data,
                                          self.kh, self.kw, self.stride, self.padding)
        if self._direct_dense(ow):
            # stride 1, dense filters: a direct convolution (no im2row rows, no transpose);
            # backward lowers x itself for the weight gradient
            self._rows, self._x = None, (x if self.training else None)
            return b.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data,
                            self.padding, g)
        self._x = None
        rows = b.im2row(x, self.kh, self.kw, self.stride, self.padding, g)
        # kept for backward in training only: at eval batch sizes the rows of every conv layer
        # together would hold gigabytes (ResNet-32 at batch 1000: ~11 GB)
        self._rows = rows if self.training else None
        y = self.weight.matmul_t(rows)                             # (G, N*P, O/G)
        y = b.transpose(y.reshape((g, n, oh * ow, o // g)), (1, 0, 3, 2)).reshape((n, o, oh, ow))
        if self.bias is not None:
            b.add_channel_bias(y, self.bias.data)
        return y

    def _direct_sparse(self) -> bool:
        """Whether forward can skip im2row: CSR weights whose taps fit the packed (channel,
        ky, kx) form of csr_conv_taps (in training too: issue 20 measured it faster than
        im2row + CSR product + transpose at LeNet-5's shapes)."""
        return (self.weight.is_sparse
                and fits_conv_taps(self.in_channels // self.groups, self.kh, self.kw))

    def _sparse_input_grad(self) -> bool:
        """Whether backward's dX is a direct sparse convolution too: CSR filters, stride 1,
        a square "same" convolution (as for dense filters: with less padding dX is a full
        convolution, mostly over zeros; at LeNet-5's conv2 that was ~1.5x slower than the CSR
        product + row2im), taps of the flipped bank that fit."""
        return (self.weight.is_sparse and self.stride == 1
                and self.kh == self.kw and 2 * self.padding == self.kh - 1
                and fits_conv_taps(self.out_channels // self.groups, self.kh, self.kw))

    def _direct_dense(self, out_width: int) -> bool:
        """Whether this convolution is a backend ``conv2d``: dense filters, stride 1 and output
        rows of at least DIRECT_MIN_WIDTH pixels (narrower rows, as in VGG16's last stages at
        4x4 and 2x2, left the direct kernels' 8-pixel blocks mostly empty: slower than im2row +
        gemm in issue 20's measurements). Any kernel shape (rectangular ones are in the parity
        table). Block-diagonal weights keep their own products."""
        return (not self.weight.is_sparse and not self.weight.is_blockdiag and self.stride == 1
                and out_width >= self.DIRECT_MIN_WIDTH)

    def backward(self, dy, need_dx=True):
        if self._rows is None and self._x is None:
            raise StateError("Conv2d.backward after an eval-mode forward (inference keeps no "
                               "im2row rows): call model.train() before the forward pass")
        if self._rows is None and self.weight.is_sparse:
            return self._sparse_backward(dy, need_dx)
        b = self.backend
        n, o, oh, ow = dy.shape
        g, k = self.groups, (self.kh, self.kw)
        direct = self._rows is None
        direct_dw = direct and self.DIRECT_WEIGHT_GRAD and \
            b.conv2d_weight_grad_direct(o, self.in_channels, g)
        if direct_dw:  # reduced over pixels, no im2row rows
            b.conv2d_weight_grad(self._x, dy, *k, self.padding, g, self.weight.grad_buffer())
        dy3 = None
        if not direct_dw:
            rows = self._rows if not direct else b.im2row(self._x, *k, 1, self.padding, g)
            dy3 = self._dy_rows(dy)
            self.weight.accumulate_outer_grad(dy3, rows)
        if self.bias is not None:
            b.channel_sum(dy, self.bias.grad_buffer())
        if not need_dx:
            return None
        if direct and 2 * self.padding == self.kh - 1 == self.kw - 1:
            # a "same" convolution along both axes: its input gradient is one too (with less
            # padding it would be a full convolution, mostly over zeros: gemm + row2im is faster)
            return b.conv2d_input_grad(dy, self.weight.data, self._x_shape, self.padding, g)
        drows = self.weight.matmul(dy3 if dy3 is not None else self._dy_rows(dy))
        return b.row2im(drows, self._x_shape, *k, self.stride, self.padding, g)

    def _dy_rows(self, dy):
        """dy (N, O, OH, OW) as the (G, N*OH*OW, O/G) rows of the lowered products."""
        n, o, oh, ow = dy.shape
        g = self.groups
        dy3 = self.backend.transpose(dy.reshape((n, g, o // g, oh * ow)), (1, 0, 3, 2))
        return dy3.reshape((g, n * oh * ow, o // g))

    def _sparse_backward(self, dy, need_dx: bool):
        """Backward after a direct sparse forward (CSR filters): dW on the pattern straight
        from x and dY (no im2row rows); dX a direct sparse convolution too for a stride-1
        "same" convolution, else the CSR product and row2im."""
        b, g = self.backend, self.groups
        self.weight.accumulate_conv_grad(dy, self._x, self.kh, self.kw, self.stride,
                                         self.padding)
        if self.bias is not None:
            b.channel_sum(dy, self.bias.grad_buffer())
        if not need_dx:
            return None
        if self._sparse_input_grad():
            return self.weight.csr.conv2d_input_grad(dy, self._x_shape, self.kh, self.kw,
                                                     self.padding)
        drows = self.weight.matmul(self._dy_rows(dy))
        return b.row2im(drows, self._x_shape, self.kh, self.kw, self.stride, self.padding, g)
