"""The NumPy backend: the readable reference every OpenCL kernel is tested against.

Written plainly: each primitive is the textbook formula, vectorized where that stays obvious.
It implements the core primitives of ``Backend`` and overrides every optional one (the
defaults built from the core are tested against these overrides).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import (Array, Backend, check_conv_epilogue, conv_output_size, flip_transpose_pattern,
                   hash_uniform)
from ..errors import ShapeError


def _as3d(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 3 else a.reshape((1,) + a.shape)


def _as_ncp(x: np.ndarray, channels: int) -> np.ndarray:
    """View x as (N, C, P): dim 0 is the batch, dim 1 the channels, the rest flattened."""
    return x.reshape(x.shape[0], channels, -1)


class NumpyBackend(Backend):
    """Host-memory backend: arrays are ``np.ndarray``; float32 by default, float64 allowed."""

    name = "numpy"

    def __init__(self, dtype=np.float32) -> None:
        super().__init__()
        self.dtype = np.dtype(dtype)
        self.device_name = "NumPy (host CPU)"

    def __repr__(self) -> str:
        return f"NumpyBackend(dtype={self.dtype.name})"

    # ------------------------------------------------------------------ memory
    def empty(self, shape, dtype=None):
        return np.empty(tuple(shape), dtype=self._dt(dtype))

    def zeros(self, shape, dtype=None):
        return np.zeros(tuple(shape), dtype=self._dt(dtype))

    def _dt(self, dtype):
        if dtype is None or np.dtype(dtype) == np.float32:
            return self.dtype
        return np.dtype(dtype)

    def from_host(self, host, dtype=None):
        host = np.asarray(host)
        dt = self._dt(dtype if dtype is not None else
                      (np.float32 if host.dtype.kind == "f" else host.dtype))
        self.transfers.to_device += 1
        self.transfers.bytes_to_device += host.size * dt.itemsize
        return np.array(host, dtype=dt, copy=True, order="C")

    def to_host(self, a):
        self.transfers.to_host += 1
        self.transfers.bytes_to_host += a.nbytes
        return np.array(a, copy=True)

    def copy(self, a):
        return a.copy()

    def copy_into(self, dst, src):
        dst.reshape(-1)[...] = src.reshape(-1)

    def fill(self, a, value):
        a[...] = value

    # ------------------------------------------------------------ dense linear algebra
    def gemm(self, a, b, trans_a=False, trans_b=False, out=None, alpha=1.0, beta=0.0):
        two_d = a.ndim == 2 and b.ndim == 2
        a3, b3 = _as3d(a), _as3d(b)
        if trans_a:
            a3 = a3.transpose(0, 2, 1)
        if trans_b:
            b3 = b3.transpose(0, 2, 1)
        if a3.shape[2] != b3.shape[1] or a3.shape[0] != b3.shape[0]:
            raise ShapeError(f"gemm: shapes {a.shape} (trans={trans_a}) and {b.shape} "
                             f"(trans={trans_b}) do not multiply")
        c = np.matmul(a3, b3)
        if alpha != 1.0:
            c *= alpha
        if two_d:
            c = c[0]
        if out is None:
            return c
        if beta == 0.0:
            out[...] = c.reshape(out.shape)
        else:
            out *= beta
            out += c.reshape(out.shape)
        return out

    def transpose(self, a, axes):
        return np.ascontiguousarray(np.transpose(a, axes))

    # ------------------------------------------------------------ convolution lowering
    def im2row(self, x, kh, kw, stride, pad, groups):
        n, c, h, w = x.shape
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
        cg = c // groups
        # (N, G, cg, kh, kw, OH, OW) -> (G, N, OH, OW, cg, kh, kw)
        cols = cols.reshape(n, groups, cg, kh, kw, oh, ow).transpose(1, 0, 5, 6, 2, 3, 4)
        return np.ascontiguousarray(cols).reshape(groups, n * oh * ow, cg * kh * kw)

    def row2im(self, rows, x_shape, kh, kw, stride, pad, groups):
        n, c, h, w = x_shape
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(w, kw, stride, pad)
        cg = c // groups
        cols = rows.reshape(groups, n, oh, ow, cg, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3)
        cols = cols.reshape(n, c, kh, kw, oh, ow)
        xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=rows.dtype)
        for i in range(kh):
            for j in range(kw):
                xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
        return np.ascontiguousarray(xp[:, :, pad:pad + h, pad:pad + w])

    # ------------------------------------------------------------ dense convolution
    # The im2row formulation Conv2d uses at any stride (one BLAS product per group): the fast
    # form on NumPy, and the same arithmetic as before these primitives existed, so NumPy
    # results are unchanged. OpenCL's direct kernels are checked against these.
    def conv2d(self, x, weight, bias, pad, groups):
        n, _, h, w = x.shape
        o, cg, kh, kw = weight.shape
        oh, ow = conv_output_size(h, kh, 1, pad), conv_output_size(w, kw, 1, pad)
        rows = self.im2row(x, kh, kw, 1, pad, groups)                 # (G, N*OH*OW, K)
        y = np.matmul(rows, weight.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1))
        y = y.reshape(groups, n, oh * ow, o // groups).transpose(1, 0, 3, 2)
        y = np.ascontiguousarray(y).reshape(n, o, oh, ow)
        if bias is not None:
            y += bias[None, :, None, None]
        return y

    def conv2d_input_grad(self, dy, weight, x_shape, pad, groups):
        n, o, oh, ow = dy.shape
        kh, kw = weight.shape[2:]
        if pad >= kh or pad >= kw:
            raise ShapeError(f"conv2d_input_grad: padding {pad} exceeds the {kh}x{kw} "
                             f"filter's {min(kh, kw) - 1}")
        dy3 = dy.reshape(n, groups, o // groups, oh * ow).transpose(1, 0, 3, 2)
        dy3 = dy3.reshape(groups, n * oh * ow, o // groups)
        drows = np.matmul(dy3, weight.reshape(groups, o // groups, -1))
        return self.row2im(drows, x_shape, kh, kw, 1, pad, groups)

    def conv2d_weight_grad(self, x, dy, kh, kw, pad, groups, out, accumulate=True):
        n, o, oh, ow = dy.shape
        rows = self.im2row(x, kh, kw, 1, pad, groups)                 # (G, N*OH*OW, K)
        dy3 = dy.reshape(n, groups, o // groups, oh * ow).transpose(1, 0, 3, 2)
        dy3 = dy3.reshape(groups, n * oh * ow, o // groups)
        g = np.matmul(dy3.transpose(0, 2, 1), rows).reshape(out.shape)
        if accumulate:
            out += g
        else:
            out[...] = g

    def conv2d_weight_grad_direct(self, out_channels, in_channels, groups):
        return True  # conv2d_weight_grad above is the lowering Conv2d would do instead

    # ------------------------------------------------------------ bias / channels
    def add_channel_bias(self, x, bias):
        _as_ncp(x, bias.shape[0])[...] += bias[None, :, None]

    def channel_sum(self, x, out, accumulate=True):
        s = _as_ncp(x, out.shape[0]).sum(axis=(0, 2))
        if accumulate:
            out += s
        else:
            out[...] = s

    # ------------------------------------------------------------ elementwise
    def relu(self, x):
        return np.maximum(x, 0)

    def relu_backward(self, dy, y):
        return np.where(y > 0, dy, 0).astype(dy.dtype)

    def add(self, a, b, out=None):
        return np.add(a, b, out=out)

    def add_relu(self, a, b):
        return np.maximum(a + b, 0).astype(a.dtype)

    def axpy(self, alpha, x, y):
        y += np.asarray(alpha, dtype=y.dtype) * x

    def mul(self, a, b, out=None):
        return np.multiply(a, b, out=out)

    def scale(self, a, s):
        a *= np.asarray(s, dtype=a.dtype)

    def div_sqrt(self, a, b, eps, out=None):
        return np.divide(a, np.sqrt(b) + a.dtype.type(eps), out=out)

    def dropout_mask(self, shape, p, seed, counter):
        n = int(np.prod(shape))
        u = hash_uniform(seed, counter, n)
        keep = (u >= np.float32(p)).astype(self.dtype)
        return (keep * self.dtype.type(1.0 / (1.0 - p))).reshape(shape)

    # ------------------------------------------------------------ pooling
    def _windows(self, x, k, stride, pad, fill):
        n, c, h, w = x.shape
        oh, ow = conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
        win = np.empty((n, c, oh, ow, k * k), dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                win[..., i * k + j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
        return win, oh, ow

    def maxpool2d(self, x, k, stride, pad):
        n, c, h, w = x.shape
        win, oh, ow = self._windows(x, k, stride, pad, -np.inf)
        best = win.argmax(axis=-1)
        y = np.take_along_axis(win, best[..., None], axis=-1)[..., 0]
        wi, wj = best // k, best % k
        rows = np.arange(oh)[:, None] * stride - pad + wi
        cols = np.arange(ow)[None, :] * stride - pad + wj
        return np.ascontiguousarray(y), (rows * w + cols).astype(np.int32)

    def maxpool2d_backward(self, dy, argmax, x_shape):
        n, c, h, w = x_shape
        dx = np.zeros((n * c, h * w), dtype=dy.dtype)
        plane = np.repeat(np.arange(n * c), dy[0, 0].size)
        np.add.at(dx, (plane, argmax.reshape(-1)), dy.reshape(-1))
        return dx.reshape(x_shape)

    def avgpool2d(self, x, k, stride, pad):
        win, _, _ = self._windows(x, k, stride, pad, 0.0)
        return (win.sum(axis=-1) / (k * k)).astype(x.dtype)

    def avgpool2d_backward(self, dy, x_shape, k, stride, pad):
        n, c, h, w = x_shape
        oh, ow = dy.shape[2], dy.shape[3]
        dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dy.dtype)
        share = dy / (k * k)
        for i in range(k):
            for j in range(k):
                dxp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += share
        return np.ascontiguousarray(dxp[:, :, pad:pad + h, pad:pad + w])

    # ------------------------------------------------------------ loss and metrics
    def softmax_cross_entropy(self, logits, labels):
        n = logits.shape[0]
        z = logits - logits.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - logsum
        rows = np.arange(n)
        loss = -logp[rows, labels].sum() / n
        grad = np.exp(logp)
        grad[rows, labels] -= 1
        grad /= n
        return np.array([loss], dtype=logits.dtype), grad.astype(logits.dtype)

    def count_correct(self, logits, labels):
        return np.array([(logits.argmax(axis=1) == labels).sum()], dtype=np.int32)

    # ------------------------------------------------------------ batch norm
    def batchnorm_train(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        c = gamma.shape[0]
        x3 = _as_ncp(x, c)
        count = x3.shape[0] * x3.shape[2]
        mean = x3.mean(axis=(0, 2))
        var = x3.var(axis=(0, 2))
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        xhat = (x3 - mean[None, :, None]) * inv_std[None, :, None]
        y = xhat * gamma[None, :, None] + beta[None, :, None]
        unbiased = var * count / max(count - 1, 1)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * unbiased
        return y.reshape(x.shape).astype(x.dtype), xhat.reshape(x.shape).astype(x.dtype), inv_std

    def batchnorm_relu_train(self, x, gamma, beta, running_mean, running_var, momentum, eps):
        y, xhat, inv_std = self.batchnorm_train(x, gamma, beta, running_mean, running_var,
                                                momentum, eps)
        return np.maximum(y, 0).astype(x.dtype), xhat, inv_std

    def batchnorm_relu_backward(self, dy, y, xhat, inv_std, gamma, dgamma, dbeta):
        return self.batchnorm_backward(np.where(y > 0, dy, 0).astype(dy.dtype), xhat, inv_std,
                                       gamma, dgamma, dbeta)

    def batchnorm_eval(self, x, gamma, beta, running_mean, running_var, eps):
        c = gamma.shape[0]
        inv_std = 1.0 / np.sqrt(running_var + eps)
        scale = (gamma * inv_std)[None, :, None]
        shift = (beta - running_mean * gamma * inv_std)[None, :, None]
        return (_as_ncp(x, c) * scale + shift).reshape(x.shape).astype(x.dtype)

    def batchnorm_backward(self, dy, xhat, inv_std, gamma, dgamma, dbeta):
        c = gamma.shape[0]
        dy3, xh3 = _as_ncp(dy, c), _as_ncp(xhat, c)
        count = dy3.shape[0] * dy3.shape[2]
        sum_dy = dy3.sum(axis=(0, 2))
        sum_dy_xhat = (dy3 * xh3).sum(axis=(0, 2))
        dgamma += sum_dy_xhat
        dbeta += sum_dy
        dx = (gamma * inv_std)[None, :, None] / count * (
            count * dy3 - sum_dy[None, :, None] - xh3 * sum_dy_xhat[None, :, None])
        return dx.reshape(dy.shape).astype(dy.dtype)

    # ------------------------------------------------------------ reductions
    def sum(self, a):
        return np.array([a.sum()], dtype=a.dtype)

    def count_zeros(self, a):
        return np.array([np.count_nonzero(a == 0)], dtype=np.int32)

    # ------------------------------------------------------------ optimizer updates
    def _finish(self, w, threshold, mask):
        if threshold > 0:
            self.soft_threshold(w, threshold, out=w)
        if mask is not None:
            w *= mask

    def sgd_update(self, w, g, velocity, lr, momentum, nesterov, weight_decay, threshold, mask):
        d = g + weight_decay * w if weight_decay else g
        if velocity is not None and momentum:
            velocity *= momentum
            velocity += d
            d = d + momentum * velocity if nesterov else velocity
        w -= w.dtype.type(lr) * d
        self._finish(w, threshold, mask)

    def rmsprop_update(self, w, g, square_avg, lr, alpha, eps, weight_decay, threshold, mask):
        d = g + weight_decay * w if weight_decay else g
        square_avg *= alpha
        square_avg += (1 - alpha) * d * d
        w -= (lr * d / (np.sqrt(square_avg) + eps)).astype(w.dtype)
        self._finish(w, threshold, mask)

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, threshold, mask):
        d = g + weight_decay * w if weight_decay else g
        m *= beta1
        m += (1 - beta1) * d
        v *= beta2
        v += (1 - beta2) * d * d
        mhat = m / (1 - beta1 ** step)
        vhat = v / (1 - beta2 ** step)
        w -= (lr * mhat / (np.sqrt(vhat) + eps)).astype(w.dtype)
        self._finish(w, threshold, mask)

    def soft_threshold(self, w, threshold, out=None):
        r = np.sign(w) * np.maximum(np.abs(w) - w.dtype.type(threshold), 0)
        if out is None:
            return r.astype(w.dtype)
        out[...] = r
        return out

    def apply_mask(self, w, mask):
        w *= mask

    def l1_reweight(self, w, eps, out=None):
        alive = np.count_nonzero(w)
        s = np.sqrt(np.sum(w.astype(np.float64) ** 2) / alive) if alive else 0.0
        r = np.full(w.shape, 1.0 / eps) if s == 0 else s / (np.abs(w) + eps * s)
        if out is None:
            return r.astype(w.dtype)
        out[...] = r
        return out

    def mask_zeros(self, w, mask):
        mask[w == 0] = 0

    def hard_threshold(self, w, threshold, out=None):
        r = np.where(np.abs(w) > w.dtype.type(threshold), w, 0)
        if out is None:
            return r.astype(w.dtype)
        out[...] = r
        return out

    def group_soft_threshold(self, w, threshold, out=None, columns=False):
        rows = w.shape[0] if w.ndim else 0
        w2 = w.reshape(rows, -1) if rows else w.reshape(0, 0)
        axis = 0 if columns else 1
        norm = np.sqrt(np.sum(w2.astype(np.float64) ** 2, axis=axis, keepdims=True))
        t = threshold * np.sqrt(w2.shape[axis])
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.where(norm > 0, np.maximum(0.0, 1.0 - t / norm), 0.0)
        r = (w2 * keep).reshape(w.shape)
        if out is None:
            return r.astype(w.dtype)
        out[...] = r
        return out

    def soft_threshold_scaled(self, w, scale, threshold, out=None):
        t = w.dtype.type(threshold) * scale
        r = np.sign(w) * np.maximum(np.abs(w) - t, 0)
        if out is None:
            return r.astype(w.dtype)
        out[...] = r
        return out

    # ------------------------------------------------------------ CSR
    def csr_from_dense(self, w):
        rows, cols = np.nonzero(w)
        row_ptr = np.zeros(w.shape[0] + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=row_ptr[1:])
        return row_ptr, cols.astype(np.int32), np.ascontiguousarray(w[rows, cols])

    def csr_to_dense(self, row_ptr, col_idx, values, shape):
        dense = np.zeros(tuple(shape), dtype=values.dtype)
        rows = np.repeat(np.arange(shape[0]), np.diff(row_ptr))
        dense[rows, col_idx] = values
        return dense

    def csr_transpose(self, row_ptr, col_idx, values, shape, groups=1):
        o, k = shape
        og = o // groups
        rows = np.repeat(np.arange(o), np.diff(row_ptr))
        t_rows = (rows // og) * k + col_idx          # row of the stacked per-group transpose
        t_cols = rows % og
        perm = np.lexsort((t_cols, t_rows)).astype(np.int32)
        t_row_ptr = np.zeros(groups * k + 1, dtype=np.int32)
        np.cumsum(np.bincount(t_rows, minlength=groups * k), out=t_row_ptr[1:])
        return t_row_ptr, t_cols[perm].astype(np.int32), values[perm], perm

    def gather(self, src, index, out=None):
        r = src[index]
        if out is None:
            return r
        out[...] = r
        return out

    def csr_matmul_t(self, x, row_ptr, col_idx, values, shape):
        x3 = _as3d(x)
        g = x3.shape[0]
        o, k = shape
        og = o // g
        y = np.zeros((g, x3.shape[1], og), dtype=x.dtype)
        rows = np.repeat(np.arange(o), np.diff(row_ptr))
        for gi in range(g):
            sel = (rows >= gi * og) & (rows < (gi + 1) * og)
            # y[:, r] += x[:, c] * v for each nonzero (r, c, v) of the group
            np.add.at(y[gi].T, rows[sel] - gi * og, (x3[gi][:, col_idx[sel]] * values[sel]).T)
        return y if x.ndim == 3 else y[0]

    def csr_matmul(self, dy, t_row_ptr, t_col_idx, t_values, shape):
        dy3 = _as3d(dy)
        g = dy3.shape[0]
        o, k = shape
        dx = np.zeros((g, dy3.shape[1], k), dtype=dy.dtype)
        t_rows = np.repeat(np.arange(g * k), np.diff(t_row_ptr))
        for gi in range(g):
            sel = (t_rows >= gi * k) & (t_rows < (gi + 1) * k)
            np.add.at(dx[gi].T, t_rows[sel] - gi * k, (dy3[gi][:, t_col_idx[sel]] * t_values[sel]).T)
        return dx if dy.ndim == 3 else dx[0]

    def qcsr_matmul_t(self, x, row_ptr, col_idx, codes, codebook, shape):
        # Reference: the values are the codebook entries the codes name.
        return self.csr_matmul_t(x, row_ptr, col_idx, codebook[codes], shape)

    def qcsr_conv2d(self, x, row_ptr, taps, codes, codebook, shape, bias, kh, kw, stride, pad,
                    groups, residual=None, relu=False, pool=1):
        return self.csr_conv2d(x, row_ptr, taps, codebook[codes], shape, bias, kh, kw, stride,
                               pad, groups, residual, relu, pool)

    def csr_conv_taps(self, col_idx, kh, kw):
        col = np.asarray(col_idx, dtype=np.int64)
        cl, r = np.divmod(col, kh * kw)
        ky, kx = np.divmod(r, kw)
        return ((cl << 16) | (ky << 8) | kx).astype(np.int32)

    def csr_conv_wgrad(self, dy, x, row_ptr, taps, shape, kh, kw, stride, pad, groups, out,
                       accumulate=True):
        # the default (im2row + csr_sddmm) on the CSR columns the packed taps stand for
        t = np.asarray(taps, np.int64)
        cols = (((t >> 16) * kh + ((t >> 8) & 255)) * kw + (t & 255)).astype(np.int32)
        super().csr_conv_wgrad(dy, x, row_ptr, cols, shape, kh, kw, stride, pad, groups, out,
                               accumulate)

    def csr_flip_transpose(self, t_row_ptr, t_col_idx, kh, kw):
        return flip_transpose_pattern(np.asarray(t_row_ptr), np.asarray(t_col_idx), kh, kw)

    def csr_conv2d(self, x, row_ptr, taps, values, shape, bias, kh, kw, stride, pad, groups,
                   residual=None, relu=False, pool=1):
        # Reference: rebuild the dense filter bank from the taps, then im2row + GEMM.
        check_conv_epilogue(pool)
        o, k = shape
        rows = np.repeat(np.arange(o), np.diff(row_ptr))
        w = np.zeros((o, k // (kh * kw), kh, kw), dtype=x.dtype)
        w[rows, taps >> 16, (taps >> 8) & 255, taps & 255] = values
        n, c, h, wd = x.shape
        oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
        cols = self.im2row(x, kh, kw, stride, pad, groups)            # (G, N*OH*OW, K)
        y = cols @ w.reshape(groups, o // groups, k).transpose(0, 2, 1)  # (G, N*OH*OW, O/G)
        y = y.reshape(groups, n, oh, ow, o // groups).transpose(1, 0, 4, 2, 3)
        y = np.ascontiguousarray(y).reshape(n, o, oh, ow)
        if bias is not None:
            y += bias[None, :, None, None]
        if residual is not None:
            y += residual
        if relu:
            np.maximum(y, 0, out=y)
        if pool == 2:
            y = y[:, :, :oh // 2 * 2, :ow // 2 * 2].reshape(n, o, oh // 2, 2, ow // 2, 2)
            y = np.ascontiguousarray(y.max(axis=(3, 5)))
        return y

    def csr_sddmm(self, dy, x, row_ptr, col_idx, shape, out, accumulate=True):
        dy3, x3 = _as3d(dy), _as3d(x)
        og = shape[0] // dy3.shape[0]
        rows = np.repeat(np.arange(shape[0]), np.diff(row_ptr))
        grp = rows // og
        vals = np.einsum("em,em->e", dy3[grp, :, rows - grp * og], x3[grp, :, col_idx])
        if accumulate:
            out += vals.astype(out.dtype)
        else:
            out[...] = vals

    # ------------------------------------------------------------ shared (quantized) weights
    def nearest_centroid(self, values, mids, out):
        out[...] = np.searchsorted(mids, values.reshape(-1))
        return out

    def segment_sum(self, values, order, offsets, out=None):
        k = int(offsets.size) - 1
        sums = np.zeros(k, dtype=values.dtype)
        starts, ends = offsets[:-1], offsets[1:]
        full = starts < ends
        if np.any(full):  # the non-empty segments tile values[order] in order
            sums[full] = np.add.reduceat(values.reshape(-1)[order], starts[full])
        if out is None:
            return sums
        out[...] = sums
        return out

    # ------------------------------------------------------------ block-diagonal weights
    def block_pack(self, x, index, nb, out=None):
        m, n = int(x.shape[-2]), int(x.shape[-1])
        x2 = x.reshape(m, n)
        packed = np.where(index >= 0, x2[:, np.maximum(index, 0)], 0).astype(x.dtype)
        packed = packed.reshape(m, -1, nb).transpose(1, 0, 2)
        if out is None:
            return np.ascontiguousarray(packed)
        out[...] = packed
        return out

    def block_matmul(self, x, in_index, w, out_index, n_out, bias=None, relu=False, out=None):
        packed = self.block_pack(x, in_index, w.shape[1])               # (B, M, nk)
        flat = (packed @ w).transpose(1, 0, 2).reshape(packed.shape[1], -1)
        valid = out_index >= 0
        y = np.zeros((packed.shape[1], n_out), dtype=flat.dtype)
        y[:, out_index[valid]] = flat[:, valid]
        if bias is not None:
            y += bias
        if relu:
            y = np.maximum(y, 0)
        if out is None:
            return y
        out.reshape(y.shape)[...] = y
        return out
