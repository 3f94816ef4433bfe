"""Sparse training (issue 20): the CSR convolution ops of training against NumPy on every
device and on the core-only defaults, their gradients against central differences, and the
switch of frozen weights to CSR (exactly the masked dense run)."""
from __future__ import annotations

import numpy as np
import pytest

from minidnn.backend import NumpyBackend
from minidnn.compress.sparse_train import SparseSwitch, switch_to_csr
from minidnn.compress.sparsify import freeze_zeros
from minidnn.errors import ConfigError
from minidnn.layers import Conv2d
from minidnn.models import build_model
from minidnn.optim import Adam, ProxAdam
from minidnn.sparse import CSRMatrix
from minidnn.train import Trainer

from conftest import OPENCL_DEVICES, opencl_backend_for
from gradcheck import check_layer
from test_backend_core import CoreOnlyBackend

# (n, c, h, w, o, k, stride, pad, groups): LeNet-5's conv2 and conv1, "same" convolutions
# (dX direct, padded-copy paths), a width that is no multiple of 8 (the scalar tails), stride
# 2 (the general dW kernel), groups, 1x1
CASES = [
    (2, 20, 12, 12, 50, 5, 1, 0, 1),
    (3, 1, 28, 28, 20, 5, 1, 0, 1),
    (2, 3, 9, 11, 5, 3, 1, 1, 1),
    (2, 4, 7, 13, 9, 3, 1, 1, 1),
    (2, 4, 12, 18, 8, 5, 1, 2, 2),
    (2, 16, 8, 8, 16, 3, 1, 1, 1),
    (1, 8, 13, 10, 6, 3, 2, 1, 2),
    (2, 6, 7, 7, 6, 1, 1, 0, 3),
]


def _bank(rng, o: int, k: int, density: float = 0.3) -> np.ndarray:
    w = rng.standard_normal((o, k)).astype(np.float32)
    w[rng.random(w.shape) >= density] = 0
    w[min(1, o - 1)] = 0     # an empty row
    return w


