"""Reweighted l1 and annealed l0: the prox primitives (closed form, NumPy/OpenCL parity), the
prox hooks, the registered methods."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.compress.methods import get_method, l1_methods
from minidnn.errors import ConfigError
from minidnn.optim import ProxAdam, ProxSGD
from minidnn.optim.hooks import HardThresholdProx, L1Prox, ReweightedL1Prox, replace_prox
from minidnn.parameter import Parameter


def test_l1_reweight_closed_form(np64):
    w = np.array([0.0, 3.0, -4.0, 0.0])                 # RMS of the nonzeros: 5/sqrt(2)
    s = 5.0 / np.sqrt(2.0)
    np.testing.assert_allclose(np64.l1_reweight(w, 0.1),
                               [10.0, s / (3 + 0.1 * s), s / (4 + 0.1 * s), 10.0], rtol=1e-12)
    np.testing.assert_array_equal(np64.l1_reweight(np.zeros(5), 0.5), np.full(5, 2.0))


def test_soft_threshold_scaled_closed_form(np64):
    w = np.array([-3.0, -0.5, 0.1, 0.0, 2.0])
    r = np.array([1.0, 3.0, 0.1, 5.0, 0.5])
    out = np64.soft_threshold_scaled(w, r, 0.2)
    np.testing.assert_allclose(out, [-2.8, 0.0, 0.08, 0.0, 1.9], atol=1e-15)
    np64.soft_threshold_scaled(w, np.ones(5), 0.2, out=w)  # in place, = plain soft-threshold
    np.testing.assert_allclose(w, [-2.8, -0.3, 0.0, 0.0, 1.8], atol=1e-15)


@pytest.mark.parametrize("n", [1, 7, 8, 13, 1000, 40_003])
def test_reweight_ops_opencl_match_numpy(clb, np32, n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(np.float32) * (rng.random(n) > 0.6)
    ref_r = np32.l1_reweight(w, 0.1)
    r = clb.l1_reweight(clb.from_host(w), 0.1)
    np.testing.assert_allclose(clb.to_host(r), ref_r, rtol=2e-5)
    ref = np32.soft_threshold_scaled(w, ref_r, 0.05)
    dw = clb.from_host(w)
    clb.soft_threshold_scaled(dw, r, 0.05, out=dw)
    np.testing.assert_allclose(clb.to_host(dw), ref, rtol=2e-5, atol=1e-6)
    assert np.array_equal(clb.to_host(dw) == 0, ref == 0) or n > 1000  # ties at float32 noise
    hard = clb.hard_threshold(clb.from_host(w), 0.5)
    np.testing.assert_array_equal(clb.to_host(hard), np32.hard_threshold(w, 0.5))
    mask = rng.integers(0, 2, n).astype(np.float32)
    ref_mask = mask.copy()
    np32.mask_zeros(w, ref_mask)
    dmask = clb.from_host(mask)
    clb.mask_zeros(clb.from_host(w), dmask)
    np.testing.assert_array_equal(clb.to_host(dmask), ref_mask)
    np.testing.assert_array_equal(ref_mask, mask * (w != 0))
    z = clb.l1_reweight(clb.zeros((n,)), 0.25)
    np.testing.assert_array_equal(clb.to_host(z), np.full(n, 4.0, np.float32))


def test_reweighted_prox_thresholds_small_weights_harder(np64):
    """After one SGD step with zero gradient, each weight shrinks by lr * lam * r(w)."""
    w0 = np.array([0.0, 0.01, 0.1, 1.0, -1.0])
    p = Parameter(w0.copy(), prox=True).to(np64)
    p.grad = np64.zeros(p.shape)
    opt = ProxSGD([("w", p)], lr=0.1, lam=0.1)
    prox = replace_prox(opt, ReweightedL1Prox(every=10, eps=0.1))
    assert opt._fused_hooks([h for h in opt.hooks if h.timing == "post"]) is None
    opt.step()
    r = np64.l1_reweight(w0, 0.1)
    expect = np.sign(w0) * np.maximum(np.abs(w0) - 0.01 * r, 0)
    np.testing.assert_allclose(p.data, expect, atol=1e-15)
    assert p.data[1] == 0.0 and abs(p.data[3]) > 1.0 - 0.01   # big ones shrink less than lr*lam
    scales = prox.scales[id(p)][0].copy()
    for _ in range(9):                                          # kept until `every` steps old
        opt.step()
    assert prox.scales[id(p)][1] == 1
    np.testing.assert_array_equal(prox.scales[id(p)][0], scales)
    opt.step()                                                  # step 11: refreshed in place
    assert prox.scales[id(p)][1] == 11
    assert not np.array_equal(prox.scales[id(p)][0], scales)


def test_reweighted_prox_settings_validated():
    for bad in (dict(every=0), dict(every=1.5), dict(eps=0.0), dict(eps=-1.0)):
        with pytest.raises(ConfigError):
            ReweightedL1Prox(**bad)


def test_replace_prox_keeps_the_order(np64):
    p = Parameter(np.ones(3), prox=True).to(np64)
    opt = ProxAdam([p], lr=0.1, lam=0.1)
    hook = replace_prox(opt, ReweightedL1Prox())
    assert opt.hooks[0] is hook and len(opt.hooks) == 2
    opt.hooks = [h for h in opt.hooks if not isinstance(h, L1Prox)]
    with pytest.raises(ConfigError):
        replace_prox(opt, ReweightedL1Prox())


def test_hard_threshold_closed_form(np64):
    w = np.array([-3.0, -0.5, 0.1, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(np64.hard_threshold(w, 0.5), [-3.0, 0, 0, 0, 0, 2.0])
    np64.hard_threshold(w, 2.5, out=w)
    np.testing.assert_array_equal(w, [-3.0, 0, 0, 0, 0, 0])


def test_annealed_l0_prox_ramps_its_threshold(np64):
    """Threshold sqrt(2 lr lam a), a = step / anneal up to 1; zeros never revive by a step."""
    p = Parameter(np.array([0.02, 0.05, 0.12, -0.3]), prox=True).to(np64)
    p.grad = np64.zeros(p.shape)
    opt = ProxSGD([("w", p)], lr=0.01, lam=0.5)   # full strength: sqrt(0.01) = 0.1
    prox = replace_prox(opt, HardThresholdProx(anneal=4))
    opt.step()                                       # a = 1/4: threshold 0.05
    assert prox.threshold(opt, "w", p, 0.01) == pytest.approx(0.1 * np.sqrt(0.25))
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.12, -0.3])
    for _ in range(3):
        opt.step()                                   # a = 1: threshold 0.1
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.12, -0.3])
    opt.lam = 1.0                                    # threshold 0.141
    opt.step()
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.0, -0.3])
    with pytest.raises(ConfigError):
        HardThresholdProx(0)


def test_rwl1_is_a_registered_l1_method():
    assert l1_methods()[:3] == ["spc", "rwl1", "l0"]
    assert isinstance(get_method("l0").prox_hook(100), HardThresholdProx)
    method = get_method("rwl1+retrain")
    assert isinstance(method.prox_hook(100), ReweightedL1Prox) and method.params == ("lam",)
    assert type(get_method("spc").prox_hook(100)) is L1Prox
    assert get_method("pru").prox_hook(100) is None


def test_group_soft_threshold_closed_form(np64):
    """Rows shrink as a whole by threshold * sqrt(n) in norm; a row below it vanishes."""
    w = np.array([[3.0, 4.0], [0.3, -0.4], [0.0, 0.0]])          # norms 5, 0.5, 0; n = 2
    t = 0.5 / np.sqrt(2.0)                                        # t sqrt(n) = 0.5
    np.testing.assert_allclose(np64.group_soft_threshold(w, t),
                               [[2.7, 3.6], [0.0, 0.0], [0.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(np64.group_soft_threshold(w.T.copy(), t, columns=True),
                               [[2.7, 0.0, 0.0], [3.6, 0.0, 0.0]], atol=1e-15)
    conv = np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2)    # a filter is a row
    np64.group_soft_threshold(conv, 1e-3, out=conv)
    norm = np.linalg.norm(np.arange(12.0))
    np.testing.assert_allclose(conv[0].ravel(), np.arange(12.0) * (1 - 1e-3 * np.sqrt(12) / norm))


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (20, 1, 5, 5), (50, 20, 5, 5), (500, 800),
                                   (10, 7)])
def test_group_soft_threshold_opencl_matches_numpy(clb, np32, shape):
    rng = np.random.default_rng(sum(shape))
    w = (rng.standard_normal(shape) * rng.uniform(0.0, 0.2, (shape[0],) + (1,) *
                                                   (len(shape) - 1))).astype(np.float32)
    w[0] = 0.0
    t = 0.02
    for columns in (False, True):
        ref = np32.group_soft_threshold(w, t, columns=columns)
        dw = clb.from_host(w)
        clb.group_soft_threshold(dw, t, out=dw, columns=columns)
        got = clb.to_host(dw)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
        axis = 0 if columns else 1
        assert np.array_equal(np.all(got.reshape(shape[0], -1) == 0, axis=axis),
                              np.all(ref.reshape(shape[0], -1) == 0, axis=axis))


def test_group_prox_zeros_whole_groups(np64):
    """Under the group prox a group with no gradient to hold it shrinks to zero as a whole, a
    group with one keeps all its entries (no single zeros): a conv weight by filter (rows), a
    linear weight by input (columns); gl21 is a registered l1 method."""
    from minidnn.optim.hooks import GroupL21Prox
    w0 = np.array([[0.05, -0.05, 0.05], [1.0, 0.001, -1.0]])
    conv = Parameter(w0.reshape(2, 3, 1, 1).copy(), prox=True).to(np64)
    lin = Parameter(w0.T.copy(), prox=True).to(np64)                  # (3 outputs, 2 inputs)
    opt = ProxSGD([("conv", conv), ("lin", lin)], lr=0.01, lam=1.0)
    replace_prox(opt, GroupL21Prox())
    hold = np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]])             # holds group 1's big entries
    for _ in range(20):
        conv.grad, lin.grad = hold.reshape(2, 3, 1, 1).copy(), hold.T.copy()
        opt.step()
    assert np.all(conv.data[0] == 0.0) and np.all(conv.data[1] != 0.0)
    assert np.all(lin.data[:, 0] == 0.0) and np.all(lin.data[:, 1] != 0.0)
    method = get_method("gl21+retrain")
    assert isinstance(method.prox_hook(100), GroupL21Prox) and "gl21" in l1_methods()
