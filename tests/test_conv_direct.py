"""The stride-1 convolution primitives (conv2d, its input and weight gradients) against their
definition.

The OpenCL kernels are compared with NumPy in the nn parity table (test_opencl_nn_ops.py);
here NumPy's im2row formulation is checked against an independent one: every window of the
padded input (sliding_window_view) times the filters, and the input gradient through the
adjoint identity <conv2d(x), dy> = <x, conv2d_input_grad(dy)>, the weight gradient as the
windows times dy summed over images and pixels."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.backend import get_backend
from minidnn.errors import ShapeError


def _windows(x, w_shape, pad, groups):
    n = x.shape[0]
    o, cg, kh, kw = w_shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return win.reshape(n, groups, cg, win.shape[2], win.shape[3], kh, kw)


def _windows_conv(x, w, pad, groups):
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    win = _windows(x, w.shape, pad, groups)
    oh, ow = win.shape[3:5]
    y = np.einsum("ngcyxij,gocij->ngoyx", win, w.reshape(groups, o // groups, cg, kh, kw))
    return y.reshape(n, o, oh, ow)


@pytest.mark.parametrize("n,c,h,w,o,k,pad,groups", [
    (2, 4, 7, 9, 6, 3, 1, 2), (2, 3, 8, 8, 5, 5, 0, 1), (1, 4, 5, 6, 4, 2, 1, 1),
    (3, 6, 6, 5, 9, 3, 2, 3), (2, 2, 4, 4, 3, 1, 0, 1)])
def test_numpy_conv2d_matches_the_definition(n, c, h, w, o, k, pad, groups):
    be = get_backend("numpy")
    rng = np.random.default_rng(0)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c // groups, k, k))
    bias = rng.standard_normal(o)
    y = be.conv2d(x, wt, bias, pad, groups)
    np.testing.assert_allclose(y, _windows_conv(x, wt, pad, groups) + bias[:, None, None],
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = be.conv2d_input_grad(dy, wt, x.shape, pad, groups)
    assert dx.shape == x.shape
    y0 = be.conv2d(x, wt, None, pad, groups)
    assert abs(np.vdot(y0, dy) - np.vdot(x, dx)) < 1e-9 * np.abs(y0).sum() * np.abs(dy).max()
    grad = np.einsum("ngcyxij,ngoyx->gocij", _windows(x, wt.shape, pad, groups),
                     dy.reshape(n, groups, o // groups, *y.shape[2:])).reshape(wt.shape)
    dw0 = rng.standard_normal(wt.shape)
    dw = dw0.copy()
    be.conv2d_weight_grad(x, dy, k, k, pad, groups, dw)
    np.testing.assert_allclose(dw, dw0 + grad, rtol=1e-12, atol=1e-12)
    be.conv2d_weight_grad(x, dy, k, k, pad, groups, dw, accumulate=False)
    np.testing.assert_allclose(dw, grad, rtol=1e-12, atol=1e-12)


def test_input_grad_refuses_padding_past_the_filter():
    be = get_backend("numpy")
    with pytest.raises(ShapeError, match="padding"):
        be.conv2d_input_grad(np.zeros((1, 2, 9, 9)), np.zeros((2, 2, 3, 3)), (1, 2, 5, 5), 3, 1)
