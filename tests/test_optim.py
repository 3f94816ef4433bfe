"""Optimizers and the l1 prox: closed-form values, masks, which parameters are thresholded."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.errors import ConfigError
from minidnn.layers import Linear, Sequential
from minidnn.optim import (SGD, Adam, Cosine, FixedMask, L1Prox, ProxAdam, ProxRMSProp, ProxSGD,
                           RMSProp, StepDecay, UpdateHook, Warmup, make_optimizer)
from minidnn.parameter import Parameter


def _param(backend, values, prox=True):
    p = Parameter(np.asarray(values, np.float64), prox=prox).to(backend)
    p.grad = backend.from_host(np.zeros(p.shape))
    return p


def test_soft_threshold_closed_form(np64):
    w = np.array([-3.0, -0.5, -0.1, 0.0, 0.05, 0.2, 2.0])
    out = np64.soft_threshold(w, 0.2)
    np.testing.assert_array_equal(out, [-2.8, -0.3, 0.0, 0.0, 0.0, 0.0, 1.8])


def test_prox_sgd_step_is_gradient_step_then_shrink(np64):
    p = _param(np64, [1.0, -1.0, 0.3, -0.02])
    p.grad[...] = [0.5, -0.5, 1.0, 0.0]
    ProxSGD([p], lr=0.1, lam=2.0).step()   # z = w - 0.1 g, threshold 0.1 * 2 = 0.2
    np.testing.assert_allclose(p.data, [0.75, -0.75, 0.0, 0.0], atol=1e-15)


def test_prox_adam_first_step_closed_form(np64):
    # Adam's first bias-corrected step is lr * sign(g) (for |g| >> eps): z = w - lr*sign(g)
    p = _param(np64, [0.5, -0.5, 0.0015, 0.2])
    p.grad[...] = [1.0, -2.0, 3.0, -1.0]
    ProxAdam([p], lr=0.001, lam=0.5).step()  # threshold 5e-4
    z = np.array([0.499, -0.499, 0.0005, 0.201])
    np.testing.assert_allclose(p.data, np.sign(z) * np.maximum(np.abs(z) - 5e-4, 0), atol=1e-9)


def test_prox_rmsprop_matches_formula(np64):
    w0, g = np.array([0.3, -0.2, 0.01]), np.array([0.1, 0.2, -0.3])
    p = _param(np64, w0)
    p.grad[...] = g
    ProxRMSProp([p], lr=0.01, lam=1.0, alpha=0.9, eps=1e-8).step()
    z = w0 - 0.01 * g / (np.sqrt(0.1 * g * g) + 1e-8)
    np.testing.assert_allclose(p.data, np.sign(z) * np.maximum(np.abs(z) - 0.01, 0), rtol=1e-12)


def test_sgd_momentum_and_nesterov_match_reference(np64, rng):
    w0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(4)]
    for nesterov in (False, True):
        p = _param(np64, w0)
        opt = SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        w, v = w0.copy(), np.zeros(6)
        for g in grads:
            p.grad[...] = g
            opt.step()
            v = 0.9 * v + g
            w -= 0.1 * (g + 0.9 * v if nesterov else v)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_masked_weights_never_become_nonzero(np64, rng):
    for make in (lambda ps: Adam(ps, lr=0.05), lambda ps: ProxSGD(ps, lr=0.1, lam=0.01),
                 lambda ps: RMSProp(ps, lr=0.05), lambda ps: ProxAdam(ps, lr=0.05, lam=0.1)):
        p = _param(np64, rng.standard_normal((5, 4)))
        mask = (rng.random((5, 4)) > 0.5).astype(np.float64)
        p.set_mask(mask)
        opt = make([p])
        for _ in range(10):
            p.grad[...] = rng.standard_normal((5, 4))
            opt.step()
            assert np.all(p.data[mask == 0] == 0)


def test_biases_are_never_thresholded(np64):
    layer = Sequential(Linear(3, 2)).to(np64)
    bias = layer.parameters()[1]
    bias.data[...] = [1e-4, -1e-4]
    for p in layer.parameters():
        p.grad = np64.zeros(p.shape)
    ProxSGD(layer.named_parameters(), lr=1.0, lam=10.0).step()
    np.testing.assert_array_equal(bias.data, [1e-4, -1e-4])      # untouched by the prox
    assert np.all(layer.parameters()[0].data == 0)                 # weights shrunk to zero


def test_per_layer_lam(np64):
    a, b = _param(np64, [0.5, -0.5]), _param(np64, [0.5, -0.5])
    opt = ProxSGD([("a", a), ("b", b)], lr=1.0, lam={"a": 0.1})
    opt.step()
    np.testing.assert_allclose(a.data, [0.4, -0.4])
    np.testing.assert_allclose(b.data, [0.5, -0.5])
    with pytest.raises(ConfigError, match="unknown"):
        ProxSGD([("a", a)], lam={"zz": 0.1})


def test_zero_set_only_grows_under_prox_with_zero_gradient(np64, rng):
    p = _param(np64, rng.standard_normal(200) * 0.1)
    opt = ProxSGD([p], lr=0.1, lam=0.05)
    zeros = np.zeros(200, bool)
    for _ in range(20):
        p.grad[...] = 0.0
        opt.step()
        now = p.data == 0
        assert np.all(now[zeros])
        zeros = now
    assert zeros.sum() > 50


def test_schedules():
    assert StepDecay(1.0, 10, 0.5)(25) == 0.25
    c = Cosine(1.0, 100, 0.0)
    assert c(0) == 1.0 and c(100) == pytest.approx(0.0) and c(50) == pytest.approx(0.5)
    w = Warmup(StepDecay(1.0, 1000), 4)
    assert [w(i) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_optimizer_uses_schedule(np64):
    p = _param(np64, [1.0])
    p.grad[...] = [1.0]
    opt = SGD([p], lr=StepDecay(0.1, 1, 0.5))
    opt.step()
    opt.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.1 - 0.05])


@pytest.mark.parametrize("bad", [
    lambda p: ProxAdam([p], lam=0.0),
    lambda p: Adam([p], lam=-1.0),
    lambda p: SGD([p], momentum=1.5),
    lambda p: SGD([p], nesterov=True),
    lambda p: make_optimizer("adagrad", [p], 0.1),
    lambda p: Adam([]),
])
def test_bad_optimizer_options(np64, bad):
    with pytest.raises(ConfigError):
        bad(_param(np64, [1.0]))


# ---------------------------------------------------------------------- hooks
class _Prox(L1Prox):
    """The standard prox, but not the standard type: the optimizer runs it as a hook."""


class _Mask(FixedMask):
    """The standard mask, run as a hook."""


def _fused_and_hooked(backend, cls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights after 3 steps with the standard hooks, the same with them run one by one, mask)."""
    rng = np.random.default_rng(3)
    w0, mask = rng.standard_normal((8, 5)), (rng.random((8, 5)) > 0.3).astype(np.float32)
    grads = [rng.standard_normal((8, 5)) for _ in range(3)]
    results = []
    for hooks in (None, [_Prox(), _Mask()]):
        p = _param(backend, w0)
        p.set_mask(mask)
        opt = cls([("w", p)], lr=0.01, lam={"w": 20.0})
        if hooks:
            opt.hooks = hooks
            assert opt._fused_hooks(hooks) is None
        for g in grads:
            p.grad = backend.from_host(g.astype(backend.dtype))
            opt.step()
        results.append(p.host_dense())
    return results[0], results[1], mask


