"""Every layer's backward against central differences (float64, NumPy backend)."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.errors import ConfigError, ShapeError
from minidnn.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,
                            GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Residual, Sequential,
                            SoftmaxCrossEntropy)

from gradcheck import check_layer, numerical_grad, off_kink_values


def _place(layer, backend):
    layer.to(backend)
    for p in layer.parameters():  # make weights float64 random and nonzero
        p.data[...] = np.random.default_rng(3).standard_normal(p.shape) * 0.5
    return layer


@pytest.mark.parametrize("n,c,h,w,o,k,stride,pad,groups", [
    (2, 3, 7, 6, 4, 3, 1, 0, 1),
    (2, 4, 7, 7, 6, 3, 2, 1, 2),
    (1, 2, 5, 8, 3, 1, 1, 0, 1),
    (2, 6, 9, 9, 6, 5, 2, 2, 3),
    (3, 1, 6, 6, 2, 2, 2, 0, 1),
    # output rows of >= 8 pixels, stride 1: backend conv2d (forward), conv2d_input_grad
    # ("same" padding) or gemm + row2im (other padding) in backward
    (2, 4, 6, 9, 6, 3, 1, 1, 2),
    (1, 2, 5, 12, 3, 5, 1, 0, 1),
    # rectangular filters on the direct path (forward, weight gradient; gemm + row2im for dx)
    (2, 3, 6, 11, 4, (3, 5), 1, 1, 1),
    (1, 2, 7, 10, 4, (1, 3), 1, 0, 2),
])
def test_conv2d_gradients(np64, rng, n, c, h, w, o, k, stride, pad, groups):
    layer = _place(Conv2d(c, o, k, stride=stride, padding=pad, groups=groups), np64)
    check_layer(layer, rng.standard_normal((n, c, h, w)), rng)


def test_conv2d_gradients_with_lowered_weight_grad(np64, rng, monkeypatch):
    """A direct forward with the weight gradient lowered (as for layers too wide for the
    backend's direct one): im2row + gemm for the filters, conv2d_input_grad for the input."""
    monkeypatch.setattr(Conv2d, "DIRECT_WEIGHT_GRAD", False)
    layer = _place(Conv2d(4, 6, 3, padding=1, groups=2), np64)
    check_layer(layer, rng.standard_normal((2, 4, 6, 9)), rng)


def test_linear_gradients(np64, rng):
    layer = _place(Linear(7, 5), np64)
    check_layer(layer, rng.standard_normal((4, 7)), rng)


def test_relu_gradient(np64, rng):
    check_layer(ReLU().to(np64), off_kink_values(rng, (3, 4, 5)), rng)


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 1, 1)])
def test_maxpool_gradient(np64, rng, k, stride, pad):
    check_layer(MaxPool2d(k, stride, pad).to(np64), off_kink_values(rng, (2, 3, 7, 6)), rng)


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 0)])
def test_avgpool_gradient(np64, rng, k, stride, pad):
    check_layer(AvgPool2d(k, stride, pad).to(np64), rng.standard_normal((2, 3, 7, 6)), rng)


def test_global_avgpool_gradient(np64, rng):
    layer = GlobalAvgPool2d().to(np64)
    check_layer(layer, rng.standard_normal((2, 3, 5, 5)), rng)
    assert layer.forward(rng.standard_normal((2, 3, 5, 5))).shape == (2, 3, 1, 1)


def test_batchnorm2d_train_gradients(np64, rng):
    layer = _place(BatchNorm2d(3), np64)
    check_layer(layer, rng.standard_normal((4, 3, 3, 2)) * 2 + 1, rng, rtol=1e-4, atol=1e-6)


def test_batchnorm1d_train_gradients(np64, rng):
    layer = _place(BatchNorm1d(5), np64)
    check_layer(layer, rng.standard_normal((6, 5)), rng, rtol=1e-4, atol=1e-6)


def test_batchnorm_relu_fused_gradients(np64, rng):
    """A BatchNorm then ReLU in a container runs as one batchnorm_relu_train in training (and
    one batchnorm_relu_backward): gradients against central differences, both layers' state
    as unfused, and plain layers again in eval mode."""
    bn, relu = BatchNorm2d(3), ReLU()
    block = _place(Sequential(bn, relu, BatchNorm2d(3), ReLU()), np64)
    x = rng.standard_normal((4, 3, 3, 2)) * 2 + 0.3
    check_layer(block, x, rng, rtol=1e-4, atol=1e-6)
    block.train()
    y = block.forward(x)
    assert bn.fused_next is relu and relu._y is not None
    ref = np.maximum(np.asarray(bn.forward(x)), 0.0)  # unfused: batchnorm_train, then relu
    np.testing.assert_allclose(np.asarray(relu._y), ref, rtol=1e-12, atol=1e-12)
    assert y.shape == x.shape
    block.eval()
    block.forward(x)
    assert bn.fused_next is None
    block.train()
    seen = []
    relu.forward = lambda v: seen.append(v) or ReLU.forward(relu, v)  # an observer: no fusion
    block.forward(x)
    assert bn.fused_next is None and len(seen) == 1