def _ops(b, case, seed: int = 3) -> dict[str, np.ndarray]:
    """y, dW (fresh and accumulated), dX (same convolutions) and the flipped pattern."""
    n, c, h, w, o, k, s, p, g = case
    rng = np.random.default_rng(seed)
    m = CSRMatrix.from_dense(b, b.from_host(_bank(rng, o, c // g * k * k)), g)
    x = b.from_host(rng.standard_normal((n, c, h, w)).astype(np.float32))
    y = m.conv2d(x, None, k, k, s, p)
    dy = b.from_host(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    dw = b.zeros((m.nnz,))
    m.conv2d_weight_grad(dy, x, k, k, s, p, dw, accumulate=False)
    out = {"y": b.to_host(y), "dw": b.to_host(dw).copy()}
    m.conv2d_weight_grad(dy, x, k, k, s, p, dw, accumulate=True)
    out["dw2"] = b.to_host(dw)
    if s == 1 and 2 * p == k - 1:
        out["dx"] = b.to_host(m.conv2d_input_grad(dy, (n, c, h, w), k, k, p))
        t_row_ptr, t_col_idx, _ = m.transposed()
        row_ptr, cols = b.csr_flip_transpose(t_row_ptr, t_col_idx, k, k)
        out["flip_row_ptr"], out["flip_cols"] = b.to_host(row_ptr), b.to_host(cols)
    return out


@pytest.fixture(params=["core-only", *(f"opencl:{d}" for d in OPENCL_DEVICES)])
def backend(request):
    if request.param == "core-only":
        return CoreOnlyBackend()
    return opencl_backend_for(request.param.split(":", 1)[1])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_sparse_conv_training_ops_match_numpy(backend, case):
    want = _ops(NumpyBackend(), case)
    got = _ops(backend, case)
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        if name.startswith("flip"):
            np.testing.assert_array_equal(got[name], ref, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(want["dw2"], 2 * want["dw"], rtol=1e-6, atol=1e-6)


def test_flipped_pattern_is_the_input_gradient_filter_bank(rng):
    """W'[g*cg + cl, (ol*k + k-1-ky)*k + k-1-kx] = W[g*og + ol, (cl*k + ky)*k + kx]."""
    b = NumpyBackend()
    o, cg, k, g = 6, 4, 3, 2
    w = _bank(rng, o, cg * k * k, 0.5)
    m = CSRMatrix.from_dense(b, w, g)
    t_row_ptr, t_col_idx, t_values = m.transposed()
    row_ptr, cols = b.csr_flip_transpose(t_row_ptr, t_col_idx, k, k)
    got = b.csr_to_dense(row_ptr, cols, t_values, (g * cg, o // g * k * k))
    w4 = w.reshape(g, o // g, cg, k, k)[:, :, :, ::-1, ::-1]
    want = w4.transpose(0, 2, 1, 3, 4).reshape(g * cg, o // g * k * k)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", [(2, 3, 6, 7, 4, 3, 1, 1, 1), (2, 2, 6, 6, 3, 3, 1, 0, 1),
                                  (1, 4, 7, 6, 4, 3, 2, 1, 2)], ids=["same", "valid", "s2g2"])
def test_csr_conv2d_training_gradients(np64, rng, case):
    """A Conv2d with CSR filters in training (direct sparse forward, dW from x and dY, dX
    direct or through the CSR product) against central differences, float64."""
    n, c, h, w, o, k, s, p, g = case
    layer = Conv2d(c, o, k, stride=s, padding=p, groups=g, rng=rng).to(np64)
    wt = layer.weight.host_dense()
    wt[rng.random(wt.shape) < 0.5] = 0
    layer.weight.data = np64.from_host(wt)
    layer.weight.to_csr()
    check_layer(layer, rng.standard_normal((n, c, h, w)), rng)


def _masked_lenet(b, seed: int = 0):
    model = build_model("lenet5", seed=seed).to(b)
    mrng = np.random.default_rng(7)
    for _, p in model.prox_parameters():
        w = p.host_dense()
        mask = (mrng.random(w.shape) < (0.7 if w.shape[1] == 1 else 0.1)).astype(np.float32)
        p.data = b.from_host(w)
        p.set_mask(mask)
    return model


def _batches(n: int = 6):
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((16, 1, 28, 28)).astype(np.float32),
             rng.integers(0, 10, 16).astype(np.int32)) for _ in range(n)]


@pytest.mark.parametrize("dev", ["numpy", *OPENCL_DEVICES])
def test_switch_mid_run_continues_the_masked_run(dev):
    """Adam with masks and lam 0, switched to CSR after 3 steps (between backward and the
    update, as the hook runs), ends where the run that stayed dense + masked ends: the
    gradient and Adam's moments are carried over to the survivors."""
    b = NumpyBackend() if dev == "numpy" else opencl_backend_for(dev)
    runs = []
    for switch in (False, True):
        model = _masked_lenet(b)
        p0 = model.features.conv1.weight
        opt = Adam(model.named_parameters(), lr=1e-2)
        trainer = Trainer(model, opt)
        hook = SparseSwitch(0.5)
        for i, (x, y) in enumerate(_batches()):
            if switch and i == 3:
                opt.add_hook(hook)
            trainer.train_step(x, y)
        if switch:   # conv1 (70% dense) stays masked, the others switched at step 4
            assert sorted(hook.switched.values()) == [4, 4, 4] and len(hook.switched) == 3
            assert not p0.is_sparse and p0.mask is not None
        runs.append({n: p.host_dense() for n, p in model.prox_parameters()})
    for name, dense in runs[0].items():
        np.testing.assert_allclose(runs[1][name], dense, rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(runs[1][name] == 0, dense == 0, err_msg=name)


def test_switch_keeps_survivors_that_are_zero(np32):
    model = _masked_lenet(np32)
    p = model.classifier.fc1.weight
    w, mask = p.host_dense(), np32.to_host(p.mask)
    first = np.flatnonzero(mask)[0]
    w.reshape(-1)[first] = 0.0          # a survivor at exactly 0.0 stays in the pattern
    p.data = np32.from_host(w)
    switch_to_csr(p)
    assert p.is_sparse and p.csr.nnz == int(mask.sum())


def test_switch_only_frozen_standard_prox_weights(np32):
    """Not while lam > 0 (a zero may still revive), not above the density, once per weight."""
    model = _masked_lenet(np32)
    named = list(model.named_parameters())
    opt = ProxAdam(named, lr=1e-3, lam=0.5)
    hook = opt.add_hook(SparseSwitch(0.5))
    hook.pre(opt)
    assert not hook.switched and not hook.decided
    opt.lam = {n: 0.0 for n, _ in named}
    hook.pre(opt)
    assert len(hook.switched) == 3 and len(hook.decided) == 4   # conv1 (70%) stays dense
    assert all(p.is_sparse for n, p in model.prox_parameters() if n in hook.switched)
    with pytest.raises(ConfigError):
        SparseSwitch(1.5)


def test_retrain_form_auto_freezes_sparse_weights_as_csr(np32):
    model = _masked_lenet(np32)
    freeze_zeros(model, "auto", 0.5)
    forms = {n: p.is_sparse for n, p in model.prox_parameters()}
    assert forms == {"features.conv1.weight": False, "features.conv2.weight": True,
                     "classifier.fc1.weight": True, "classifier.fc2.weight": True}
    with pytest.raises(ConfigError):
        freeze_zeros(model, "sparse")


def test_cli_rejects_bad_sparse_training_density(capsys):
    from minidnn.cli import main
    assert main(["train", "lenet5", "--sparse-training-density", "2"]) == 2
    assert "argument --sparse-training-density" in capsys.readouterr().err


@pytest.mark.parametrize("density", [0.6, 0.0])
def test_train_workflow_switches_at_the_freeze(mnist_dir, tmp_path, density):
    """``train_model`` with a target: the layers sparse enough switch to CSR in the step the
    controller freezes them, and debiasing (form 'auto') keeps them CSR; density 0: none."""
    from dataclasses import replace
    from minidnn.optim.target import ControlSettings
    from minidnn.train_config import TrainConfig
    from minidnn.workflows import TrainSpec, train_model
    config = replace(TrainConfig.for_model("lenet5"), batch_size=32, eval_every=0)
    control = ControlSettings(warmup=0.0, ramp=0.3, freeze=0.6, freeze_window=0.1, every=5,
                              guard=None, trim=0.0)
    lines: list[str] = []
    result = train_model(TrainSpec(model="lenet5", steps=40, config=config, lam=5.0,
                                   target_sparsity=0.9, control=control, bn_batches=0,
                                   retrain_steps=5, sparse_density=density,
                                   data_root=str(mnist_dir.parent), out=str(tmp_path / "m.h5")),
                         log=lines.append)
    frozen = result["target_sparsity"]["frozen_at"]
    if density == 0.0:
        assert "sparse_training" not in result
        assert not any(line.startswith("sparse training:") for line in lines)
        return
    switched = result["sparse_training"]["switched"]
    assert switched and set(switched.values()) == {frozen}, (switched, frozen)
    assert "classifier.fc1.weight" in switched