@pytest.mark.parametrize("cls", [SGD, RMSProp, Adam])
def test_hooks_one_by_one_equal_the_fused_update(np64, cls):
    """update, then the prox hook, then the mask hook give bit for bit what the fused
    update + prox + mask op gives (the optimization behind the standard hooks)."""
    fused, hooked, mask = _fused_and_hooked(np64, cls)
    np.testing.assert_array_equal(fused, hooked)
    assert (fused[mask == 0] == 0).all() and (fused == 0).sum() > (mask == 0).sum()


@pytest.mark.parametrize("cls", [SGD, RMSProp, Adam])
def test_hooks_one_by_one_match_the_fused_kernel(clb, cls):
    """On OpenCL the separate prox and mask kernels agree with the fused kernel (to float32
    rounding) and leave the same zeros."""
    fused, hooked, _ = _fused_and_hooked(clb, cls)
    np.testing.assert_allclose(fused, hooked, atol=1e-6)
    np.testing.assert_array_equal(fused == 0, hooked == 0)


def test_pre_hook_runs_before_the_update(np64):
    """A pre hook (a penalty) sees the gradient before the update and can change it."""
    seen = []

    class Penalty(UpdateHook):
        timing = "pre"

        def pre(self, optimizer):
            for p in optimizer.params:
                seen.append(p.data.copy())
                p.grad += 1.0   # d/dw of sum(w)

    p = _param(np64, [1.0, 2.0])
    opt = SGD([p], lr=0.1)
    opt.add_hook(Penalty())
    opt.step()
    np.testing.assert_allclose(seen[0], [1.0, 2.0])
    np.testing.assert_allclose(p.data, [0.9, 1.9])
