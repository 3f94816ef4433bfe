"""Layer outputs and gradients against PyTorch CPU, an independent implementation (optional)."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d,
                            SoftmaxCrossEntropy)

torch = pytest.importorskip("torch", reason="PyTorch not installed (optional test oracle)")
F = torch.nn.functional


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def _compare(ours_y, ours_dx, ours_grads, ref_y, ref_inputs, r):
    (ref_y * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(ours_y, ref_y.detach().numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours_dx, ref_inputs[0].grad.numpy(), rtol=1e-9, atol=1e-10)
    for ours, ref in zip(ours_grads, ref_inputs[1:]):
        np.testing.assert_allclose(ours, ref.grad.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("stride,pad,groups", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 4)])
def test_conv2d_matches_torch(np64, rng, stride, pad, groups):
    conv = Conv2d(4, 8, 3, stride=stride, padding=pad, groups=groups, rng=rng).to(np64)
    conv.bias.data[...] = rng.standard_normal(8)
    x = rng.standard_normal((3, 4, 9, 8))
    y = conv.forward(x)
    r = rng.standard_normal(y.shape)
    dx = conv.backward(r)
    tx, tw, tb = _t(x), _t(conv.weight.data), _t(conv.bias.data)
    ref = F.conv2d(tx, tw, tb, stride=stride, padding=pad, groups=groups)
    _compare(y, dx, [conv.weight.grad, conv.bias.grad], ref, [tx, tw, tb], r)


def test_linear_matches_torch(np64, rng):
    fc = Linear(6, 4, rng=rng).to(np64)
    x = rng.standard_normal((5, 6))
    y = fc.forward(x)
    r = rng.standard_normal(y.shape)
    dx = fc.backward(r)
    tx, tw, tb = _t(x), _t(fc.weight.data), _t(fc.bias.data)
    _compare(y, dx, [fc.weight.grad, fc.bias.grad], F.linear(tx, tw, tb), [tx, tw, tb], r)


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_pooling_matches_torch(np64, rng, k, stride, pad):
    x = rng.standard_normal((2, 3, 9, 7))
    for layer, ref_fn in ((MaxPool2d(k, stride, pad), F.max_pool2d),
                          (AvgPool2d(k, stride, pad), F.avg_pool2d)):
        layer.to(np64)
        y = layer.forward(x)
        r = rng.standard_normal(y.shape)
        dx = layer.backward(r)
        tx = _t(x)
        _compare(y, dx, [], ref_fn(tx, k, stride, pad), [tx], r)


def test_batchnorm_train_matches_torch(np64, rng):
    bn = BatchNorm2d(3).to(np64)
    bn.weight.data[...] = rng.standard_normal(3)
    bn.bias.data[...] = rng.standard_normal(3)
    x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
    y = bn.forward(x)
    r = rng.standard_normal(y.shape)
    dx = bn.backward(r)
    tx, tg, tb = _t(x), _t(bn.weight.data), _t(bn.bias.data)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    ref = F.batch_norm(tx, rm, rv, tg, tb, training=True, momentum=0.1, eps=1e-5)
    _compare(y, dx, [bn.weight.grad, bn.bias.grad], ref, [tx, tg, tb], r)
    np.testing.assert_allclose(bn.running_mean, rm.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.running_var, rv.numpy(), rtol=1e-10)


def test_loss_matches_torch(np64, rng):
    logits = rng.standard_normal((6, 10)) * 4
    labels = rng.integers(0, 10, 6).astype(np.int32)
    loss = SoftmaxCrossEntropy(np64)
    value = loss.forward(logits, labels)[0]
    tl = _t(logits)
    ref = F.cross_entropy(tl, torch.tensor(labels, dtype=torch.long))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), tl.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_adam_matches_torch(np64, rng):
    w0 = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    w, m, v = w0.copy(), np.zeros(20), np.zeros(20)
    for step, g in enumerate(grads, 1):
        np64.adam_update(w, g, m, v, 0.01, 0.9, 0.999, 1e-8, step, 0.0, 0.0, None)
    tw = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.Adam([tw], lr=0.01)
    for g in grads:
        tw.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-10)