def test_batchnorm_eval_uses_running_stats(np64, rng):
    layer = BatchNorm2d(2, momentum=1.0).to(np64)
    x = rng.standard_normal((8, 2, 3, 3)) * 3 + 2
    layer.train()
    layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(layer.running_var, x.var(axis=(0, 2, 3), ddof=1))
    layer.eval()
    y = layer.forward(x)
    expected = (x - x.mean(axis=(0, 2, 3))[None, :, None, None]) / np.sqrt(
        x.var(axis=(0, 2, 3), ddof=1)[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-10)


def test_dropout_gradient_and_scale(np64, rng):
    layer = Dropout(0.3, seed=5).to(np64)
    x = rng.standard_normal((50, 40))
    y = layer.forward(x)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(dx, kept / 0.7)
    layer.eval()
    assert layer.forward(x) is x


def test_residual_and_sequential_gradients(np64, rng):
    block = Sequential(
        Residual(Sequential(Conv2d(3, 3, 3, padding=1), BatchNorm2d(3), ReLU(),
                            Conv2d(3, 3, 3, padding=1)),
                 Conv2d(3, 3, 1)),
        Residual(Conv2d(3, 3, 3, padding=1), post=ReLU()),   # identity shortcut, ReLU after
        Flatten(), Linear(3 * 4 * 4, 4))
    _place(block, np64)
    check_layer(block, rng.standard_normal((3, 3, 4, 4)), rng, rtol=1e-4, atol=1e-6)


def test_softmax_cross_entropy_gradient(np64, rng):
    logits = rng.standard_normal((5, 7)) * 3
    labels = np.array([0, 6, 3, 3, 1], np.int32)
    loss = SoftmaxCrossEntropy(np64)
    value = loss.forward(logits, labels)[0]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert value == pytest.approx(-np.log(p[np.arange(5), labels]).mean(), rel=1e-12)
    _, num = numerical_grad(lambda: float(loss.forward(logits, labels)[0]), logits)
    loss.forward(logits, labels)
    np.testing.assert_allclose(loss.backward().reshape(-1), num, rtol=1e-6, atol=1e-9)


def test_softmax_cross_entropy_is_stable(np64):
    logits = np.array([[1000.0, 0.0, -1000.0]])
    value, grad = np64.softmax_cross_entropy(logits, np.array([0], np.int32))
    assert np.isfinite(value).all() and np.isfinite(grad).all() and value[0] == 0.0


# ---------------------------------------------------------------- bad input gives clear errors
def test_wrong_input_shape_is_a_clear_error(np32):
    conv = Conv2d(3, 4, 3).to(np32)
    with pytest.raises(ShapeError, match="3 input channels"):
        conv.forward(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ShapeError, match="4-D input"):
        conv.forward(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ShapeError, match="smaller than"):
        conv.forward(np.zeros((2, 3, 2, 2), np.float32))
    fc = Linear(10, 2).to(np32)
    with pytest.raises(ShapeError, match="10 features|got input with 9"):
        fc.forward(np.zeros((2, 9), np.float32))


def test_wrong_dtype_is_a_clear_error(np32):
    with pytest.raises(ShapeError, match="float32"):
        Linear(3, 2).to(np32).forward(np.zeros((2, 3), np.float64))
    loss = SoftmaxCrossEntropy(np32)
    with pytest.raises(ShapeError, match="int32"):
        loss.forward(np.zeros((2, 3), np.float32), np.zeros(2, np.int64))


@pytest.mark.parametrize("make", [
    lambda: Conv2d(3, 4, 3, groups=2),
    lambda: Conv2d(3, 4, 0),
    lambda: Conv2d(3, 4, 3, padding=-1),
    lambda: Linear(0, 3),
    lambda: MaxPool2d(2, padding=2),
    lambda: Dropout(1.5),
    lambda: BatchNorm2d(0),
])
def test_bad_layer_options_are_config_errors(make):
    with pytest.raises(ConfigError):
        make()


def test_unknown_layer_option_names_it():
    with pytest.raises(TypeError, match="dilation"):
        Conv2d(3, 4, 3, dilation=2)
